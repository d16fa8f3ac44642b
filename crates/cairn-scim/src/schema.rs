//! The schema registry (RFC 7643 §2, §4, §8.7): attribute definitions of the core User
//! schema, the Enterprise User extension and the common attributes, and case-insensitive
//! lookup of attribute paths to their canonical spelling.
//!
//! Everything here is static data. Adding a resource type (Groups) means adding one
//! `SchemaDef` and one `ResourceTypeDef` and listing them in [`SCHEMAS`] and
//! [`RESOURCE_TYPES`]; discovery, filters, PATCH and projections read from the registry.

/// RFC 7643 §2.3 attribute data types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    String,
    Boolean,
    Decimal,
    Integer,
    DateTime,
    Binary,
    Reference,
    Complex,
}

impl AttrType {
    /// The spelling used in schema documents (RFC 7643 §7).
    pub fn as_str(self) -> &'static str {
        match self {
            AttrType::String => "string",
            AttrType::Boolean => "boolean",
            AttrType::Decimal => "decimal",
            AttrType::Integer => "integer",
            AttrType::DateTime => "dateTime",
            AttrType::Binary => "binary",
            AttrType::Reference => "reference",
            AttrType::Complex => "complex",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    ReadOnly,
    ReadWrite,
    Immutable,
    WriteOnly,
}

impl Mutability {
    pub fn as_str(self) -> &'static str {
        match self {
            Mutability::ReadOnly => "readOnly",
            Mutability::ReadWrite => "readWrite",
            Mutability::Immutable => "immutable",
            Mutability::WriteOnly => "writeOnly",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    Always,
    Never,
    Default,
    Request,
}

impl Returned {
    pub fn as_str(self) -> &'static str {
        match self {
            Returned::Always => "always",
            Returned::Never => "never",
            Returned::Default => "default",
            Returned::Request => "request",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uniqueness {
    None,
    Server,
    Global,
}

impl Uniqueness {
    pub fn as_str(self) -> &'static str {
        match self {
            Uniqueness::None => "none",
            Uniqueness::Server => "server",
            Uniqueness::Global => "global",
        }
    }
}

/// One attribute definition (RFC 7643 §7 "attributes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttributeDef {
    pub name: &'static str,
    pub kind: AttrType,
    pub multi_valued: bool,
    pub description: &'static str,
    pub required: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub returned: Returned,
    pub uniqueness: Uniqueness,
    pub canonical_values: &'static [&'static str],
    pub reference_types: &'static [&'static str],
    pub sub_attributes: &'static [AttributeDef],
}

impl AttributeDef {
    /// A single-valued, optional, readWrite, case-insensitive attribute of the given type
    /// (the RFC 7643 §2.2 defaults).
    pub const fn new(name: &'static str, kind: AttrType, description: &'static str) -> Self {
        AttributeDef {
            name,
            kind,
            multi_valued: false,
            description,
            required: false,
            case_exact: false,
            mutability: Mutability::ReadWrite,
            returned: Returned::Default,
            uniqueness: Uniqueness::None,
            canonical_values: &[],
            reference_types: &[],
            sub_attributes: &[],
        }
    }
    const fn string(name: &'static str, description: &'static str) -> Self {
        Self::new(name, AttrType::String, description)
    }
    const fn complex(
        name: &'static str,
        description: &'static str,
        subs: &'static [AttributeDef],
    ) -> Self {
        let mut a = Self::new(name, AttrType::Complex, description);
        a.sub_attributes = subs;
        a
    }
    const fn multi(mut self) -> Self {
        self.multi_valued = true;
        self
    }
    const fn required(mut self) -> Self {
        self.required = true;
        self
    }
    const fn case_exact(mut self) -> Self {
        self.case_exact = true;
        self
    }
    const fn mutability(mut self, m: Mutability) -> Self {
        self.mutability = m;
        self
    }
    const fn returned(mut self, r: Returned) -> Self {
        self.returned = r;
        self
    }
    const fn unique(mut self, u: Uniqueness) -> Self {
        self.uniqueness = u;
        self
    }
    const fn canonical(mut self, values: &'static [&'static str]) -> Self {
        self.canonical_values = values;
        self
    }
    const fn refs(mut self, types: &'static [&'static str]) -> Self {
        self.reference_types = types;
        self
    }

    /// The sub-attribute named `name`, ignoring letter case (RFC 7643 §2.1).
    pub fn sub(&self, name: &str) -> Option<&'static AttributeDef> {
        self.sub_attributes
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }

    /// Whether a representation without `attributes` leaves this attribute out
    /// (`returned: never`, or `request` and not requested).
    pub fn omitted_by_default(&self) -> bool {
        matches!(self.returned, Returned::Never | Returned::Request)
    }

    pub fn is_multi_valued_complex(&self) -> bool {
        self.multi_valued && self.kind == AttrType::Complex
    }
}

