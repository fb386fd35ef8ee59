//! Which webhooks an event fires (spec 3): active webhooks of the itemtype and event whose
//! entity is the item's entity, or an ancestor of it when the webhook is recursive.

/// Whether a webhook in `webhook_entity` fires for an item whose entity chain (its entity
/// first, then each ancestor up to the root) is `item_entities`.
pub fn entity_matches(webhook_entity: i64, is_recursive: bool, item_entities: &[i64]) -> bool {
    match item_entities.split_first() {
        Some((own, ancestors)) => *own == webhook_entity || (is_recursive && ancestors.contains(&webhook_entity)),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Root 0 > Europe 1 > Paris 2
    const PARIS: &[i64] = &[2, 1, 0];

    #[test]
    fn a_webhook_fires_in_its_own_entity() {
        assert!(entity_matches(2, false, PARIS));
    }

    #[test]
    fn a_recursive_webhook_fires_below_its_entity() {
        assert!(entity_matches(0, true, PARIS));
        assert!(entity_matches(1, true, PARIS));
        assert!(!entity_matches(1, false, PARIS));
    }

    #[test]
    fn a_webhook_never_fires_above_its_entity() {
        assert!(!entity_matches(2, true, &[1, 0]));
        assert!(!entity_matches(3, true, PARIS));
    }
}
