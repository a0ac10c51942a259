//! The in-memory database: entities per kind, keyed and ordered by id (Kong's PostgreSQL
//! strategy pages by primary key too), with Kong's create/upsert/update/delete rules:
//! defaults and validation, unique fields, foreign keys, cascades.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use sha2::Digest;

use crate::checks::{entity_checks, expand_url, one, plugin_config_of};
use crate::schema::{self, Kind, OnDelete, Ty};
use crate::validate::{Refusal, check};

/// Everything the stand-in holds.
#[derive(Debug, Default)]
pub struct State {
    /// collection → id → entity.
    pub entities: BTreeMap<&'static str, BTreeMap<String, Value>>,
    /// `METHOD path` of every mutating request served.
    pub mutations: Vec<String>,
    pub admin_token: Option<String>,
    pub node_id: String,
}

/// Where a request's entity hangs: `/services/{s}/routes` sets `service` to `{s}`.
#[derive(Debug, Clone)]
pub struct Parent {
    pub field: &'static str,
    pub id: String,
}

/// A new random UUID (version 4), as Kong generates ids.
pub fn uuid() -> String {
    let mut b: [u8; 16] = std::array::from_fn(|_| fastrand::u8(..));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Whether `s` has the shape of a UUID (Kong then looks it up as an id, not a name).
pub fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// 32 random hex characters: Kong's generated `key` and `secret`.
fn random_key() -> String {
    (0..32)
        .map(|_| char::from_digit(fastrand::u32(..16), 16).unwrap_or('0'))
        .collect()
}

impl State {
    pub fn new(admin_token: Option<String>) -> Self {
        Self {
            admin_token,
            node_id: uuid(),
            ..Self::default()
        }
    }

    fn table(&self, kind: &Kind) -> impl Iterator<Item = &Value> {
        self.entities
            .get(kind.collection)
            .into_iter()
            .flat_map(|t| t.values())
    }

    /// The entity `key` names (an id, or the kind's endpoint key), under `parent` if given.
    pub fn find(&self, kind: &Kind, key: &str, parent: Option<&Parent>) -> Option<Value> {
        let found = if is_uuid(key) {
            self.entities
                .get(kind.collection)
                .and_then(|t| t.get(key))
                .cloned()
        } else {
            let ek = kind.endpoint_key?;
            self.table(kind)
                .find(|e| e[ek].as_str() == Some(key))
                .cloned()
        };
        found.filter(|e| parent.is_none_or(|p| e[p.field]["id"].as_str() == Some(&p.id)))
    }

    /// The entities of `kind`, under `parent` if given, in id order.
    pub fn list(&self, kind: &Kind, parent: Option<&Parent>) -> Vec<Value> {
        self.table(kind)
            .filter(|e| parent.is_none_or(|p| e[p.field]["id"].as_str() == Some(&p.id)))
            .cloned()
            .collect()
    }

    /// `POST`: a new entity.
    pub fn create(
        &mut self,
        kind: &'static Kind,
        mut input: Map<String, Value>,
        parent: Option<&Parent>,
        lenient: bool,
    ) -> Result<Value, Refusal> {
        let id = match input.get("id").and_then(Value::as_str) {
            Some(id) if !is_uuid(id) => {
                return Err(Refusal::schema(one("id", "expected a valid UUID")));
            }
            Some(id) => id.to_owned(),
            None => uuid(),
        };
        if self
            .entities
            .get(kind.collection)
            .is_some_and(|t| t.contains_key(&id))
        {
            return Err(Refusal::primary_key(&id));
        }
        input.insert("id".into(), json!(id));
        let t = now();
        input.insert("created_at".into(), json!(t));
        self.store(kind, input, parent, lenient, t)
    }

    /// `PUT /<kind>/{key}`: replaces the entity `key` names, or creates it with that id
    /// (or endpoint key).
    pub fn upsert(
        &mut self,
        kind: &'static Kind,
        key: &str,
        mut input: Map<String, Value>,
        parent: Option<&Parent>,
        lenient: bool,
    ) -> Result<Value, Refusal> {
        match self.find(kind, key, parent) {
            Some(old) => {
                input.insert("id".into(), old["id"].clone());
                input.insert("created_at".into(), old["created_at"].clone());
                self.store(kind, input, parent, lenient, now())
            }
            None => {
                if is_uuid(key) {
                    input.insert("id".into(), json!(key));
                } else if let Some(ek) = kind.endpoint_key {
                    input.insert(ek.into(), json!(key));
                } else {
                    return Err(Refusal::not_found());
                }
                if let Some(id) = input.get("id").and_then(Value::as_str)
                    && self.find(kind, id, None).is_some()
                {
                    return Err(Refusal::primary_key(id));
                }
                self.create(kind, input, parent, lenient)
            }
        }
    }

    /// `PATCH /<kind>/{key}`: merges `input` into the entity (records merged field by
    /// field, everything else replaced).
    pub fn update(
        &mut self,
        kind: &'static Kind,
        key: &str,
        input: Map<String, Value>,
        parent: Option<&Parent>,
        lenient: bool,
    ) -> Result<Value, Refusal> {
        let Some(old) = self.find(kind, key, parent) else {
            return Err(Refusal::not_found());
        };
        let mut merged = old.clone();
        // A plugin that changes its name starts from the new plugin's defaults.
        if kind.collection == "plugins"
            && input.get("name").is_some_and(|n| *n != old["name"])
            && !input.contains_key("config")
            && let Some(m) = merged.as_object_mut()
        {
            m.insert("config".into(), json!({}));
        }
        // A foreign field given is a new reference, not merged into the old one.
        for fl in kind.fields {
            if matches!(fl.ty, Ty::Foreign(_))
                && input.contains_key(fl.name)
                && let Some(m) = merged.as_object_mut()
            {
                m.insert(fl.name.into(), Value::Null);
            }
        }
        merge(&mut merged, Value::Object(input));
        let Value::Object(mut m) = merged else {
            return Err(Refusal::not_found());
        };
        m.insert("id".into(), old["id"].clone());
        m.insert("created_at".into(), old["created_at"].clone());
        self.store(kind, m, parent, lenient, now())
    }

    /// `DELETE`: removes the entity (nothing to remove is success too, as in Kong) and
    /// cascades to the entities whose foreign key says so.
    pub fn delete(
        &mut self,
        kind: &'static Kind,
        key: &str,
        parent: Option<&Parent>,
    ) -> Result<(), Refusal> {
        let Some(old) = self.find(kind, key, parent) else {
            return Ok(());
        };
        let id = old["id"].as_str().unwrap_or_default().to_owned();
        // Refuse before changing anything.
        for child in schema::KINDS {
            for (field, coll, on_delete) in child.foreign {
                if *coll == kind.collection
                    && *on_delete == OnDelete::Restrict
                    && self
                        .table(child)
                        .any(|e| e[*field]["id"].as_str() == Some(&id))
                {
                    return Err(Refusal::foreign(
                        field,
                        format!(
                            "an existing '{}' entity references this '{}' entity",
                            child.collection, kind.collection
                        ),
                        Some(child.collection),
                    ));
                }
            }
        }
        self.remove_cascading(kind, &id);
        Ok(())
    }

    fn remove_cascading(&mut self, kind: &'static Kind, id: &str) {
        if let Some(t) = self.entities.get_mut(kind.collection) {
            t.remove(id);
        }
        for child in schema::KINDS {
            for (field, coll, on_delete) in child.foreign {
                if *coll == kind.collection && *on_delete == OnDelete::Cascade {
                    let doomed: Vec<String> = self
                        .table(child)
                        .filter(|e| e[*field]["id"].as_str() == Some(id))
                        .filter_map(|e| e["id"].as_str().map(str::to_owned))
                        .collect();
                    for d in doomed {
                        self.remove_cascading(child, &d);
                    }
                }
            }
        }
    }

    /// Validates, defaults, checks references and uniqueness, then stores `input` (which
    /// holds `id` and `created_at`).
    fn store(
        &mut self,
        kind: &'static Kind,
        mut input: Map<String, Value>,
        parent: Option<&Parent>,
        lenient: bool,
        t: i64,
    ) -> Result<Value, Refusal> {
        if let Some(p) = parent {
            input.insert(p.field.into(), json!({"id": p.id}));
        }
        if kind.fields.iter().any(|f| f.name == "updated_at") {
            input.insert("updated_at".into(), json!(t));
        }
        for g in kind.generated {
            if input.get(*g).is_none_or(Value::is_null) {
                input.insert((*g).into(), json!(random_key()));
            }
        }
        if kind.collection == "services" {
            expand_url(&mut input)?;
        }
        let plugin_config = if kind.collection == "plugins" {
            Some(input.remove("config").unwrap_or(Value::Null))
        } else {
            None
        };
        let mut ent = check(kind.fields, &input, lenient).map_err(Refusal::schema)?;
        if let Some(config) = plugin_config {
            ent.insert("config".into(), plugin_config_of(&ent, config, lenient)?);
        }
        entity_checks(kind, &ent)?;
        self.resolve_foreign(kind, &mut ent)?;
        let id = ent["id"].as_str().unwrap_or_default().to_owned();
        self.check_unique(kind, &ent, &id)?;
        if kind.collection == "basic-auths" && input.contains_key("password") {
            let consumer = ent["consumer"]["id"].as_str().unwrap_or_default();
            let pw = ent["password"].as_str().unwrap_or_default();
            let digest = sha2::Sha256::digest(format!("{pw}{consumer}").as_bytes());
            let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            ent.insert("password".into(), json!(hex));
        } else if kind.collection == "basic-auths"
            && let Some(old) = self.find(kind, &id, None)
        {
            ent.insert("password".into(), old["password"].clone());
        }
        let v = Value::Object(ent);
        self.entities
            .entry(kind.collection)
            .or_default()
            .insert(id, v.clone());
        Ok(v)
    }

    /// Foreign fields name an existing entity: `{"id": …}` or by its endpoint key
    /// (`{"name": …}`); stored as `{"id": …}`.
    fn resolve_foreign(&self, kind: &Kind, ent: &mut Map<String, Value>) -> Result<(), Refusal> {
        for fl in kind.fields {
            let Ty::Foreign(coll) = fl.ty else { continue };
            let Some(Value::Object(r)) = ent.get(fl.name) else {
                continue;
            };
            let Some(target) = schema::kind(coll) else {
                // a reference to a collection not modelled (certificates): kept as given
                continue;
            };
            let found = match (r.get("id").and_then(Value::as_str), target.endpoint_key) {
                (Some(id), _) => self.find(target, id, None).filter(|_| is_uuid(id)),
                (None, Some(ek)) => r
                    .get(ek)
                    .and_then(Value::as_str)
                    .and_then(|k| self.find(target, k, None)),
                (None, None) => None,
            };
            let Some(found) = found else {
                let shown: Vec<String> = r
                    .iter()
                    .map(|(k, v)| {
                        format!(
                            "{k}={}",
                            v.as_str()
                                .map_or_else(|| v.to_string(), |s| format!("\"{s}\""))
                        )
                    })
                    .collect();
                return Err(Refusal::foreign(
                    fl.name,
                    format!(
                        "the foreign key '{{{}}}' does not reference an existing '{coll}' entity.",
                        shown.join(",")
                    ),
                    None,
                ));
            };
            ent.insert(fl.name.into(), json!({"id": found["id"]}));
        }
        Ok(())
    }

    fn check_unique(&self, kind: &Kind, ent: &Map<String, Value>, id: &str) -> Result<(), Refusal> {
        let others = || self.table(kind).filter(|e| e["id"].as_str() != Some(id));
        for u in kind.unique {
            let v = &ent[*u];
            if !v.is_null() && others().any(|e| e[*u] == *v) {
                return Err(Refusal::unique(u, v));
            }
        }
        if kind.collection == "plugins" {
            let same = |e: &&Value| {
                ["name", "route", "service", "consumer"]
                    .iter()
                    .all(|f| e[*f] == ent[*f])
            };
            if others().any(|e| same(&e)) {
                let shown = |f: &str| match &ent[f] {
                    Value::Object(o) => {
                        format!("{{id=\"{}\"}}", o["id"].as_str().unwrap_or_default())
                    }
                    _ => "null".to_owned(),
                };
                let name = ent["name"].as_str().unwrap_or_default();
                return Err(Refusal {
                    status: 409,
                    body: json!({
                        "code": 5,
                        "name": "unique constraint violation",
                        "message": format!(
                            "UNIQUE violation detected on '{{consumer={},name=\"{name}\",route={},service={}}}'",
                            shown("consumer"), shown("route"), shown("service")
                        ),
                        "fields": {"consumer": ent["consumer"], "name": name, "route": ent["route"], "service": ent["service"]},
                    }),
                });
            }
        }
        Ok(())
    }
}

/// JSON merge of `patch` into `base`: objects field by field, the rest replaced.
fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                match b.get_mut(&k) {
                    Some(slot @ Value::Object(_)) if v.is_object() => merge(slot, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, p) => *b = p,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_have_the_v4_shape() {
        let u = uuid();
        assert!(is_uuid(&u), "{u}");
        assert_eq!(&u[14..15], "4");
        assert!(!is_uuid("web"));
        assert_ne!(uuid(), uuid());
    }
}
