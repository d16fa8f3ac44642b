//! The SCIM filter grammar (RFC 7644 §3.4.2.2): lexing, parsing into an [`Expr`] tree and
//! printing it back. The attribute-path part of the grammar is shared with PATCH paths
//! (`crate::path`). Resolution against the schema lives in `crate::query`.
//!
//! Tolerances beyond the RFC, each answering a real client:
//! - keywords and operators in any letter case (RFC 5234 strings are case-insensitive);
//! - a bare unquoted value is a string (`externalId eq jyoung` appears in Microsoft Learn's
//!   "Tutorial: Develop and plan provisioning for a SCIM endpoint in Microsoft Entra ID",
//!   <https://learn.microsoft.com/en-us/entra/identity/app-provisioning/use-scim-to-provision-users-and-groups>);
//! - `emails[type eq "work"].value eq "x"`: a value path followed by a sub-attribute test,
//!   which Entra sends for the work email (same tutorial) although the RFC grammar only
//!   has it in PATCH paths.
//!
//! Hostile input is bounded: at most [`MAX_LEN`] characters and [`MAX_DEPTH`] levels of
//! parentheses, `not` and brackets, so recursion depth is bounded too.

use crate::ScimError;
pub use cairn_core::query::{CompareOp, Scalar};
use std::fmt;

/// Longest filter accepted, in characters.
pub const MAX_LEN: usize = 4096;
/// Deepest nesting of `(`, `not (` and `[` accepted.
pub const MAX_DEPTH: usize = 32;

/// `[URN ":"] ATTRNAME ["." subAttr]`, spelled as sent (resolution canonicalises).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    pub urn: Option<String>,
    pub name: String,
    pub sub: Option<String>,
}

impl AttrPath {
    pub fn simple(name: &str) -> Self {
        AttrPath {
            urn: None,
            name: name.to_owned(),
            sub: None,
        }
    }
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(u) = &self.urn {
            write!(f, "{u}:")?;
        }
        f.write_str(&self.name)?;
        if let Some(s) = &self.sub {
            write!(f, ".{s}")?;
        }
        Ok(())
    }
}

/// What is tested on an attribute: presence or a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    Present,
    Compare(CompareOp, Scalar),
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Present(AttrPath),
    Compare {
        path: AttrPath,
        op: CompareOp,
        value: Scalar,
    },
    /// `attr[filter]`, optionally followed by `.sub` and a test on that sub-attribute of
    /// the same element (`emails[type eq "work"].value eq "x"`). Paths inside `filter` are
    /// relative to the element.
    ValuePath {
        attr: AttrPath,
        filter: Box<Expr>,
        sub: Option<(String, Test)>,
    },
}

pub fn op_str(op: CompareOp) -> &'static str {
    match op {
        CompareOp::Eq => "eq",
        CompareOp::Ne => "ne",
        CompareOp::Co => "co",
        CompareOp::Sw => "sw",
        CompareOp::Ew => "ew",
        CompareOp::Gt => "gt",
        CompareOp::Ge => "ge",
        CompareOp::Lt => "lt",
        CompareOp::Le => "le",
    }
}

fn op_from(word: &str) -> Option<CompareOp> {
    Some(match word.to_ascii_lowercase().as_str() {
        "eq" => CompareOp::Eq,
        "ne" => CompareOp::Ne,
        "co" => CompareOp::Co,
        "sw" => CompareOp::Sw,
        "ew" => CompareOp::Ew,
        "gt" => CompareOp::Gt,
        "ge" => CompareOp::Ge,
        "lt" => CompareOp::Lt,
        "le" => CompareOp::Le,
        _ => return None,
    })
}

struct ScalarText<'a>(&'a Scalar);

impl fmt::Display for ScalarText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Scalar::String(s) => f.write_str(&serde_json::to_string(s).map_err(|_| fmt::Error)?),
            Scalar::Bool(b) => write!(f, "{b}"),
            Scalar::Null => f.write_str("null"),
            Scalar::Int(i) => write!(f, "{i}"),
            // Debug keeps a `.` or an exponent, so the text parses back as a decimal.
            Scalar::Decimal(d) => write!(f, "{d:?}"),
        }
    }
}

