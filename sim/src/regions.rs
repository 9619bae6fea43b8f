//! Azure region names: normalisation of display names and the region pair table.
//!
//! Source: the region pair list of `docs/ARM.md` §8. Pairing is a recommendation for
//! failover groups, not a requirement; the emulator uses it only to seed faster between pairs.

/// Turns a display name such as `"Japan East"` into the programmatic name `"japaneast"`.
pub(crate) fn normalize(location: &str) -> String {
    location
        .chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Azure's display names of the regions the emulator knows (`az account list-locations`).
const DISPLAY: &[(&str, &str)] = &[
    ("eastus", "East US"),
    ("eastus2", "East US 2"),
    ("westus", "West US"),
    ("westus2", "West US 2"),
    ("westus3", "West US 3"),
    ("centralus", "Central US"),
    ("northcentralus", "North Central US"),
    ("southcentralus", "South Central US"),
    ("westcentralus", "West Central US"),
    ("canadacentral", "Canada Central"),
    ("canadaeast", "Canada East"),
    ("brazilsouth", "Brazil South"),
    ("brazilsoutheast", "Brazil Southeast"),
    ("northeurope", "North Europe"),
    ("westeurope", "West Europe"),
    ("uksouth", "UK South"),
    ("ukwest", "UK West"),
    ("francecentral", "France Central"),
    ("francesouth", "France South"),
    ("germanywestcentral", "Germany West Central"),
    ("germanynorth", "Germany North"),
    ("norwayeast", "Norway East"),
    ("norwaywest", "Norway West"),
    ("switzerlandnorth", "Switzerland North"),
    ("switzerlandwest", "Switzerland West"),
    ("swedencentral", "Sweden Central"),
    ("swedensouth", "Sweden South"),
    ("uaenorth", "UAE North"),
    ("uaecentral", "UAE Central"),
    ("southafricanorth", "South Africa North"),
    ("southafricawest", "South Africa West"),
    ("centralindia", "Central India"),
    ("southindia", "South India"),
    ("westindia", "West India"),
    ("eastasia", "East Asia"),
    ("southeastasia", "Southeast Asia"),
    ("japaneast", "Japan East"),
    ("japanwest", "Japan West"),
    ("koreacentral", "Korea Central"),
    ("koreasouth", "Korea South"),
    ("australiaeast", "Australia East"),
    ("australiasoutheast", "Australia Southeast"),
    ("australiacentral", "Australia Central"),
    ("australiacentral2", "Australia Central 2"),
];

/// The display name of a programmatic region name (`"japaneast"` → `"Japan East"`); an
/// unknown region keeps the name given.
pub(crate) fn display(region: &str) -> &str {
    let key = normalize(region);
    DISPLAY
        .iter()
        .find(|(name, _)| *name == key)
        .map_or(region, |(_, display)| display)
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
