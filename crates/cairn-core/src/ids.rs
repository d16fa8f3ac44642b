//! Newtypes for identifiers and validated values: invalid values cannot exist past the edge.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! uuid_id {
    ($name:ident, $what:literal) => {
        #[doc = concat!("The identifier of a ", $what, ": a UUID, case-sensitive, never reused.")]
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A new identifier: a version 7 UUID, 74 random bits after a millisecond
            /// timestamp. Ids issued one after another sort one after another, so each new
            /// row lands at the end of every index on its id instead of on a random page of
            /// it: a create rewrites one page fewer of a large tenant's indexes. The
            /// timestamp tells no more than the resource's `meta.created`.
            pub fn random() -> Self {
                $name(uuid::Uuid::now_v7().to_string())
            }
            /// Accepts only the canonical lower-case hyphenated UUID form that Cairn issues;
            /// anything else cannot name an existing object.
            pub fn parse(s: &str) -> Option<Self> {
                let u = uuid::Uuid::try_parse(s).ok()?;
                let canonical = u.to_string();
                (canonical == s).then_some($name(canonical))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
            /// For values read back from storage, which only ever holds issued ids.
            pub fn from_trusted(s: String) -> Self {
                $name(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

uuid_id!(TenantId, "tenant");
uuid_id!(UserId, "backup account");
uuid_id!(TokenId, "SCIM API token");
uuid_id!(DashboardUserId, "dashboard user");
uuid_id!(GroupId, "group");

/// A SCIM `userName`: kept exactly as sent, compared without regard to letter case
/// (RFC 7643 §4.1.1 declares it `caseExact: false`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserName(String);

impl UserName {
    pub const MAX_LEN: usize = 256;

    pub fn parse(s: &str) -> Result<Self, String> {
        if s.trim().is_empty() {
            return Err("userName must not be empty".into());
        }
        if s.chars().count() > Self::MAX_LEN {
            return Err(format!(
                "userName is longer than {} characters",
                Self::MAX_LEN
            ));
        }
        if s.chars().any(char::is_control) {
            return Err("userName must not contain control characters".into());
        }
        Ok(UserName(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The form uniqueness and case-insensitive filters use.
    pub fn folded(&self) -> String {
        fold_case(&self.0)
    }
    pub fn from_trusted(s: String) -> Self {
        UserName(s)
    }
}

impl PartialEq for UserName {
    fn eq(&self, other: &Self) -> bool {
        self.folded() == other.folded()
    }
}
impl Eq for UserName {}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Case folding used for every case-insensitive comparison, in Rust and in SQL alike.
pub fn fold_case(s: &str) -> String {
    s.to_lowercase()
}

/// The storage quota of a backup account, in whole gigabytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct QuotaGb(u32);

impl QuotaGb {
    pub const MIN: u32 = 1;
    /// 1 PB per account: far above any real backup account, low enough to catch typos.
    pub const MAX: u32 = 1_000_000;

    pub fn new(gb: i64) -> Result<Self, String> {
        if gb < i64::from(Self::MIN) {
            return Err(format!("Account Size must be at least {} GB", Self::MIN));
        }
        if gb > i64::from(Self::MAX) {
            return Err(format!("Account Size must be at most {} GB", Self::MAX));
        }
        Ok(QuotaGb(gb as u32))
    }
    pub fn get(self) -> u32 {
        self.0
    }
}

impl Default for QuotaGb {
    fn default() -> Self {
        QuotaGb(10)
    }
}

impl fmt::Display for QuotaGb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} GB", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accept_only_canonical_uuids() {
        let id = UserId::random();
        assert_eq!(UserId::parse(id.as_str()), Some(id.clone()));
        assert_eq!(UserId::parse(&id.as_str().to_uppercase()), None);
        assert_eq!(UserId::parse("00919288221112222"), None);
        assert_eq!(UserId::parse("../../etc/passwd"), None);
    }

    #[test]
    fn ids_issued_later_sort_later() {
        // Twenty ids: v4 ids would come out sorted by chance once in 20! runs.
        let ids: Vec<UserId> = (0..20)
            .map(|_| {
                std::thread::sleep(std::time::Duration::from_millis(2));
                UserId::random()
            })
            .collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(sorted, ids);
        let distinct: std::collections::HashSet<_> = (0..1000).map(|_| UserId::random()).collect();
        assert_eq!(distinct.len(), 1000);
    }

    #[test]
    fn user_names_compare_without_case() {
        let a = UserName::parse("Alice@Example.COM").unwrap();
        let b = UserName::parse("alice@example.com").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.as_str(), "Alice@Example.COM");
        assert!(UserName::parse("  ").is_err());
        assert!(UserName::parse("a\u{0}b").is_err());
    }

    #[test]
    fn quota_bounds() {
        assert!(QuotaGb::new(0).is_err());
        assert!(QuotaGb::new(1).is_ok());
        assert!(QuotaGb::new(1_000_001).is_err());
    }
}
