//! Profiles and the rights they hold, declared once.

use std::fmt;

/// What a caller may be allowed to do. Every GraphQL field needs one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Right {
    /// Read configuration, items, history, the queue, previews and subscriptions in scope.
    Read,
    /// Read items and the itemtypes (what a script that writes items needs to read).
    ReadItems,
    /// Create, update, delete, restore and purge items, raise events; read those items.
    WriteItems,
    /// Force send, resend, cancel queued webhooks.
    OperateQueue,
    /// Change webhooks, entities, saved searches, run the cleanup, issue tokens, in scope.
    Configure,
    /// Change global catalogs: itemtypes, webhook categories.
    ConfigureGlobal,
}

impl Right {
    pub const ALL: [Right; 6] = [
        Right::Read,
        Right::ReadItems,
        Right::WriteItems,
        Right::OperateQueue,
        Right::Configure,
        Right::ConfigureGlobal,
    ];

    /// What the right allows, as refusals word it ("needs the right to …").
    pub fn describe(self) -> &'static str {
        match self {
            Self::Read => "read configuration and the queue",
            Self::ReadItems => "read items",
            Self::WriteItems => "write items and raise events",
            Self::OperateQueue => "act on queued webhooks",
            Self::Configure => "change configuration",
            Self::ConfigureGlobal => "change global catalogs",
        }
    }
}

/// A caller's profile, as the `profile` claim of its token names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Profile {
    SuperAdmin,
    Admin,
    Operator,
    Viewer,
    EventWriter,
}

impl Profile {
    pub const ALL: [Profile; 5] =
        [Profile::SuperAdmin, Profile::Admin, Profile::Operator, Profile::Viewer, Profile::EventWriter];

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|profile| profile.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SuperAdmin => "super-admin",
            Self::Admin => "admin",
            Self::Operator => "operator",
            Self::Viewer => "viewer",
            Self::EventWriter => "event-writer",
        }
    }

    /// The table of the authentication issue: which profile holds which right.
    pub fn has(self, right: Right) -> bool {
        use Right::*;
        match self {
            Self::SuperAdmin => true,
            Self::Admin => right != ConfigureGlobal,
            Self::Operator => matches!(right, Read | ReadItems | OperateQueue),
            Self::Viewer => matches!(right, Read | ReadItems),
            Self::EventWriter => matches!(right, WriteItems | ReadItems),
        }
    }

    /// Whether a token of this profile may issue a token of `other`: only within its own
    /// rights (an admin cannot make a super-admin).
    pub fn may_issue(self, other: Profile) -> bool {
        self.has(Right::Configure) && Right::ALL.into_iter().all(|right| !other.has(right) || self.has(right))
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_hold_the_rights_of_the_table() {
        assert!(Profile::SuperAdmin.has(Right::ConfigureGlobal));
        assert!(!Profile::Admin.has(Right::ConfigureGlobal));
        assert!(Profile::Admin.has(Right::Configure) && Profile::Admin.has(Right::OperateQueue));
        assert!(Profile::Operator.has(Right::OperateQueue) && !Profile::Operator.has(Right::Configure));
        assert!(Profile::Viewer.has(Right::Read) && !Profile::Viewer.has(Right::OperateQueue));
        assert!(Profile::EventWriter.has(Right::WriteItems) && !Profile::EventWriter.has(Right::Read));
        assert!(Profile::EventWriter.has(Right::ReadItems) && Profile::Viewer.has(Right::ReadItems));
        assert!(!Profile::Viewer.has(Right::WriteItems));
    }

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for profile in Profile::ALL {
            assert_eq!(Profile::parse(profile.as_str()), Some(profile));
        }
        assert_eq!(Profile::parse("root"), None);
        assert_eq!(Profile::parse("Admin"), None);
    }

    #[test]
    fn a_token_is_issued_only_within_the_issuers_rights() {
        assert!(Profile::SuperAdmin.may_issue(Profile::SuperAdmin));
        assert!(Profile::Admin.may_issue(Profile::Admin));
        assert!(Profile::Admin.may_issue(Profile::EventWriter));
        assert!(!Profile::Admin.may_issue(Profile::SuperAdmin));
        assert!(!Profile::Operator.may_issue(Profile::Viewer), "issuing tokens is configuration");
    }
}
