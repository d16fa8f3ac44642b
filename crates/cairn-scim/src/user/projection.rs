//! `attributes` / `excludedAttributes` projections of rendered resources.

use crate::schema::{user_resource_type, AttrType, AttributeDef, ResourceTypeDef, Returned};
use crate::ScimError;
use serde_json::{json, Map, Value};

/// `attributes` / `excludedAttributes` (RFC 7644 §3.4.2.5, §3.9), resolved against the
/// schema. Names are case-insensitive and may be URN-qualified or name sub-attributes;
/// unknown names are ignored, so a client asking for an attribute we lack still gets
/// the resource.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Projection {
    /// Key paths into the representation (`["name","givenName"]`, `[URN]`,
    /// `[URN,"manager"]`); empty means "the default set".
    attributes: Vec<Vec<String>>,
    excluded: Vec<Vec<String>>,
    /// The resource type the names resolve against; `None` is User.
    rt: Option<&'static ResourceTypeDef>,
}

impl Projection {
    pub fn from_params(
        attributes: Option<&str>,
        excluded_attributes: Option<&str>,
    ) -> Result<Projection, ScimError> {
        Self::for_resource_type(user_resource_type(), attributes, excluded_attributes)
    }

    /// The same for another resource type (`/Groups`).
    pub fn for_resource_type(
        rt: &'static ResourceTypeDef,
        attributes: Option<&str>,
        excluded_attributes: Option<&str>,
    ) -> Result<Projection, ScimError> {
        Ok(Projection {
            attributes: key_paths(rt, attributes),
            excluded: key_paths(rt, excluded_attributes),
            rt: Some(rt),
        })
    }

    pub(super) fn rt(&self) -> &'static ResourceTypeDef {
        self.rt.unwrap_or_else(user_resource_type)
    }

    /// Whether the top-level attribute `name` (canonical spelling) can appear in the
    /// projected resource, so callers can skip loading what would be dropped
    /// (`excludedAttributes=members` never reads a group's members).
    pub fn wants(&self, name: &str) -> bool {
        if self.excluded.iter().any(|p| p.len() == 1 && p[0] == name) {
            return false;
        }
        self.attributes.is_empty() || self.attributes.iter().any(|p| p[0] == name)
    }

    /// Whether the client named any attributes at all.
    pub fn is_requested(&self) -> bool {
        !self.attributes.is_empty() || !self.excluded.is_empty()
    }

    /// Applies the projection to a rendered resource. `returned: always` attributes (`id`,
    /// `schemas`) are always kept, `returned: never` ones always removed, `returned:
    /// request` ones kept only when named in `attributes`.
    pub fn apply(&self, resource: &mut Value) {
        let Some(obj) = resource.as_object_mut() else {
            return;
        };
        // The common case, no `attributes` and no `excludedAttributes`, usually has
        // nothing to remove: checked without copying a key (most of the cost otherwise).
        if !self.is_requested() && default_keeps_all(self.rt(), obj) {
            set_present_schemas(self.rt(), obj);
            return;
        }
        self.apply_by_walk(obj);
    }

    /// [`Self::apply`] by visiting every attribute.
    pub(super) fn apply_by_walk(&self, obj: &mut Map<String, Value>) {
        let rt = self.rt();
        let keys: Vec<String> = obj.keys().cloned().collect();
        for key in keys {
            if key == "schemas" {
                continue;
            }
            if let Some(ext) = rt.extension(&key) {
                let whole = self
                    .attributes
                    .iter()
                    .any(|p| p.len() == 1 && p[0] == ext.id);
                if self.excluded.iter().any(|p| p.len() == 1 && p[0] == ext.id) {
                    obj.remove(&key);
                    continue;
                }
                if let Some(Value::Object(inner)) = obj.get_mut(&key) {
                    let names: Vec<String> = inner.keys().cloned().collect();
                    for name in names {
                        let def = ext.attribute(&name);
                        let prefix = [ext.id.to_owned(), name.clone()];
                        self.project_attr(inner, &name, def, &prefix, whole);
                    }
                    if inner.is_empty() {
                        obj.remove(&key);
                    }
                }
                continue;
            }
            let def = rt.resolve(None, &key, None).ok().map(|r| r.attr);
            self.project_attr(obj, &key, def, std::slice::from_ref(&key), false);
        }
        set_present_schemas(rt, obj);
    }

    /// Projects one attribute `name` of `container`; `path` is its key path.
    fn project_attr(
        &self,
        container: &mut Map<String, Value>,
        name: &str,
        def: Option<&AttributeDef>,
        path: &[String],
        whole_requested: bool,
    ) {
        let Some(def) = def else { return };
        match def.returned {
            Returned::Always => return,
            Returned::Never => {
                container.remove(name);
                return;
            }
            _ => {}
        }
        let named = |set: &[Vec<String>]| set.iter().any(|p| p.as_slice() == path);
        let subs_of = |set: &[Vec<String>]| -> Vec<String> {
            set.iter()
                .filter(|p| p.len() == path.len() + 1 && p.starts_with(path))
                .map(|p| p[path.len()].clone())
                .collect()
        };
        if named(&self.excluded) {
            container.remove(name);
            return;
        }
        let requested = whole_requested || named(&self.attributes);
        if !self.attributes.is_empty() && !requested {
            let keep = subs_of(&self.attributes);
            if keep.is_empty() {
                container.remove(name);
                return;
            }
            retain_subs(container, name, def, |s| keep.iter().any(|k| k == s));
        } else if def.returned == Returned::Request && !requested {
            container.remove(name);
            return;
        }
        let drop = subs_of(&self.excluded);
        if !drop.is_empty() {
            retain_subs(container, name, def, |s| !drop.iter().any(|k| k == s));
        }
        // Sub-attributes never returned.
        retain_subs(container, name, def, |_| true);
    }
}

