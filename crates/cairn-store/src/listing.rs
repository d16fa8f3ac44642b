//! What a list query's shape says, the same for both backends: which filters are lookups
//! by a key, which can match one row at most, and when a page already gives the total.

use cairn_core::query::{AttrTarget, CompareOp, Filter, Scalar};

/// The attribute of an `… eq "string"` comparison.
fn eq_target(f: &Filter) -> Option<&AttrTarget> {
    match f {
        Filter::Compare {
            attr,
            op: CompareOp::Eq,
            value: Scalar::String(_),
        } => Some(&attr.target),
        _ => None,
    }
}

/// One comparison `id`, `userName` or `externalId` `eq` a string, alone: Okta's and
/// Entra's lookups, and a statement of a fixed shape.
pub(crate) fn is_single_key_lookup(f: &Filter) -> bool {
    eq_target(f).is_some_and(|t| {
        matches!(
            t,
            AttrTarget::Id | AttrTarget::UserName | AttrTarget::ExternalId
        )
    })
}

/// A key lookup alone or and-ed with anything: an index bounds the rows read whatever
/// the tenant's size, so such a list is a lookup, not a scan.
pub(crate) fn is_key_lookup(f: &Filter) -> bool {
    match f {
        Filter::And(a, b) => is_key_lookup(a) || is_key_lookup(b),
        _ => is_single_key_lookup(f),
    }
}

/// `id eq` or `userName eq` (both unique per tenant among live rows), alone or and-ed
/// with anything: one live row at most, so there is nothing to order.
pub(crate) fn matches_at_most_one(f: &Filter) -> bool {
    match f {
        Filter::And(a, b) => matches_at_most_one(a) || matches_at_most_one(b),
        _ => eq_target(f).is_some_and(|t| matches!(t, AttrTarget::Id | AttrTarget::UserName)),
    }
}

/// The total a page of `returned` rows read at `offset` with `count` wanted gives by
/// itself: a page that is not full ends the result. An empty page past the start does
/// not say where the result ended, so it gives none, and neither does a full page.
pub(crate) fn total_from_page(offset: u64, count: u64, returned: usize) -> Option<u64> {
    let returned = returned as u64;
    (returned < count && (offset == 0 || returned > 0)).then_some(offset + returned)
}

/// Where later pages of tenants' unfiltered account lists start, learnt from the pages
/// served: per tenant, the generation of `user_list_state` the starts were read at (every
/// change to the tenant's set of live accounts advances it; kept by triggers on both
/// backends, so every process sharing the database sees it move) and `offset -> after`,
/// meaning the live account at `offset` is the first with `seq > after`. Starts of an
/// older generation are dropped when a newer one is seen. Each process learns its own.
#[derive(Default)]
pub(crate) struct PageStarts {
    tenants: std::collections::HashMap<String, TenantStarts>,
}

struct TenantStarts {
    generation: i64,
    after: std::collections::HashMap<u64, i64>,
}

/// Starts remembered per tenant, and tenants; past either the map starts over.
const MAX_PAGE_STARTS: usize = 1024;

/// What a plain listing (no filter, insertion order) reads for a page, given the tenant's
/// live count: see [`PageStarts::plan`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PlainPage {
    /// Nothing: no rows wanted, or the page starts past the last live account.
    Empty,
    /// The rows with `seq` greater than this, in `seq` order.
    After(i64),
    /// Where the page starts is not known: first the `seq` of the live account at this
    /// 0-based position (the one just before the page), then the rows after it.
    Seek(i64),
}

impl PageStarts {
    /// What to read for the page at `offset` (0-based) of `count` rows, at `generation`
    /// of a tenant with `total` live accounts.
    pub(crate) fn plan(
        &self,
        tenant: &str,
        offset: u64,
        count: u64,
        total: u64,
        generation: i64,
    ) -> PlainPage {
        if count == 0 || offset >= total {
            PlainPage::Empty
        } else if offset == 0 {
            PlainPage::After(0) // seq starts at 1
        } else if let Some(after) = self.get(tenant, offset, generation) {
            PlainPage::After(after)
        } else {
            PlainPage::Seek((offset - 1).min(i64::MAX as u64) as i64)
        }
    }

    /// Remembers what a page read at `generation` showed: that the page at `offset`
    /// starts after `sought` (when it was looked up), and that the one after its `rows`
    /// rows starts after `last`, the `seq` of its last row.
    pub(crate) fn learn(
        &mut self,
        tenant: &str,
        generation: i64,
        offset: u64,
        sought: Option<i64>,
        rows: usize,
        last: Option<i64>,
    ) {
        let learnt: Vec<(u64, i64)> = sought
            .map(|after| (offset, after))
            .into_iter()
            .chain(last.map(|after| (offset + rows as u64, after)))
            .collect();
        self.put(tenant, generation, &learnt);
    }

    fn get(&self, tenant: &str, offset: u64, generation: i64) -> Option<i64> {
        let t = self.tenants.get(tenant)?;
        if t.generation != generation {
            return None;
        }
        t.after.get(&offset).copied()
    }

