//! The storage-neutral query language for backup accounts.
//!
//! SCIM filters (RFC 7644 §3.4.2.2) are parsed and resolved against the schema in
//! `cairn-scim`; what reaches a `Store` is this typed tree, which every backend turns into
//! its own SQL with bound parameters. Nothing here knows SCIM syntax.

/// A resolved filter over one tenant's backup accounts.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    /// The attribute has a non-null, non-empty value (RFC 7644 `pr`).
    Present(Attr),
    Compare {
        attr: Attr,
        op: CompareOp,
        value: Scalar,
    },
    /// Some element of the multi-valued attribute at `path` (a JSON path in the stored
    /// document) satisfies `filter`; attributes inside `filter` are relative to the element
    /// (`AttrTarget::Json` paths inside it start at the element, `AttrTarget::Value` is the
    /// element itself for multi-valued simple attributes).
    Any {
        path: Vec<String>,
        filter: Box<Filter>,
    },
    /// Some live member of the group satisfies `filter`, in which `AttrTarget::Value` is
    /// the member's user id. Groups only: members are the `group_members` relation, not
    /// part of the stored document (`members[value eq "…"]`, `members.value eq "…"`).
    Member(Box<Filter>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

/// A comparison value from a filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    String(String),
    Bool(bool),
    Int(i64),
    Decimal(f64),
    Null,
}

/// A resolved attribute reference.
#[derive(Debug, Clone, PartialEq)]
pub struct Attr {
    pub target: AttrTarget,
    pub kind: AttrKind,
    /// RFC 7643 `caseExact`: when false, string comparisons ignore letter case.
    pub case_exact: bool,
}

/// Where the attribute lives. Well-known attributes map to indexed columns; everything
/// else is a path into the stored JSON document.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrTarget {
    Id,
    UserName,
    ExternalId,
    DisplayName,
    Active,
    Created,
    LastModified,
    /// A path of object keys into the resource document (or into the current element
    /// inside `Filter::Any`). Keys are canonical attribute names or schema URNs.
    Json(Vec<String>),
    /// The current element itself, inside `Filter::Any` over a multi-valued simple attribute.
    Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrKind {
    String,
    Boolean,
    Integer,
    Decimal,
    DateTime,
    Reference,
    Binary,
    Complex,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    pub attr: Attr,
    pub descending: bool,
}

/// One page of a listing. `start_index` is 1-based as in SCIM.
#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    pub filter: Option<Filter>,
    pub sort: Option<SortKey>,
    pub start_index: u64,
    pub count: u64,
    /// Keyset paging (RFC 9865 cursors) instead of `start_index`: the rows are ordered
    /// by the sort key, then by id, and the page starts after (or ends before) a
    /// position, so a page costs the same wherever it is and concurrent creates and
    /// deletes never shift it. `start_index` is ignored then.
    pub seek: Option<Seek>,
}

/// Where a keyset page starts.
#[derive(Debug, Clone, PartialEq)]
pub enum Seek {
    /// The first page.
    First,
    /// The page of rows after this position.
    After(Keyset),
    /// The page of rows before this position (returned in the list's order).
    Before(Keyset),
}

/// A position in a keyset-ordered listing: the sort key's value at a row (as the store
/// compares it: folded when the attribute is case-insensitive; `Scalar::Null` when the
/// row has none or the list is unsorted) and the row's id.
#[derive(Debug, Clone, PartialEq)]
pub struct Keyset {
    pub key: Scalar,
    pub id: String,
}

impl Default for ListQuery {
    fn default() -> Self {
        ListQuery {
            filter: None,
            sort: None,
            start_index: 1,
            count: 100,
            seek: None,
        }
    }
}

/// A page of results plus the number of matches in all pages.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub total: u64,
    pub items: Vec<T>,
}