/// A schema (RFC 7643 §7).
#[derive(Debug, PartialEq, Eq)]
pub struct SchemaDef {
    pub id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub attributes: &'static [AttributeDef],
}

impl SchemaDef {
    pub fn attribute(&self, name: &str) -> Option<&'static AttributeDef> {
        self.attributes
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(name))
    }
}

/// A resource type (RFC 7643 §6).
#[derive(Debug, PartialEq, Eq)]
pub struct ResourceTypeDef {
    pub id: &'static str,
    pub name: &'static str,
    pub endpoint: &'static str,
    pub description: &'static str,
    pub schema: &'static SchemaDef,
    /// Extension schemas and whether each is required.
    pub schema_extensions: &'static [(&'static SchemaDef, bool)],
}

pub const USER_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const ENTERPRISE_USER_URN: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

use AttrType as T;
use Mutability as M;
use Returned as R;

/// Value, display, type and primary: the sub-attributes RFC 7643 §2.4 gives every
/// multi-valued complex attribute of the User schema.
macro_rules! plural_subs {
    ($value:expr, $types:expr) => {
        &[
            $value,
            AttributeDef::string(
                "display",
                "A human-readable name, primarily used for display purposes.",
            ),
            AttributeDef::string("type", "A label indicating the attribute's function.")
                .canonical($types),
            AttributeDef::new(
                "primary",
                T::Boolean,
                "Indicates the 'primary' or preferred attribute value for this attribute.",
            ),
        ]
    };
}

const NAME_SUBS: &[AttributeDef] = &[
    AttributeDef::string("formatted", "The full name, including all middle names, titles, and suffixes as appropriate, formatted for display."),
    AttributeDef::string("familyName", "The family name of the User, or last name in most Western languages."),
    AttributeDef::string("givenName", "The given name of the User, or first name in most Western languages."),
    AttributeDef::string("middleName", "The middle name(s) of the User."),
    AttributeDef::string("honorificPrefix", "The honorific prefix(es) of the User, or title in most Western languages."),
    AttributeDef::string("honorificSuffix", "The honorific suffix(es) of the User, or suffix in most Western languages."),
];