/// `schemas`, when present, lists the resource type's schema and the extensions present.
pub(super) fn set_present_schemas(rt: &ResourceTypeDef, obj: &mut Map<String, Value>) {
    if !obj.contains_key("schemas") {
        return;
    }
    let present: Vec<Value> = std::iter::once(json!(rt.schema.id))
        .chain(
            rt.schema_extensions
                .iter()
                .filter(|(s, _)| obj.contains_key(s.id))
                .map(|(s, _)| json!(s.id)),
        )
        .collect();
    obj.insert("schemas".into(), Value::Array(present));
}

/// Whether the default projection would keep every attribute of `obj` as it is: nothing
/// `returned: never` or `request` at any level, no empty complex value or extension
/// (the walk drops those). `false` sends the resource through the walk.
pub(super) fn default_keeps_all(rt: &ResourceTypeDef, obj: &Map<String, Value>) -> bool {
    fn keeps(def: Option<&AttributeDef>, v: &Value) -> bool {
        let Some(def) = def else { return true };
        if def.returned == Returned::Always {
            return true;
        }
        if def.omitted_by_default() {
            return false;
        }
        if def.kind != AttrType::Complex {
            return true;
        }
        let subs_kept = |m: &Map<String, Value>| {
            !m.is_empty()
                && m.keys()
                    .all(|k| def.sub(k).is_none_or(|s| s.returned != Returned::Never))
        };
        match v {
            Value::Object(m) => subs_kept(m),
            Value::Array(items) => {
                !items.is_empty()
                    && items.iter().all(|i| match i {
                        Value::Object(m) => subs_kept(m),
                        _ => true,
                    })
            }
            _ => true,
        }
    }
    obj.iter().all(|(key, v)| {
        if key == "schemas" {
            return true;
        }
        if let Some(ext) = rt.extension(key) {
            return match v {
                Value::Object(inner) => {
                    !inner.is_empty() && inner.iter().all(|(n, iv)| keeps(ext.attribute(n), iv))
                }
                _ => true,
            };
        }
        keeps(rt.resolve(None, key, None).ok().map(|r| r.attr), v)
    })
}

/// Keeps the sub-attributes of `container[name]` (each element's, if multi-valued) for
/// which `keep` holds or which are `returned: always`; drops `returned: never` ones and
/// the attribute itself when nothing is left.
pub(super) fn retain_subs(
    container: &mut Map<String, Value>,
    name: &str,
    def: &AttributeDef,
    keep: impl Fn(&str) -> bool,
) {
    if def.kind != AttrType::Complex {
        return;
    }
    let filter_obj = |m: &mut Map<String, Value>| {
        m.retain(|k, _| match def.sub(k) {
            Some(s) if s.returned == Returned::Always => true,
            Some(s) if s.returned == Returned::Never => false,
            _ => keep(k),
        });
    };
    let empty = match container.get_mut(name) {
        Some(Value::Object(m)) => {
            filter_obj(m);
            m.is_empty()
        }
        Some(Value::Array(items)) => {
            for item in items.iter_mut() {
                if let Value::Object(m) = item {
                    filter_obj(m);
                }
            }
            items.retain(|i| !matches!(i, Value::Object(m) if m.is_empty()));
            items.is_empty()
        }
        _ => false,
    };
    if empty {
        container.remove(name);
    }
}

/// Resolves a comma-separated attribute list to key paths, ignoring unknown names.
pub(super) fn key_paths(rt: &ResourceTypeDef, list: Option<&str>) -> Vec<Vec<String>> {
    list.unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .filter_map(|name| {
            if let Some(ext) = rt.extension(name) {
                return Some(vec![ext.id.to_owned()]);
            }
            let r = rt.find_attribute(name).ok()?;
            let mut keys = r.attr_keys();
            if let Some(s) = r.sub {
                keys.push(s.name.to_owned());
            }
            Some(keys)
        })
        .collect()
}