impl fmt::Display for Test {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Test::Present => f.write_str("pr"),
            Test::Compare(op, v) => write!(f, "{} {}", op_str(*op), ScalarText(v)),
        }
    }
}

impl Expr {
    fn precedence(&self) -> u8 {
        match self {
            Expr::Or(..) => 1,
            Expr::And(..) => 2,
            _ => 3,
        }
    }

    /// Writes `self`, parenthesised when its precedence is below `min`. `and` and `or`
    /// parse left-associatively, so a right operand of the same kind needs parentheses.
    fn write(&self, f: &mut fmt::Formatter<'_>, min: u8) -> fmt::Result {
        let paren = self.precedence() < min;
        if paren {
            f.write_str("(")?;
        }
        match self {
            Expr::Or(a, b) => {
                a.write(f, 1)?;
                f.write_str(" or ")?;
                b.write(f, 2)?;
            }
            Expr::And(a, b) => {
                a.write(f, 2)?;
                f.write_str(" and ")?;
                b.write(f, 3)?;
            }
            Expr::Not(e) => {
                f.write_str("not (")?;
                e.write(f, 0)?;
                f.write_str(")")?;
            }
            Expr::Present(p) => write!(f, "{p} pr")?,
            Expr::Compare { path, op, value } => {
                write!(f, "{path} {} {}", op_str(*op), ScalarText(value))?
            }
            Expr::ValuePath { attr, filter, sub } => {
                write!(f, "{attr}[")?;
                filter.write(f, 0)?;
                f.write_str("]")?;
                if let Some((name, test)) = sub {
                    write!(f, ".{name} {test}")?;
                }
            }
        }
        if paren {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// Prints the filter in a form [`parse`] reads back to the same tree.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, 0)
    }
}

/// Parses a filter; every failure is 400 `invalidFilter` with the offending position.
pub fn parse(input: &str) -> Result<Expr, ScimError> {
    check_len(input).map_err(|e| ScimError::invalid_filter(format!("invalid filter: {e}")))?;
    let mut p = Parser::new(input);
    p.filter()
        .map_err(|e| ScimError::invalid_filter(format!("invalid filter: {e}")))
}

pub(crate) fn check_len(input: &str) -> Result<(), SyntaxError> {
    if input.len() > 4 * MAX_LEN || input.chars().count() > MAX_LEN {
        return Err(SyntaxError {
            pos: 0,
            msg: format!("longer than {MAX_LEN} characters"),
        });
    }
    Ok(())
}

/// A grammar error at a byte offset; callers turn it into `invalidFilter` or
/// `invalidPath`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub pos: usize,
    pub msg: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at offset {})", self.msg, self.pos)
    }
}

type PResult<T> = Result<T, SyntaxError>;

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '_' | '-' | '$')
}

/// RFC 7643 §2.1 ATTRNAME (`ALPHA *(nameChar)`), plus `$ref`.
fn is_attr_name(s: &str) -> bool {
    if s.eq_ignore_ascii_case("$ref") {
        return true;
    }
    let mut cs = s.chars();
    matches!(cs.next(), Some(c) if c.is_ascii_alphabetic())
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// JSON number syntax: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`; returns
/// whether it has a fraction or exponent.
fn json_number(s: &str) -> Option<bool> {
    let b = s.as_bytes();
    let mut i = 0;
    if b.first() == Some(&b'-') {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    let int_start = i;
    let n = digits(&mut i);
    if n == 0 || (n > 1 && b[int_start] == b'0') {
        return None;
    }
    let mut decimal = false;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if digits(&mut i) == 0 {
            return None;
        }
        decimal = true;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return None;
        }
        decimal = true;
    }
    (i == b.len()).then_some(decimal)
}