const EMAIL_SUBS: &[AttributeDef] = plural_subs!(
    AttributeDef::string("value", "Email addresses for the user."),
    &["work", "home", "other"]
);
const PHONE_SUBS: &[AttributeDef] = plural_subs!(
    AttributeDef::string("value", "Phone number of the User."),
    &["work", "home", "mobile", "fax", "pager", "other"]
);
const IM_SUBS: &[AttributeDef] = plural_subs!(
    AttributeDef::string("value", "Instant messaging address for the User."),
    &["aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo"]
);
const PHOTO_SUBS: &[AttributeDef] = plural_subs!(
    AttributeDef::new("value", T::Reference, "URL of a photo of the User.").refs(&["external"]),
    &["photo", "thumbnail"]
);
const ADDRESS_SUBS: &[AttributeDef] = &[
    AttributeDef::string(
        "formatted",
        "The full mailing address, formatted for display or use with a mailing label.",
    ),
    AttributeDef::string("streetAddress", "The full street address component."),
    AttributeDef::string("locality", "The city or locality component."),
    AttributeDef::string("region", "The state or region component."),
    AttributeDef::string("postalCode", "The zip code or postal code component."),
    AttributeDef::string("country", "The country name component."),
    AttributeDef::string("type", "A label indicating the attribute's function.")
        .canonical(&["work", "home", "other"]),
    AttributeDef::new(
        "primary",
        T::Boolean,
        "Indicates the 'primary' or preferred address.",
    ),
];
const GROUP_SUBS: &[AttributeDef] = &[
    AttributeDef::string("value", "The identifier of the User's group.").mutability(M::ReadOnly),
    AttributeDef::new(
        "$ref",
        T::Reference,
        "The URI of the corresponding 'Group' resource.",
    )
    .refs(&["User", "Group"])
    .mutability(M::ReadOnly),
    AttributeDef::string(
        "display",
        "A human-readable name, primarily used for display purposes.",
    )
    .mutability(M::ReadOnly),
    AttributeDef::string("type", "A label indicating the attribute's function.")
        .canonical(&["direct", "indirect"])
        .mutability(M::ReadOnly),
];
const PLAIN_SUBS: &[AttributeDef] = plural_subs!(AttributeDef::string("value", "The value."), &[]);
const X509_SUBS: &[AttributeDef] = plural_subs!(
    AttributeDef::new("value", T::Binary, "The value of an X.509 certificate."),
    &[]
);

const USER_ATTRS: &[AttributeDef] = &[
    AttributeDef::string("userName", "Unique identifier for the User, typically used by the user to directly authenticate to the service provider.")
        .required()
        .unique(Uniqueness::Server),
    AttributeDef::complex("name", "The components of the user's real name.", NAME_SUBS),
    AttributeDef::string("displayName", "The name of the User, suitable for display to end-users."),
    AttributeDef::string("nickName", "The casual way to address the user in real life."),
    AttributeDef::new("profileUrl", T::Reference, "A fully qualified URL pointing to a page representing the User's online profile.").refs(&["external"]),
    AttributeDef::string("title", "The user's title, such as \"Vice President\"."),
    AttributeDef::string("userType", "Used to identify the relationship between the organization and the user."),
    AttributeDef::string("preferredLanguage", "Indicates the User's preferred written or spoken language."),
    AttributeDef::string("locale", "Used to indicate the User's default location for purposes of localizing items such as currency, date time format, or numerical representations."),
    AttributeDef::string("timezone", "The User's time zone in the 'Olson' time zone database format, e.g., 'America/Los_Angeles'."),
    AttributeDef::new("active", T::Boolean, "A Boolean value indicating the User's administrative status."),
    AttributeDef::string("password", "The User's cleartext password. Accepted and never stored by this service provider.")
        .mutability(M::WriteOnly)
        .returned(R::Never),
    AttributeDef::complex("emails", "Email addresses for the user.", EMAIL_SUBS).multi(),
    AttributeDef::complex("phoneNumbers", "Phone numbers for the User.", PHONE_SUBS).multi(),
    AttributeDef::complex("ims", "Instant messaging addresses for the User.", IM_SUBS).multi(),
    AttributeDef::complex("photos", "URLs of photos of the User.", PHOTO_SUBS).multi(),
    AttributeDef::complex("addresses", "A physical mailing address for this User.", ADDRESS_SUBS).multi(),
    AttributeDef::complex("groups", "A list of groups to which the user belongs.", GROUP_SUBS)
        .multi()
        .mutability(M::ReadOnly),
    AttributeDef::complex("entitlements", "A list of entitlements for the User that represent a thing the User has.", PLAIN_SUBS).multi(),
    AttributeDef::complex("roles", "A list of roles for the User that collectively represent who the User is.", PLAIN_SUBS).multi(),
    AttributeDef::complex("x509Certificates", "A list of certificates issued to the User.", X509_SUBS).multi(),
];

