//! What the SCIM layer normalised or ignored in a request ("`active` sent as the string
//! \"False\"; treated as false"), for the provisioning inspector. The places that tolerate
//! a client quirk call [`note`]; whoever wants the notes runs the parsing inside
//! [`collect`]. Outside `collect` a note costs one thread-local read and is dropped, so
//! the parsers keep their signatures and the tolerance logic stays in one place.

use std::cell::RefCell;

/// Notes kept per request: a body with thousands of unknown attributes says the same
/// thing after the first few.
pub const MAX_NOTES: usize = 20;

thread_local! {
    static SINK: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

/// Records a note when a collector is active on this thread (the text is only built
/// then). Repeated notes are kept once.
pub fn note(text: impl FnOnce() -> String) {
    SINK.with(|s| {
        if let Some(v) = s.borrow_mut().as_mut() {
            if v.len() < MAX_NOTES {
                let t = text();
                if !v.contains(&t) {
                    v.push(t);
                }
            }
        }
    });
}

/// Runs `f` with `sink` as this thread's collector, appending the notes `f` makes to it.
/// Nested calls collect into the innermost sink. An async caller wraps each poll of its
/// future in this, so notes made on any worker thread land in the request's sink.
pub fn collect<R>(sink: &mut Vec<String>, f: impl FnOnce() -> R) -> R {
    scoped(&SINK, sink, f)
}

/// Runs `f` with `slot`'s value lent to the thread-local `key` (`Some` while `f` runs,
/// so code deep inside `f` can add to it), then takes it back, also when `f` panics,
/// and restores what `key` held before. The mechanism behind [`collect`], for other
/// per-request slots filled from inside a handler (the inspector's token).
pub fn scoped<T: Default + 'static, R>(
    key: &'static std::thread::LocalKey<RefCell<Option<T>>>,
    slot: &mut T,
    f: impl FnOnce() -> R,
) -> R {
    struct Restore<'a, T: Default + 'static> {
        key: &'static std::thread::LocalKey<RefCell<Option<T>>>,
        slot: &'a mut T,
        prev: Option<T>,
    }
    impl<T: Default + 'static> Drop for Restore<'_, T> {
        fn drop(&mut self) {
            let prev = self.prev.take();
            let mine = self
                .key
                .with(|s| std::mem::replace(&mut *s.borrow_mut(), prev));
            *self.slot = mine.unwrap_or_default();
        }
    }
    let taken = std::mem::take(slot);
    let prev = key.with(|s| s.borrow_mut().replace(taken));
    let _restore = Restore { key, slot, prev };
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_land_only_in_an_active_sink() {
        note(|| "dropped".into());
        let mut sink = Vec::new();
        collect(&mut sink, || {
            note(|| "a".into());
            note(|| "a".into());
            let mut inner = Vec::new();
            collect(&mut inner, || note(|| "inner".into()));
            assert_eq!(inner, ["inner"]);
            note(|| "b".into());
        });
        assert_eq!(sink, ["a", "b"]);
        // A second poll appends.
        collect(&mut sink, || note(|| "c".into()));
        assert_eq!(sink, ["a", "b", "c"]);
        let mut fresh = Vec::new();
        collect(&mut fresh, || {});
        assert!(fresh.is_empty());
    }
}

#[cfg(test)]
mod quirk_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tolerated_quirks_are_noted() {
        let body = json!({
            "userName": "ann@example.com",
            "active": "False",
            "password": "hunter2",
            "emails": {"value": "ann@example.com", "type": "work"},
            "urn:ietf:params:scim:schemas:extension:acme:2.0:User": {"costCenter": "7"}
        });
        let mut sink = Vec::new();
        let user = collect(&mut sink, || crate::user_from_request(&body)).unwrap();
        assert!(!user.active);
        for expected in [
            "active sent as the string \"False\"; treated as false",
            "password accepted and not stored",
            "unknown attribute urn:ietf:params:scim:schemas:extension:acme:2.0:User:costCenter ignored",
            "emails sent as a single value instead of a list; treated as a list of one",
        ] {
            assert!(sink.iter().any(|n| n == expected), "{expected:?} not in {sink:?}");
        }
        let patch = json!({
            "Operations": [{"op": "Replace", "path": "urn:x:costCenter", "value": "1"}]
        });
        let mut sink = Vec::new();
        collect(&mut sink, || crate::parse_patch(&patch)).unwrap();
        assert_eq!(sink, ["op \"Replace\" read as \"replace\""]);
    }
}