pub(crate) struct Parser<'a> {
    src: &'a str,
    pos: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    pub(crate) fn new(src: &'a str) -> Self {
        Parser {
            src,
            pos: 0,
            depth: 0,
        }
    }

    fn err<T>(&self, msg: impl Into<String>) -> PResult<T> {
        Err(SyntaxError {
            pos: self.pos,
            msg: msg.into(),
        })
    }

    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn skip_ws(&mut self) -> bool {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if !c.is_whitespace() {
                break;
            }
            self.pos += c.len_utf8();
        }
        self.pos > start
    }

    fn at_end(&self) -> bool {
        self.pos >= self.src.len()
    }

    fn describe_here(&self) -> String {
        match self.peek() {
            None => "end of input".into(),
            Some(_) => {
                let rest: String = self.src[self.pos..].chars().take(12).collect();
                format!("{rest:?}")
            }
        }
    }

    fn expect(&mut self, c: char) -> PResult<()> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            self.err(format!("expected '{c}' but found {}", self.describe_here()))
        }
    }

    /// The run of attribute-path characters at the cursor, without consuming it.
    fn peek_word(&self) -> &'a str {
        let rest = &self.src[self.pos..];
        let end = rest.find(|c: char| !is_path_char(c)).unwrap_or(rest.len());
        &rest[..end]
    }

    /// Consumes the keyword `kw` (any case) if it stands at the cursor as a whole word.
    fn keyword(&mut self, kw: &str) -> bool {
        let w = self.peek_word();
        if w.eq_ignore_ascii_case(kw) {
            self.pos += w.len();
            true
        } else {
            false
        }
    }

    fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.err(format!("nested deeper than {MAX_DEPTH} levels"));
        }
        Ok(())
    }

    /// A whole filter: `FILTER` followed by the end of input.
    pub(crate) fn filter(&mut self) -> PResult<Expr> {
        self.skip_ws();
        if self.at_end() {
            return self.err("the filter is empty");
        }
        let e = self.or(false)?;
        self.skip_ws();
        if !self.at_end() {
            return self.err(format!(
                "expected 'and', 'or' or the end but found {}",
                self.describe_here()
            ));
        }
        Ok(e)
    }

    fn or(&mut self, in_brackets: bool) -> PResult<Expr> {
        let mut left = self.and(in_brackets)?;
        loop {
            let save = self.pos;
            self.skip_ws();
            if self.keyword("or") {
                let right = self.and(in_brackets)?;
                left = Expr::Or(Box::new(left), Box::new(right));
            } else {
                self.pos = save;
                return Ok(left);
            }
        }
    }

    fn and(&mut self, in_brackets: bool) -> PResult<Expr> {
        let mut left = self.unary(in_brackets)?;
        loop {
            let save = self.pos;
            self.skip_ws();
            if self.keyword("and") {
                let right = self.unary(in_brackets)?;
                left = Expr::And(Box::new(left), Box::new(right));
            } else {
                self.pos = save;
                return Ok(left);
            }
        }
    }

    fn unary(&mut self, in_brackets: bool) -> PResult<Expr> {
        self.skip_ws();
        if self.peek() == Some('(') {
            self.enter()?;
            self.pos += 1;
            let e = self.or(in_brackets)?;
            self.skip_ws();
            self.expect(')')?;
            self.depth -= 1;
            return Ok(e);
        }
        // `not` is an operator only when a parenthesis follows; otherwise it is an
        // attribute name.
        let save = self.pos;
        if self.keyword("not") {
            self.skip_ws();
            if self.peek() == Some('(') {
                self.enter()?;
                self.pos += 1;
                let e = self.or(in_brackets)?;
                self.skip_ws();
                self.expect(')')?;
                self.depth -= 1;
                return Ok(Expr::Not(Box::new(e)));
            }
            self.pos = save;
        }
        self.attr_exp(in_brackets)
    }

    /// `attrPath` (RFC 7644 §3.4.2.2, RFC 7643 §2.1): `[URN ":"] ATTRNAME ["." ATTRNAME]`.
    pub(crate) fn attr_path(&mut self) -> PResult<AttrPath> {
        let start = self.pos;
        let word = self.peek_word();
        if word.is_empty() {
            return self.err(format!(
                "expected an attribute name but found {}",
                self.describe_here()
            ));
        }
        let (urn, rest) = crate::schema::split_urn(word);
        let (name, sub) = match rest.split_once('.') {
            Some((n, s)) => (n, Some(s)),
            None => (rest, None),
        };
        let bad = |what: &str| SyntaxError {
            pos: start,
            msg: format!("{word:?} is not a valid attribute path ({what})"),
        };
        if let Some(u) = urn {
            if u.len() <= 4 || u.ends_with(':') {
                return Err(bad("empty schema URN part"));
            }
        }
        if !is_attr_name(name) {
            return Err(bad("bad attribute name"));
        }
        if let Some(s) = sub {
            if !is_attr_name(s) {
                return Err(bad("bad sub-attribute name"));
            }
        }
        self.pos += word.len();
        Ok(AttrPath {
            urn: urn.map(str::to_owned),
            name: name.to_owned(),
            sub: sub.map(str::to_owned),
        })
    }

    /// `"." ATTRNAME` after a value path.
    pub(crate) fn sub_attr(&mut self) -> PResult<Option<String>> {
        if self.peek() != Some('.') {
            return Ok(None);
        }
        self.pos += 1;
        let word = self.peek_word();
        if !is_attr_name(word) {
            return self.err(format!("{word:?} is not a valid sub-attribute name"));
        }
        self.pos += word.len();
        Ok(Some(word.to_owned()))
    }

    /// `[valFilter]` after an attribute path; returns the filter.
    pub(crate) fn bracket_filter(&mut self) -> PResult<Expr> {
        self.enter()?;
        self.expect('[')?;
        let f = self.or(true)?;
        self.skip_ws();
        self.expect(']')?;
        self.depth -= 1;
        Ok(f)
    }

    fn attr_exp(&mut self, in_brackets: bool) -> PResult<Expr> {
        let path = self.attr_path()?;
        if self.peek() == Some('[') {
            if in_brackets {
                return self.err("value filters cannot be nested");
            }
            if path.sub.is_some() {
                return self.err("a value filter applies to an attribute, not a sub-attribute");
            }
            let filter = self.bracket_filter()?;
            let sub = match self.sub_attr()? {
                Some(name) => Some((name, self.test()?)),
                None => None,
            };
            return Ok(Expr::ValuePath {
                attr: path,
                filter: Box::new(filter),
                sub,
            });
        }
        Ok(match self.test()? {
            Test::Present => Expr::Present(path),
            Test::Compare(op, value) => Expr::Compare { path, op, value },
        })
    }

    /// `SP "pr"` or `SP compareOp SP compValue`.
    fn test(&mut self) -> PResult<Test> {
        if !self.skip_ws() {
            return self.err(format!(
                "expected a space and an operator but found {}",
                self.describe_here()
            ));
        }
        let word = self.peek_word();
        if word.eq_ignore_ascii_case("pr") {
            self.pos += word.len();
            return Ok(Test::Present);
        }
        let Some(op) = op_from(word) else {
            return self.err(format!(
                "expected an operator (eq ne co sw ew gt ge lt le pr) but found {}",
                self.describe_here()
            ));
        };
        self.pos += word.len();
        if !self.skip_ws() {
            return self.err(format!(
                "expected a space and a value but found {}",
                self.describe_here()
            ));
        }
        Ok(Test::Compare(op, self.value()?))
    }

    /// `compValue`: a JSON string, `true`, `false`, `null` or a number; any other bare
    /// word is taken as a string (Entra's `externalId eq jyoung`).
    fn value(&mut self) -> PResult<Scalar> {
        let start = self.pos;
        if self.peek() == Some('"') {
            let bytes = self.src.as_bytes();
            let mut i = self.pos + 1;
            while i < bytes.len() && bytes[i] != b'"' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            if i >= bytes.len() {
                return self.err("unterminated string");
            }
            let text = &self.src[start..=i];
            let s: String = serde_json::from_str(text).map_err(|e| SyntaxError {
                pos: start,
                msg: format!("invalid string {text}: {e}"),
            })?;
            self.pos = i + 1;
            return Ok(Scalar::String(s));
        }
        let rest = &self.src[self.pos..];
        let end = rest
            .find(|c: char| c.is_whitespace() || c == ')' || c == ']')
            .unwrap_or(rest.len());
        let word = &rest[..end];
        if word.is_empty() {
            return self.err(format!(
                "expected a value but found {}",
                self.describe_here()
            ));
        }
        if word.contains(['"', '(', '[']) {
            return self.err(format!("{word:?} is not a valid value; quote strings"));
        }
        let v = if word.eq_ignore_ascii_case("true") {
            Scalar::Bool(true)
        } else if word.eq_ignore_ascii_case("false") {
            Scalar::Bool(false)
        } else if word.eq_ignore_ascii_case("null") {
            Scalar::Null
        } else {
            match json_number(word) {
                Some(false) => match word.parse::<i64>() {
                    Ok(i) => Scalar::Int(i),
                    Err(_) => self.decimal(word)?,
                },
                Some(true) => self.decimal(word)?,
                None => Scalar::String(word.to_owned()),
            }
        };
        self.pos += word.len();
        Ok(v)
    }

    fn decimal(&self, word: &str) -> PResult<Scalar> {
        match word.parse::<f64>() {
            Ok(d) if d.is_finite() => Ok(Scalar::Decimal(d)),
            _ => self.err(format!("number {word} is out of range")),
        }
    }

    pub(crate) fn peek_char(&self) -> Option<char> {
        self.peek()
    }

    pub(crate) fn finished(&self) -> bool {
        self.at_end()
    }

    pub(crate) fn unexpected<T>(&self) -> PResult<T> {
        self.err(format!("unexpected {}", self.describe_here()))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cmp(name: &str, op: CompareOp, v: Scalar) -> Expr {
        Expr::Compare {
            path: AttrPath::simple(name),
            op,
            value: v,
        }
    }
    fn s(x: &str) -> Scalar {
        Scalar::String(x.into())
    }
    fn and(a: Expr, b: Expr) -> Expr {
        Expr::And(Box::new(a), Box::new(b))
    }
    fn or(a: Expr, b: Expr) -> Expr {
        Expr::Or(Box::new(a), Box::new(b))
    }

    #[test]
    fn client_filters_parse() {
        assert_eq!(
            parse(r#"userName eq "test.user@okta.local""#).unwrap(),
            cmp("userName", CompareOp::Eq, s("test.user@okta.local"))
        );
        // Entra's documentation: unquoted value.
        assert_eq!(
            parse("externalId eq jyoung").unwrap(),
            cmp("externalId", CompareOp::Eq, s("jyoung"))
        );
        assert_eq!(
            parse(r#"emails[type eq "work"].value eq "u@c.com""#).unwrap(),
            Expr::ValuePath {
                attr: AttrPath::simple("emails"),
                filter: Box::new(cmp("type", CompareOp::Eq, s("work"))),
                sub: Some(("value".into(), Test::Compare(CompareOp::Eq, s("u@c.com")))),
            }
        );
        assert_eq!(
            parse(r#"emails.value eq "u@c.com""#).unwrap(),
            Expr::Compare {
                path: AttrPath {
                    urn: None,
                    name: "emails".into(),
                    sub: Some("value".into())
                },
                op: CompareOp::Eq,
                value: s("u@c.com")
            }
        );
        assert_eq!(
            parse(r#"displayName eq "Test SCIMv2""#).unwrap(),
            cmp("displayName", CompareOp::Eq, s("Test SCIMv2"))
        );
        assert_eq!(
            parse(r#"userName EQ "a" AND externalId Eq "b""#).unwrap(),
            and(
                cmp("userName", CompareOp::Eq, s("a")),
                cmp("externalId", CompareOp::Eq, s("b"))
            )
        );
        let p = parse(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq \"7\"",
        )
        .unwrap();
        match p {
            Expr::Compare { path, .. } => {
                assert_eq!(
                    path.urn.as_deref(),
                    Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")
                );
                assert_eq!(path.name, "employeeNumber");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn values_of_every_type() {
        let v = |f: &str| match parse(f).unwrap() {
            Expr::Compare { value, .. } => value,
            e => panic!("{e:?}"),
        };
        assert_eq!(v("active eq true"), Scalar::Bool(true));
        assert_eq!(v("active eq False"), Scalar::Bool(false));
        assert_eq!(v("x eq null"), Scalar::Null);
        assert_eq!(v("x eq -12"), Scalar::Int(-12));
        assert_eq!(v("x eq 1.5e3"), Scalar::Decimal(1500.0));
        assert_eq!(v("x eq 99999999999999999999"), Scalar::Decimal(1e20));
        assert_eq!(v(r#"x eq "a\"b\\c\u00e9""#), s("a\"b\\cé"));
        assert_eq!(v(r#"x eq "True""#), s("True"));
        assert_eq!(v("x eq 007"), s("007"));
        assert_eq!(v("x eq u@c.com"), s("u@c.com"));
    }

    #[test]
    fn precedence_and_grouping() {
        let a = || Expr::Present(AttrPath::simple("a"));
        let b = || Expr::Present(AttrPath::simple("b"));
        let c = || Expr::Present(AttrPath::simple("c"));
        assert_eq!(
            parse("a pr or b pr and c pr").unwrap(),
            or(a(), and(b(), c()))
        );
        assert_eq!(
            parse("a pr and b pr or c pr").unwrap(),
            or(and(a(), b()), c())
        );
        assert_eq!(
            parse("(a pr or b pr) and c pr").unwrap(),
            and(or(a(), b()), c())
        );
        assert_eq!(
            parse("not (a pr) and b pr").unwrap(),
            and(Expr::Not(Box::new(a())), b())
        );
        assert_eq!(parse("NOT(a pr)").unwrap(), Expr::Not(Box::new(a())));
        assert_eq!(parse("  ( ( a pr ) )  ").unwrap(), a());
        // RFC 7644 §3.4.2.2 example.
        let e = parse(r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#).unwrap();
        assert!(matches!(e, Expr::And(_, ref r) if matches!(**r, Expr::Or(..))));
        let e = parse(r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#).unwrap();
        assert!(matches!(e, Expr::Or(..)));
        // `not` without a parenthesis is an attribute name.
        assert_eq!(
            parse("not pr").unwrap(),
            Expr::Present(AttrPath::simple("not"))
        );
    }

    #[test]
    fn bad_filters_are_invalid_filter() {
        for bad in [
            "",
            "   ",
            "userName",
            "userName eq",
            "userName xx \"a\"",
            "userName eq \"a",
            "userName eq \"a\" and",
            "userName eq \"a\" or or",
            "(userName eq \"a\"",
            "userName eq \"a\")",
            "emails[type eq \"work\"",
            "emails[type eq \"work\"]]",
            "emails[type[value eq \"x\"]]",
            "name.givenName[value eq \"x\"]",
            "a.b.c eq \"x\"",
            "1abc eq \"x\"",
            "userName eq \"x\" junk",
            "userName eq \"bad \\q escape\"",
            "x eq 1e999",
            "userName\teq\"x\"",
            "not (a pr",
            "emails[type eq \"work\"].",
            "urn: eq 1",
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.status, 400, "{bad}");
            assert_eq!(e.scim_type, Some(crate::ScimType::InvalidFilter), "{bad}");
            assert!(
                e.detail.starts_with("invalid filter"),
                "{bad}: {}",
                e.detail
            );
        }
    }

    #[test]
    fn hostile_input_is_bounded() {
        let deep = format!("{}a pr{}", "(".repeat(33), ")".repeat(33));
        assert!(parse(&deep).unwrap_err().detail.contains("deeper"));
        let ok = format!("{}a pr{}", "(".repeat(32), ")".repeat(32));
        assert!(parse(&ok).is_ok());
        let nots = "not (".repeat(10_000);
        assert!(parse(&nots).is_err());
        let long = format!("userName eq \"{}\"", "x".repeat(MAX_LEN));
        assert!(parse(&long).unwrap_err().detail.contains("longer"));
        // A long flat chain is fine and prints back.
        let chain = vec!["a pr"; 400].join(" and ");
        let e = parse(&chain).unwrap();
        assert_eq!(parse(&e.to_string()).unwrap(), e);
    }

    fn arb_scalar() -> impl Strategy<Value = Scalar> {
        prop_oneof![
            any::<String>().prop_map(Scalar::String),
            "[a-z]{0,5}".prop_map(Scalar::String),
            any::<bool>().prop_map(Scalar::Bool),
            Just(Scalar::Null),
            any::<i64>().prop_map(Scalar::Int),
            any::<f64>()
                .prop_filter("finite", |d| d.is_finite())
                .prop_map(Scalar::Decimal),
        ]
    }

    fn arb_path() -> impl Strategy<Value = AttrPath> {
        let name = prop_oneof![
            Just("userName".to_owned()),
            Just("not".to_owned()),
            Just("and".to_owned()),
            Just("pr".to_owned()),
            Just("$ref".to_owned()),
            "[a-zA-Z][a-zA-Z0-9_-]{0,6}",
        ];
        let urn = prop_oneof![
            Just(None),
            Just(Some(
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User".to_owned()
            )),
        ];
        (urn, name, proptest::option::of("[a-z][a-zA-Z]{0,4}"))
            .prop_map(|(urn, name, sub)| AttrPath { urn, name, sub })
    }

    fn arb_op() -> impl Strategy<Value = CompareOp> {
        prop_oneof![
            Just(CompareOp::Eq),
            Just(CompareOp::Ne),
            Just(CompareOp::Co),
            Just(CompareOp::Sw),
            Just(CompareOp::Ew),
            Just(CompareOp::Gt),
            Just(CompareOp::Ge),
            Just(CompareOp::Lt),
            Just(CompareOp::Le),
        ]
    }

    fn arb_simple() -> impl Strategy<Value = Expr> {
        prop_oneof![
            arb_path().prop_map(Expr::Present),
            (arb_path(), arb_op(), arb_scalar()).prop_map(|(path, op, value)| Expr::Compare {
                path,
                op,
                value
            }),
        ]
    }

    fn arb_logic(leaf: BoxedStrategy<Expr>) -> impl Strategy<Value = Expr> {
        leaf.prop_recursive(4, 24, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(a, b)| and(a, b)),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| or(a, b)),
                inner.prop_map(|e| Expr::Not(Box::new(e))),
            ]
        })
    }

    pub(crate) fn arb_expr() -> impl Strategy<Value = Expr> {
        let value_path = (
            arb_path().prop_map(|mut p| {
                p.sub = None;
                p
            }),
            arb_logic(arb_simple().boxed()),
            proptest::option::of((
                "[a-z][a-zA-Z]{0,4}",
                prop_oneof![
                    Just(Test::Present),
                    (arb_op(), arb_scalar()).prop_map(|(o, v)| Test::Compare(o, v))
                ],
            )),
        )
            .prop_map(|(attr, filter, sub)| Expr::ValuePath {
                attr,
                filter: Box::new(filter),
                sub,
            });
        arb_logic(prop_oneof![3 => arb_simple(), 1 => value_path].boxed())
    }

    proptest! {
        #[test]
        fn display_parses_back(e in arb_expr()) {
            let text = e.to_string();
            prop_assert_eq!(parse(&text).unwrap(), e, "{}", text);
        }

        #[test]
        fn parse_never_panics(s in any::<String>()) {
            let _ = parse(&s);
        }

        #[test]
        fn parse_never_panics_on_filter_like_text(
            s in r#"[a-zA-Z.:\[\]()" \\$_-]{0,60}"#
        ) {
            if let Ok(e) = parse(&s) {
                prop_assert_eq!(parse(&e.to_string()).unwrap(), e);
            }
        }
    }
}