    fn put(&mut self, tenant: &str, generation: i64, starts: &[(u64, i64)]) {
        if !self.tenants.contains_key(tenant) {
            if self.tenants.len() >= MAX_PAGE_STARTS {
                self.tenants.clear();
            }
            self.tenants.insert(
                tenant.to_owned(),
                TenantStarts {
                    generation,
                    after: Default::default(),
                },
            );
        }
        let t = self.tenants.get_mut(tenant).expect("inserted above");
        if generation < t.generation {
            return; // read in an older snapshot than starts already known
        }
        if generation > t.generation || t.after.len() >= MAX_PAGE_STARTS {
            t.generation = generation;
            t.after.clear();
        }
        t.after.extend(starts.iter().copied());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page's plan: empty past the end or when nothing is wanted, the first page from
    /// the start, a later one sought until a page at the same generation taught where it
    /// starts, and sought again once the generation moves.
    #[test]
    fn plain_pages_seek_until_a_page_of_the_same_generation_says_where_they_start() {
        let mut s = PageStarts::default();
        assert_eq!(s.plan("t", 0, 0, 10, 1), PlainPage::Empty);
        assert_eq!(s.plan("t", 10, 5, 10, 1), PlainPage::Empty);
        assert_eq!(s.plan("t", 0, 5, 10, 1), PlainPage::After(0));
        assert_eq!(s.plan("t", 5, 5, 10, 1), PlainPage::Seek(4));
        // Page 1 (rows seq 1..=5, the last seq 7 after gaps) teaches where page 2 starts.
        s.learn("t", 1, 0, None, 5, Some(7));
        assert_eq!(s.plan("t", 5, 5, 10, 1), PlainPage::After(7));
        assert_eq!(s.plan("u", 5, 5, 10, 1), PlainPage::Seek(4));
        // A sought page teaches its own start and the next one's.
        s.learn("t", 1, 7, Some(9), 2, Some(12));
        assert_eq!(s.plan("t", 7, 5, 10, 1), PlainPage::After(9));
        assert_eq!(s.plan("t", 9, 5, 10, 1), PlainPage::After(12));
        // A change to the tenant's accounts: what was learnt no longer holds.
        assert_eq!(s.plan("t", 5, 5, 10, 2), PlainPage::Seek(4));
        // An empty page teaches nothing about the next.
        s.learn("t", 2, 9, Some(12), 0, None);
        assert_eq!(s.plan("t", 9, 5, 10, 2), PlainPage::After(12));
        assert_eq!(s.plan("t", 5, 5, 10, 2), PlainPage::Seek(4));
    }
    use cairn_core::query::{Attr, AttrKind};

    fn cmp(target: AttrTarget, op: CompareOp) -> Filter {
        Filter::Compare {
            attr: Attr {
                target,
                kind: AttrKind::String,
                case_exact: false,
            },
            op,
            value: Scalar::String("x".into()),
        }
    }

    #[test]
    fn only_keyed_eq_lookups_are_lookups() {
        for t in [AttrTarget::Id, AttrTarget::UserName, AttrTarget::ExternalId] {
            assert!(is_key_lookup(&cmp(t.clone(), CompareOp::Eq)));
            assert!(is_single_key_lookup(&cmp(t.clone(), CompareOp::Eq)));
            // and-ed with anything, the key still bounds the rows read
            let and = Filter::And(
                Box::new(cmp(AttrTarget::DisplayName, CompareOp::Co)),
                Box::new(cmp(t.clone(), CompareOp::Eq)),
            );
            assert!(is_key_lookup(&and));
            // but it is no longer a statement of a fixed shape
            assert!(!is_single_key_lookup(&and));
            // scans stay on the blocking pool
            assert!(!is_key_lookup(&cmp(t.clone(), CompareOp::Sw)));
            let or = Filter::Or(
                Box::new(cmp(t.clone(), CompareOp::Eq)),
                Box::new(cmp(AttrTarget::DisplayName, CompareOp::Eq)),
            );
            assert!(!is_key_lookup(&or));
            assert!(!is_key_lookup(&Filter::Not(Box::new(cmp(
                t,
                CompareOp::Eq
            )))));
        }
        assert!(!is_key_lookup(&cmp(AttrTarget::DisplayName, CompareOp::Eq)));
        assert!(!is_key_lookup(&cmp(
            AttrTarget::Json(vec!["title".into()]),
            CompareOp::Eq
        )));
    }

    #[test]
    fn only_unique_keys_match_at_most_one() {
        for t in [AttrTarget::Id, AttrTarget::UserName] {
            assert!(matches_at_most_one(&cmp(t.clone(), CompareOp::Eq)));
            assert!(matches_at_most_one(&Filter::And(
                Box::new(cmp(AttrTarget::DisplayName, CompareOp::Co)),
                Box::new(cmp(t.clone(), CompareOp::Eq)),
            )));
            assert!(!matches_at_most_one(&cmp(t, CompareOp::Sw)));
        }
        // externalId is indexed, not unique
        assert!(!matches_at_most_one(&cmp(
            AttrTarget::ExternalId,
            CompareOp::Eq
        )));
    }

    #[test]
    fn only_a_page_that_ends_the_result_gives_the_total() {
        assert_eq!(total_from_page(0, 100, 0), Some(0));
        assert_eq!(total_from_page(0, 100, 7), Some(7));
        assert_eq!(total_from_page(200, 100, 7), Some(207));
        assert_eq!(total_from_page(0, 100, 100), None); // full: more may follow
        assert_eq!(total_from_page(500, 100, 0), None); // past the end: where did it end?
    }
}