const MANAGER_SUBS: &[AttributeDef] = &[
    AttributeDef::string(
        "value",
        "The id of the SCIM resource representing the User's manager.",
    ),
    AttributeDef::new(
        "$ref",
        T::Reference,
        "The URI of the SCIM resource representing the User's manager.",
    )
    .refs(&["User"]),
    AttributeDef::string("displayName", "The displayName of the User's manager.")
        .mutability(M::ReadOnly),
];

const ENTERPRISE_ATTRS: &[AttributeDef] = &[
    AttributeDef::string("employeeNumber", "Numeric or alphanumeric identifier assigned to a person, typically based on order of hire or association with an organization."),
    AttributeDef::string("costCenter", "Identifies the name of a cost center."),
    AttributeDef::string("organization", "Identifies the name of an organization."),
    AttributeDef::string("division", "Identifies the name of a division."),
    AttributeDef::string("department", "Identifies the name of a department."),
    AttributeDef::complex("manager", "The User's manager.", MANAGER_SUBS),
];

const META_SUBS: &[AttributeDef] = &[
    AttributeDef::string("resourceType", "The name of the resource type of the resource.")
        .case_exact()
        .mutability(M::ReadOnly),
    AttributeDef::new("created", T::DateTime, "The DateTime that the resource was added to the service provider.").mutability(M::ReadOnly),
    AttributeDef::new("lastModified", T::DateTime, "The most recent DateTime that the details of this resource were updated at the service provider.").mutability(M::ReadOnly),
    AttributeDef::new("location", T::Reference, "The URI of the resource being returned.")
        .refs(&["uri"])
        .case_exact()
        .mutability(M::ReadOnly),
    AttributeDef::string("version", "The version of the resource being returned.")
        .case_exact()
        .mutability(M::ReadOnly),
];

/// RFC 7643 §3.1: attributes of every resource, not part of any schema document.
pub static COMMON_ATTRS: &[AttributeDef] = &[
    AttributeDef::string(
        "id",
        "A unique identifier for a SCIM resource as defined by the service provider.",
    )
    .case_exact()
    .mutability(M::ReadOnly)
    .returned(R::Always)
    .unique(Uniqueness::Server),
    AttributeDef::string(
        "externalId",
        "A String that is an identifier for the resource as defined by the provisioning client.",
    )
    .case_exact(),
    AttributeDef::complex("meta", "Resource metadata.", META_SUBS).mutability(M::ReadOnly),
];

pub static USER_SCHEMA: SchemaDef = SchemaDef {
    id: USER_URN,
    name: "User",
    description: "User Account",
    attributes: USER_ATTRS,
};

pub static ENTERPRISE_USER_SCHEMA: SchemaDef = SchemaDef {
    id: ENTERPRISE_USER_URN,
    name: "EnterpriseUser",
    description: "Enterprise User",
    attributes: ENTERPRISE_ATTRS,
};

pub static USER_RESOURCE_TYPE: ResourceTypeDef = ResourceTypeDef {
    id: "User",
    name: "User",
    endpoint: "/Users",
    description: "User Account (a Cairn backup account)",
    schema: &USER_SCHEMA,
    schema_extensions: &[(&ENTERPRISE_USER_SCHEMA, false)],
};

pub const GROUP_URN: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

/// RFC 7643 §4.2 members: only accounts (`User`) can be members here, nested groups are
/// not provisioned (Entra does not push them either: Microsoft Learn,
/// "Known issues for application provisioning in Microsoft Entra ID"). `display` is
/// accepted on requests and ignored (Okta sends it); it is not stored, so it is not
/// published.
const MEMBER_SUBS: &[AttributeDef] = &[
    AttributeDef::string("value", "Identifier of the member of this Group.")
        .mutability(M::Immutable),
    AttributeDef::new(
        "$ref",
        T::Reference,
        "The URI corresponding to a SCIM resource that is a member of this Group.",
    )
    .refs(&["User"])
    .mutability(M::Immutable),
    AttributeDef::string(
        "type",
        "A label indicating the type of resource, e.g., 'User' or 'Group'.",
    )
    .canonical(&["User"])
    .mutability(M::Immutable),
];

