//! Azure region names: normalisation of display names and the region pair table.
//!
//! Source: the region pair list of `reference/arm-api.md` §8. Pairing is a recommendation for
//! failover groups, not a requirement; the emulator uses it only to seed faster between pairs.

/// Turns a display name such as `"Japan East"` into the programmatic name `"japaneast"`.
pub(crate) fn normalize(location: &str) -> String {
    location
        .chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

/// `(region, its pair)`; asymmetric pairs appear with their own direction only.
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

/// The region paired with `region`, if it has one.
pub(crate) fn pair_of(region: &str) -> Option<&'static str> {
    let region = normalize(region);
    PAIRS.iter().find(|(r, _)| *r == region).map(|(_, p)| *p)
}

/// Whether the two regions form a pair in either direction (asymmetric pairs count).
pub(crate) fn are_paired(a: &str, b: &str) -> bool {
    let (a, b) = (normalize(a), normalize(b));
    pair_of(&a) == Some(b.as_str()) || pair_of(&b) == Some(a.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_normalise() {
        assert_eq!(normalize("Japan East"), "japaneast");
        assert_eq!(normalize("eastus"), "eastus");
    }

    #[test]
    fn pairs_are_found_in_both_directions() {
        assert!(are_paired("eastus", "West US"));
        assert!(are_paired("westus3", "eastus"));
        assert!(!are_paired("eastus", "northeurope"));
        assert_eq!(pair_of("northeurope"), Some("westeurope"));
        assert_eq!(pair_of("italynorth"), None);
    }
}
