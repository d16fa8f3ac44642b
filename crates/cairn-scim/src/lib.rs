//! The SCIM 2.0 protocol for Cairn (RFC 7643, RFC 7644): the schema registry and discovery
//! documents, the filter and attribute-path grammars, PATCH, the mapping between SCIM
//! resources and Cairn's backup accounts, and SCIM errors. No HTTP and no SQL here: the web
//! crate calls these functions, and filters leave this crate as `cairn_core::query::Filter`.

pub mod discovery;
pub mod error;
pub mod filter;
pub mod group;
pub mod list;
pub mod notes;
pub mod patch;
pub mod path;
pub mod query;
pub mod schema;
pub mod user;
pub mod user_json;

pub use error::{ScimError, ScimType};
pub use filter::Expr;
pub use patch::{apply_user_patch, parse_patch, PatchRequest};
pub use schema::user_resource_type;
pub use user::{render_user, render_user_doc, user_from_request, Projection};