const GROUP_ATTRS: &[AttributeDef] = &[
    // Required and unique per tenant regardless of letter case (a 409 on a second group
    // with the same name in any case).
    AttributeDef::string("displayName", "A human-readable name for the Group.")
        .required()
        .unique(Uniqueness::Server),
    AttributeDef::complex("members", "A list of members of the Group.", MEMBER_SUBS).multi(),
];

pub static GROUP_SCHEMA: SchemaDef = SchemaDef {
    id: GROUP_URN,
    name: "Group",
    description: "Group",
    attributes: GROUP_ATTRS,
};

pub static GROUP_RESOURCE_TYPE: ResourceTypeDef = ResourceTypeDef {
    id: "Group",
    name: "Group",
    endpoint: "/Groups",
    description: "Group (a set of backup accounts, optionally with its own Account Size)",
    schema: &GROUP_SCHEMA,
    schema_extensions: &[],
};

/// Every schema served at `/Schemas`.
pub static SCHEMAS: &[&SchemaDef] = &[&USER_SCHEMA, &ENTERPRISE_USER_SCHEMA, &GROUP_SCHEMA];

/// Every resource type served at `/ResourceTypes`.
pub static RESOURCE_TYPES: &[&ResourceTypeDef] = &[&USER_RESOURCE_TYPE, &GROUP_RESOURCE_TYPE];

pub fn user_resource_type() -> &'static ResourceTypeDef {
    &USER_RESOURCE_TYPE
}

pub fn group_resource_type() -> &'static ResourceTypeDef {
    &GROUP_RESOURCE_TYPE
}

/// The schema with this URN (compared without letter case).
pub fn schema_by_id(id: &str) -> Option<&'static SchemaDef> {
    SCHEMAS
        .iter()
        .copied()
        .find(|s| s.id.eq_ignore_ascii_case(id))
}

/// The resource type with this id or name (compared without letter case).
pub fn resource_type_by_name(name: &str) -> Option<&'static ResourceTypeDef> {
    RESOURCE_TYPES
        .iter()
        .copied()
        .find(|r| r.id.eq_ignore_ascii_case(name) || r.name.eq_ignore_ascii_case(name))
}

/// An attribute path resolved against a resource type, spelled canonically.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolvedAttr {
    /// The schema the attribute belongs to; `None` for the common attributes (`id`,
    /// `externalId`, `meta`).
    pub schema: Option<&'static SchemaDef>,
    /// Whether `schema` is an extension, i.e. the attribute lives under the URN key.
    pub extension: bool,
    pub attr: &'static AttributeDef,
    pub sub: Option<&'static AttributeDef>,
}

impl ResolvedAttr {
    /// The attribute the path ends at.
    pub fn leaf(&self) -> &'static AttributeDef {
        self.sub.unwrap_or(self.attr)
    }

    /// Keys of the stored document leading to the top-level attribute: extension
    /// attributes live under their schema URN (`["urn:…:enterprise:2.0:User", "manager"]`).
    pub fn attr_keys(&self) -> Vec<String> {
        let mut keys = Vec::with_capacity(2);
        if let (true, Some(s)) = (self.extension, self.schema) {
            keys.push(s.id.to_owned());
        }
        keys.push(self.attr.name.to_owned());
        keys
    }

    /// The canonical dotted form, URN-qualified for extension attributes.
    pub fn canonical(&self) -> String {
        let mut s = String::new();
        if let (true, Some(schema)) = (self.extension, self.schema) {
            s.push_str(schema.id);
            s.push(':');
        }
        s.push_str(self.attr.name);
        if let Some(sub) = self.sub {
            s.push('.');
            s.push_str(sub.name);
        }
        s
    }
}

/// Why a path did not resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unresolved {
    /// A schema URN this resource type does not have (e.g. a custom extension an
    /// identity provider sends); callers on the write path ignore these.
    UnknownSchema(String),
    UnknownAttribute(String),
}

