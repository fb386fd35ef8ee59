//! The itemtype catalog: GLPI's common types, seeded at start, plus custom types.

use crate::error::{AppError, AppResult};

/// A seeded itemtype: its name, the types its items may have as parent, and its known fields.
pub struct Seeded {
    pub name: &'static str,
    pub parent_itemtypes: &'static [&'static str],
    pub fields: &'static [&'static str],
}

const ITIL_FIELDS: &[&str] = &[
    "content",
    "status",
    "priority",
    "urgency",
    "impact",
    "date",
    "solvedate",
    "closedate",
    "time_to_resolve",
    "itilcategories_id",
    "users_id_recipient",
    "users_id_lastupdater",
];
const ASSET_FIELDS: &[&str] = &[
    "serial",
    "otherserial",
    "contact",
    "comment",
    "manufacturers_id",
    "brand",
    "states_id",
    "locations_id",
    "users_id_tech",
    "groups_id_tech",
    "is_template",
];

/// GLPI's common itemtypes (spec 2.1), present in every hookline database.
pub const SEEDED: &[Seeded] = &[
    Seeded { name: "Ticket", parent_itemtypes: &[], fields: ITIL_FIELDS },
    Seeded { name: "Change", parent_itemtypes: &[], fields: ITIL_FIELDS },
    Seeded { name: "Problem", parent_itemtypes: &[], fields: ITIL_FIELDS },
    Seeded {
        name: "ITILFollowup",
        parent_itemtypes: &["Ticket", "Change", "Problem"],
        fields: &["content", "is_private", "requesttypes_id", "users_id", "date"],
    },
    Seeded {
        name: "TicketTask",
        parent_itemtypes: &["Ticket"],
        fields: &["content", "is_private", "state", "actiontime", "users_id", "users_id_tech", "date", "begin", "end"],
    },
    Seeded { name: "Computer", parent_itemtypes: &[], fields: ASSET_FIELDS },
    Seeded { name: "Monitor", parent_itemtypes: &[], fields: ASSET_FIELDS },
    Seeded { name: "NetworkEquipment", parent_itemtypes: &[], fields: ASSET_FIELDS },
    Seeded { name: "Printer", parent_itemtypes: &[], fields: ASSET_FIELDS },
    Seeded { name: "Phone", parent_itemtypes: &[], fields: ASSET_FIELDS },
    Seeded {
        name: "Software",
        parent_itemtypes: &[],
        fields: &["comment", "manufacturers_id", "brand", "softwarecategories_id", "is_helpdesk_visible"],
    },
    Seeded {
        name: "User",
        parent_itemtypes: &[],
        fields: &["realname", "firstname", "email", "phone", "mobile", "is_active", "profiles_id", "locations_id"],
    },
    Seeded {
        name: "Supplier",
        parent_itemtypes: &[],
        fields: &["suppliertypes_id", "address", "postcode", "town", "country", "website", "phonenumber", "email"],
    },
    Seeded {
        name: "Contract",
        parent_itemtypes: &[],
        fields: &["num", "contracttypes_id", "begin_date", "duration", "notice", "cost", "states_id"],
    },
];

/// A valid itemtype name: a letter, then letters, digits, `_` or `\` (GLPI's namespaced
/// custom assets such as `Glpi\CustomAsset\Car`), at most 255 characters.
pub fn checked_name(name: &str) -> AppResult<String> {
    let name = name.trim();
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.len() <= 255
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '\\');
    if valid {
        Ok(name.to_owned())
    } else {
        Err(AppError::validation(format!(
            "name: `{name}` is not a valid itemtype name (a letter, then letters, digits, `_` or `\\`)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_parents_are_seeded_types() {
        for seeded in SEEDED {
            for parent in seeded.parent_itemtypes {
                assert!(SEEDED.iter().any(|s| s.name == *parent), "{parent}");
            }
        }
    }

    #[test]
    fn itemtype_names_are_identifiers() {
        assert!(checked_name("Glpi\\CustomAsset\\Car").is_ok());
        assert!(checked_name("1Ticket").is_err());
        assert!(checked_name("Tick et").is_err());
        assert!(checked_name("").is_err());
    }
}
