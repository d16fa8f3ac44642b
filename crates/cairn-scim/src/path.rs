//! PATCH paths (RFC 7644 §3.5.2: `PATH = attrPath / valuePath [subAttr]`), parsed with the
//! same attribute-path and filter code as `crate::filter`.

use crate::filter::{check_len, AttrPath, Expr, Parser};
use crate::ScimError;
use std::fmt;

/// `attr`, `attr.sub`, `attr[filter]` or `attr[filter].sub`, each optionally URN-qualified.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    /// The attribute; `attr.sub` is set only when there is no filter.
    pub attr: AttrPath,
    /// The value selection filter, relative to each element.
    pub filter: Option<Expr>,
    /// The sub-attribute after a filter (`emails[type eq "work"].value`).
    pub sub: Option<String>,
}

impl PatchPath {
    /// The sub-attribute targeted, before or after a filter.
    pub fn sub_attr(&self) -> Option<&str> {
        self.sub.as_deref().or(self.attr.sub.as_deref())
    }
}

impl fmt::Display for PatchPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.attr)?;
        if let Some(filter) = &self.filter {
            write!(f, "[{filter}]")?;
        }
        if let Some(s) = &self.sub {
            write!(f, ".{s}")?;
        }
        Ok(())
    }
}

/// Parses a PATCH `path`; every failure is 400 `invalidPath`.
pub fn parse(input: &str) -> Result<PatchPath, ScimError> {
    let fail = |e: crate::filter::SyntaxError| {
        ScimError::invalid_path(format!("invalid path {:?}: {e}", truncate(input)))
    };
    check_len(input).map_err(fail)?;
    let mut p = Parser::new(input.trim());
    let attr = p.attr_path().map_err(fail)?;
    let mut filter = None;
    let mut sub = None;
    if p.peek_char() == Some('[') {
        if attr.sub.is_some() {
            return Err(ScimError::invalid_path(format!(
                "invalid path {:?}: a value filter applies to an attribute, not a sub-attribute",
                truncate(input)
            )));
        }
        filter = Some(p.bracket_filter().map_err(fail)?);
        sub = p.sub_attr().map_err(fail)?;
    }
    if !p.finished() {
        return Err(fail(p.unexpected::<()>().unwrap_err()));
    }
    Ok(PatchPath { attr, filter, sub })
}

fn truncate(s: &str) -> String {
    s.chars().take(100).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::{CompareOp, Scalar};

    #[test]
    fn client_paths_parse() {
        let p = parse("name.givenName").unwrap();
        assert_eq!(
            (p.attr.name.as_str(), p.sub_attr()),
            ("name", Some("givenName"))
        );
        assert!(p.filter.is_none());

        let p = parse(r#"emails[type eq "work"].value"#).unwrap();
        assert_eq!(p.attr.name, "emails");
        assert_eq!(p.sub.as_deref(), Some("value"));
        assert_eq!(
            p.filter,
            Some(Expr::Compare {
                path: AttrPath::simple("type"),
                op: CompareOp::Eq,
                value: Scalar::String("work".into())
            })
        );

        let p = parse(r#"members[value eq "89bb"]"#).unwrap();
        assert!(p.filter.is_some() && p.sub.is_none());

        let p = parse("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber")
            .unwrap();
        assert_eq!(
            p.attr.urn.as_deref(),
            Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")
        );
        assert_eq!(p.attr.name, "employeeNumber");

        let p = parse("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value")
            .unwrap();
        assert_eq!(
            (p.attr.name.as_str(), p.sub_attr()),
            ("manager", Some("value"))
        );

        for text in [
            "active",
            "name.givenName",
            r#"emails[type eq "work"].value"#,
            r#"addresses[type eq "work" and primary eq true].locality"#,
        ] {
            assert_eq!(parse(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn bad_paths_are_invalid_path() {
        for bad in [
            "",
            "name..givenName",
            "a.b.c",
            "emails[type eq \"work\"",
            "emails[type eq]",
            "name.givenName[value eq \"x\"]",
            "emails[type eq \"work\"].value.x",
            "emails[type eq \"work\"] junk",
            "userName eq \"x\"",
            "9lives",
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.scim_type, Some(crate::ScimType::InvalidPath), "{bad}");
        }
    }
}