impl ResourceTypeDef {
    /// Every schema of the resource type, core first.
    pub fn all_schemas(&self) -> impl Iterator<Item = (&'static SchemaDef, bool)> + '_ {
        std::iter::once((self.schema, false))
            .chain(self.schema_extensions.iter().map(|(s, _)| (*s, true)))
    }

    /// The extension schema with this URN.
    pub fn extension(&self, urn: &str) -> Option<&'static SchemaDef> {
        self.schema_extensions
            .iter()
            .map(|(s, _)| *s)
            .find(|s| s.id.eq_ignore_ascii_case(urn))
    }

    /// Resolves a structured path: an optional schema URN, an attribute name and an
    /// optional sub-attribute name, all compared without letter case.
    pub fn resolve(
        &self,
        urn: Option<&str>,
        name: &str,
        sub: Option<&str>,
    ) -> Result<ResolvedAttr, Unresolved> {
        let full = || match (urn, sub) {
            (Some(u), Some(s)) => format!("{u}:{name}.{s}"),
            (Some(u), None) => format!("{u}:{name}"),
            (None, Some(s)) => format!("{name}.{s}"),
            (None, None) => name.to_owned(),
        };
        let common = |n: &str| COMMON_ATTRS.iter().find(|a| a.name.eq_ignore_ascii_case(n));
        let (schema, extension, attr) = match urn {
            Some(u) => {
                let (schema, ext) = self
                    .all_schemas()
                    .find(|(s, _)| s.id.eq_ignore_ascii_case(u))
                    .ok_or_else(|| Unresolved::UnknownSchema(u.to_owned()))?;
                match schema.attribute(name) {
                    Some(a) => (Some(schema), ext, Some(a)),
                    // `urn:…:core:2.0:User:id` qualifies a common attribute.
                    None if !ext => (None, false, common(name)),
                    None => (Some(schema), ext, None),
                }
            }
            None => match common(name) {
                Some(a) => (None, false, Some(a)),
                None => (Some(self.schema), false, self.schema.attribute(name)),
            },
        };
        let attr = attr.ok_or_else(|| Unresolved::UnknownAttribute(full()))?;
        let sub = match sub {
            None => None,
            Some(s) => Some(
                attr.sub(s)
                    .ok_or_else(|| Unresolved::UnknownAttribute(full()))?,
            ),
        };
        Ok(ResolvedAttr {
            schema,
            extension,
            attr,
            sub,
        })
    }

    /// Resolves a textual attribute path: `userName`, `name.givenName`, `meta.created`,
    /// `urn:ietf:params:scim:schemas:core:2.0:User:userName`,
    /// `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value`.
    pub fn find_attribute(&self, path: &str) -> Result<ResolvedAttr, Unresolved> {
        let (urn, rest) = split_urn(path);
        let (name, sub) = match rest.split_once('.') {
            Some((n, s)) => (n, Some(s)),
            None => (rest, None),
        };
        self.resolve(urn, name, sub)
    }
}

/// Splits `urn:…:attr.sub` into the URN and the attribute path. URNs contain dots
/// (`…:enterprise:2.0:User`) but attribute names never contain colons, so the split is
/// at the last colon.
pub fn split_urn(path: &str) -> (Option<&str>, &str) {
    // `get`, not `[..4]`: a client's attribute name may have a multi-byte character
    // there (found by fuzz/user_request: `"urnĖ…"` panicked, a 500).
    if path.len() > 4
        && path
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("urn:"))
    {
        if let Some(i) = path.rfind(':') {
            return (Some(&path[..i]), &path[i + 1..]);
        }
    }
    (None, path)
}

