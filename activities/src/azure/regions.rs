//! Azure region names and pairs (docs/ARM.md §8).

/// Lower-case, no spaces: `Japan East` → `japaneast`.
pub(crate) fn normalize(location: &str) -> String {
    location
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase()
}

const PAIRS: &[(&str, &str)] = &[
    ("eastus", "westus"),
    ("westus", "eastus"),
    ("eastus2", "centralus"),
    ("centralus", "eastus2"),
    ("northcentralus", "southcentralus"),
    ("southcentralus", "northcentralus"),
    ("westus2", "westcentralus"),
    ("westcentralus", "westus2"),
    ("westus3", "eastus"),
    ("canadacentral", "canadaeast"),
    ("canadaeast", "canadacentral"),
    ("brazilsouth", "southcentralus"),
    ("brazilsoutheast", "brazilsouth"),
    ("northeurope", "westeurope"),
    ("westeurope", "northeurope"),
    ("uksouth", "ukwest"),
    ("ukwest", "uksouth"),
    ("francecentral", "francesouth"),
    ("francesouth", "francecentral"),
    ("germanywestcentral", "germanynorth"),
    ("germanynorth", "germanywestcentral"),
    ("norwayeast", "norwaywest"),
    ("norwaywest", "norwayeast"),
    ("switzerlandnorth", "switzerlandwest"),
    ("switzerlandwest", "switzerlandnorth"),
    ("swedencentral", "swedensouth"),
    ("uaenorth", "uaecentral"),
    ("uaecentral", "uaenorth"),
    ("southafricanorth", "southafricawest"),
    ("southafricawest", "southafricanorth"),
    ("centralindia", "southindia"),
    ("southindia", "centralindia"),
    ("westindia", "southindia"),
    ("eastasia", "southeastasia"),
    ("southeastasia", "eastasia"),
    ("japaneast", "japanwest"),
    ("japanwest", "japaneast"),
    ("koreacentral", "koreasouth"),
    ("koreasouth", "koreacentral"),
    ("australiaeast", "australiasoutheast"),
    ("australiasoutheast", "australiaeast"),
    ("australiacentral", "australiacentral2"),
    ("australiacentral2", "australiacentral"),
];

/// Whether `a` and `b` are an Azure region pair (either direction, asymmetric pairs included).
pub(crate) fn paired(a: &str, b: &str) -> bool {
    let (a, b) = (normalize(a), normalize(b));
    PAIRS.iter().any(|(x, y)| (*x == a && *y == b) || (*x == b && *y == a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_found_both_ways() {
        assert!(paired("East US", "westus"));
        assert!(paired("westus", "eastus"));
        assert!(paired("westus3", "eastus"));
        assert!(!paired("eastus", "northeurope"));
    }
}