/// The attribute definition of a top-level attribute name (canonical spelling) in the
/// core schema or the common attributes.
pub fn user_attr(name: &str) -> Option<&'static AttributeDef> {
    COMMON_ATTRS
        .iter()
        .chain(USER_ATTRS.iter())
        .find(|a| a.name.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_urn_takes_any_text() {
        assert_eq!(
            split_urn("urn:ietf:params:scim:schemas:core:2.0:User:userName"),
            (
                Some("urn:ietf:params:scim:schemas:core:2.0:User"),
                "userName"
            )
        );
        assert_eq!(split_urn("userName"), (None, "userName"));
        for odd in ["urnĖetf:x", "urĖ:x", "uĖ", "ĖĖĖĖĖ:a", "urn:", "urn:x"] {
            let _ = split_urn(odd);
        }
        // Unknown attributes are ignored; this one used to panic first.
        let body = serde_json::json!({"userName": "a", "urnĖetf:p0:UsealId": "x"});
        let u = crate::user::user_from_request(&body).unwrap();
        assert_eq!(u.user_name.to_string(), "a");
    }

    #[test]
    fn lookup_is_case_insensitive_and_canonical() {
        let rt = user_resource_type();
        let r = rt.find_attribute("USERNAME").unwrap();
        assert_eq!(r.canonical(), "userName");
        assert!(r.attr.required);
        let r = rt.find_attribute("name.GIVENNAME").unwrap();
        assert_eq!(r.canonical(), "name.givenName");
        let r = rt
            .find_attribute("urn:ietf:params:scim:schemas:core:2.0:User:userName")
            .unwrap();
        assert_eq!(r.attr.name, "userName");
        let r = rt
            .find_attribute(
                "URN:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeenumber",
            )
            .unwrap();
        assert_eq!(
            r.attr_keys(),
            vec![ENTERPRISE_USER_URN.to_owned(), "employeeNumber".to_owned()]
        );
        let r = rt
            .find_attribute(
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.displayname",
            )
            .unwrap();
        assert_eq!(r.leaf().mutability, Mutability::ReadOnly);
        let r = rt.find_attribute("meta.lastmodified").unwrap();
        assert_eq!(r.schema, None);
        assert_eq!(r.canonical(), "meta.lastModified");
        let r = rt.find_attribute("emails.value").unwrap();
        assert!(r.attr.multi_valued);
        assert_eq!(
            rt.find_attribute("id").unwrap().attr.returned,
            Returned::Always
        );
    }

    #[test]
    fn unknown_paths_say_why() {
        let rt = user_resource_type();
        assert_eq!(
            rt.find_attribute("nope"),
            Err(Unresolved::UnknownAttribute("nope".into()))
        );
        assert_eq!(
            rt.find_attribute("name.nope"),
            Err(Unresolved::UnknownAttribute("name.nope".into()))
        );
        assert_eq!(
            rt.find_attribute("urn:example:custom:1.0:User:badge"),
            Err(Unresolved::UnknownSchema(
                "urn:example:custom:1.0:User".into()
            ))
        );
        // Enterprise attributes are not core attributes.
        assert!(rt.find_attribute("employeeNumber").is_err());
    }

    #[test]
    fn user_schema_matches_rfc_7643() {
        let rt = user_resource_type();
        let pw = rt.find_attribute("password").unwrap().attr;
        assert_eq!(
            (pw.mutability, pw.returned),
            (Mutability::WriteOnly, Returned::Never)
        );
        let ext = rt.find_attribute("externalId").unwrap().attr;
        assert!(ext.case_exact);
        let un = rt.find_attribute("userName").unwrap().attr;
        assert_eq!((un.case_exact, un.uniqueness), (false, Uniqueness::Server));
        for multi in [
            "emails",
            "phoneNumbers",
            "ims",
            "photos",
            "addresses",
            "groups",
            "entitlements",
            "roles",
            "x509Certificates",
        ] {
            let a = rt.find_attribute(multi).unwrap().attr;
            assert!(a.is_multi_valued_complex(), "{multi}");
            assert!(a.sub("type").is_some(), "{multi}");
        }
        assert_eq!(
            rt.find_attribute("groups").unwrap().attr.mutability,
            Mutability::ReadOnly
        );
    }
}
