//! Writes: create, server-side apply (field ownership, conflicts, force), merge patch,
//! replace, delete with propagation. `dry` computes the result without storing it.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::store::{Key, Kind, State, dotted, get_path, leaves, remove_path, set_path};

/// A failure the server answers with a `Status` object.
#[derive(Debug)]
pub struct Failure {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Value,
}

impl Failure {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: Value::Null,
        }
    }

    pub fn not_found(kind: Kind, name: &str) -> Self {
        let mut f = Self::new(
            404,
            "NotFound",
            if kind.group.is_empty() {
                format!("{} \"{name}\" not found", kind.plural)
            } else {
                format!("{}.{} \"{name}\" not found", kind.plural, kind.group)
            },
        );
        f.details = json!({"name": name, "group": kind.group, "kind": kind.plural});
        f
    }

    pub fn status(&self) -> Value {
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "details": self.details,
            "code": self.code,
        })
    }
}

/// Defaulting as the API server does it before storing ([`crate::defaulting`]).
fn defaults(st: &mut State, kind: Kind, object: &mut Value, existing: Option<&Value>) {
    crate::defaulting::default_object(kind.kind, object, existing, &mut || {
        st.uid += 1;
        format!("10.96.{}.{}", (st.uid / 254) % 256, st.uid % 254 + 1)
    });
}

fn key(kind: Kind, ns: &str, name: &str) -> Key {
    (kind.plural, ns.to_owned(), name.to_owned())
}

/// Identity, generation and status carried over from the stored object.
fn finalize(existing: Option<&Value>, mut new: Value, keep_status: bool) -> Value {
    match existing {
        None => {
            new["metadata"]["generation"] = json!(1);
        }
        Some(old) => {
            for f in ["uid", "creationTimestamp"] {
                if let Some(v) = old["metadata"].get(f) {
                    new["metadata"][f] = v.clone();
                }
            }
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
            let spec_changed = old.get("spec") != new.get("spec");
            new["metadata"]["generation"] = json!(if spec_changed {
                generation + 1
            } else {
                generation
            });
            if keep_status {
                match old.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        if let Some(m) = new.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
            }
        }
    }
    new
}

fn same(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v["metadata"].as_object_mut() {
            m.remove("resourceVersion");
            m.remove("managedFields");
        }
        v
    };
    strip(a) == strip(b)
}

fn check_name(kind: Kind, name: &str, object: &Value) -> Result<(), Failure> {
    match object["metadata"]["name"].as_str() {
        Some(n) if n == name => Ok(()),
        Some(n) => Err(Failure::new(
            400,
            "BadRequest",
            format!("the name of the object ({n}) does not match the name on the URL ({name})"),
        )),
        None => Err(Failure::new(
            422,
            "Invalid",
            format!(
                "{} \"\" is invalid: metadata.name: Required value",
                kind.kind
            ),
        )),
    }
}

fn check_kind(kind: Kind, object: &Value) -> Result<(), Failure> {
    if let Some(k) = object["kind"].as_str()
        && k != kind.kind
    {
        return Err(Failure::new(
            400,
            "BadRequest",
            format!("the kind {k} does not match the resource {}", kind.plural),
        ));
    }
    Ok(())
}

/// POST.
pub fn create(
    st: &mut State,
    kind: Kind,
    ns: &str,
    mut object: Value,
    manager: &str,
    dry: bool,
) -> Result<Value, Failure> {
    check_kind(kind, &object)?;
    if object["metadata"]["name"].as_str().is_none()
        && let Some(prefix) = object["metadata"]["generateName"].as_str()
    {
        st.uid += 1;
        object["metadata"]["name"] = json!(format!("{prefix}{:05x}", st.uid));
    }
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    check_name(kind, &name, &object)?;
    if st.get(kind, ns, &name).is_some() {
        let mut f = Failure::new(
            409,
            "AlreadyExists",
            if kind.group.is_empty() {
                format!("{} \"{name}\" already exists", kind.plural)
            } else {
                format!("{}.{} \"{name}\" already exists", kind.plural, kind.group)
            },
        );
        f.details = json!({"name": name, "kind": kind.plural});
        return Err(f);
    }
    let mut object = object;
    defaults(st, kind, &mut object, None);
    if kind.kind == "Pod" {
        crate::admission::admit_pod(st, ns, &mut object)
            .map_err(|message| Failure::new(403, "Forbidden", message))?;
    }
    let object = finalize(None, object, false);
    if dry {
        return Ok(object);
    }
    let paths: BTreeSet<String> = leaves(&object).into_keys().collect();
    st.managed
        .entry(key(kind, ns, &name))
        .or_default()
        .insert(manager.to_owned(), ("Update".into(), paths));
    Ok(st.put(kind, ns, object))
}

/// Server-side apply (`application/apply-patch+yaml`).
#[allow(clippy::too_many_arguments)]
pub fn apply(
    st: &mut State,
    kind: Kind,
    ns: &str,
    name: &str,
    applied: &Value,
    manager: &str,
    force: bool,
    dry: bool,
) -> Result<Value, Failure> {
    check_kind(kind, applied)?;
    check_name(kind, name, applied)?;
    if applied["apiVersion"].as_str() != Some(kind.api_version().as_str()) {
        return Err(Failure::new(
            400,
            "BadRequest",
            format!(
                "apiVersion must be {} for {}",
                kind.api_version(),
                kind.plural
            ),
        ));
    }
    let k = key(kind, ns, name);
    let existing = st.get(kind, ns, name).cloned();
    let new_leaves = leaves(applied);
    // The applied values as the server stores them (canonical quantities…), for comparing.
    let mut normal = applied.clone();
    defaults(st, kind, &mut normal, existing.as_ref());
    let mut owners = st.managed.get(&k).cloned().unwrap_or_default();
    if let Some(current) = &existing {
        let mut conflicts = Vec::new();
        for (path, value) in &new_leaves {
            for (other, (_, paths)) in &owners {
                if other != manager
                    && paths.contains(path)
                    && get_path(current, path) != get_path(&normal, path).or(Some(value))
                {
                    conflicts.push((other.clone(), path.clone()));
                }
            }
        }
        if !conflicts.is_empty() && !force {
            let n = conflicts.len();
            let list: Vec<String> = conflicts
                .iter()
                .map(|(m, p)| format!("conflict with \"{m}\": {}", dotted(p)))
                .collect();
            let mut f = Failure::new(
                409,
                "Conflict",
                format!(
                    "Apply failed with {n} conflict{}: {}",
                    if n == 1 { "" } else { "s" },
                    list.join("\n")
                ),
            );
            f.details = json!({
                "name": name,
                "kind": kind.plural,
                "causes": conflicts.iter().map(|(m, p)| json!({
                    "reason": "FieldManagerConflict",
                    "message": format!("conflict with \"{m}\""),
                    "field": dotted(p),
                })).collect::<Vec<_>>(),
            });
            return Err(f);
        }
        if force {
            for (other, (_, paths)) in owners.iter_mut() {
                if other != manager {
                    paths.retain(|p| !new_leaves.contains_key(p));
                }
            }
        }
    }
    let mut result = existing.clone().unwrap_or_else(|| json!({"metadata": {}}));
    // Fields this manager owned and no longer sends go, unless someone else owns them.
    if let Some((_, mine)) = owners.get(manager) {
        for p in mine {
            let kept = owners
                .iter()
                .any(|(m, (_, paths))| m != manager && paths.contains(p));
            if !new_leaves.contains_key(p) && !kept {
                remove_path(&mut result, p);
            }
        }
    }
    for (p, v) in &new_leaves {
        set_path(&mut result, p, v.clone());
    }
    crate::fieldpath::order_like(&mut result, applied, "");
    result["metadata"]["name"] = json!(name);
    owners.insert(
        manager.to_owned(),
        ("Apply".into(), new_leaves.keys().cloned().collect()),
    );
    owners.retain(|_, (_, paths)| !paths.is_empty());
    // Defaulted fields are nobody's: a re-apply without them keeps them.
    defaults(st, kind, &mut result, existing.as_ref());
    let result = finalize(existing.as_ref(), result, true);
    if let Some(current) = &existing
        && same(current, &result)
        && st.managed.get(&k) == Some(&owners)
    {
        return Ok(current.clone());
    }
    if dry {
        return Ok(result);
    }
    st.managed.insert(k, owners);
    Ok(st.put(kind, ns, result))
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// JSON merge patch, on the object or `status`; the manager owns the fields it sets.
#[allow(clippy::too_many_arguments)]
pub fn patch(
    st: &mut State,
    kind: Kind,
    ns: &str,
    name: &str,
    patch: &Value,
    manager: &str,
    status_only: bool,
    dry: bool,
) -> Result<Value, Failure> {
    patch_owning(st, kind, ns, name, patch, patch, manager, status_only, dry)
}

/// [`patch`], the manager owning the fields of `owned` (a strategic merge patch is applied
/// as the merge patch it amounts to, but its sender owns only what it sent).
#[allow(clippy::too_many_arguments)]
pub fn patch_owning(
    st: &mut State,
    kind: Kind,
    ns: &str,
    name: &str,
    patch: &Value,
    owned: &Value,
    manager: &str,
    status_only: bool,
    dry: bool,
) -> Result<Value, Failure> {
    let existing = st
        .get(kind, ns, name)
        .cloned()
        .ok_or_else(|| Failure::not_found(kind, name))?;
    let mut result = existing.clone();
    if status_only {
        if let Some(s) = patch.get("status") {
            merge(&mut result["status"], s);
        }
    } else {
        let mut p = patch.clone();
        if let Some(m) = p.as_object_mut() {
            m.remove("status");
        }
        merge(&mut result, &p);
        defaults(st, kind, &mut result, Some(&existing));
        result = finalize(Some(&existing), result, true);
    }
    if same(&existing, &result) {
        return Ok(existing);
    }
    if dry {
        return Ok(result);
    }
    let paths: BTreeSet<String> = leaves(owned).into_keys().collect();
    if !paths.is_empty() {
        st.managed
            .entry(key(kind, ns, name))
            .or_default()
            .entry(manager.to_owned())
            .or_insert_with(|| ("Update".into(), BTreeSet::new()))
            .1
            .extend(paths);
    }
    Ok(st.put(kind, ns, result))
}

/// PUT, with the optimistic-concurrency check on `metadata.resourceVersion`.
pub fn replace(
    st: &mut State,
    kind: Kind,
    ns: &str,
    name: &str,
    object: Value,
    status_only: bool,
    dry: bool,
) -> Result<Value, Failure> {
    check_name(kind, name, &object)?;
    let existing = st
        .get(kind, ns, name)
        .cloned()
        .ok_or_else(|| Failure::not_found(kind, name))?;
    if let Some(rv) = object["metadata"]["resourceVersion"].as_str()
        && Some(rv) != existing["metadata"]["resourceVersion"].as_str()
    {
        return Err(Failure::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {}.{} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                kind.plural, kind.group
            ),
        ));
    }
    let result = if status_only {
        let mut r = existing.clone();
        r["status"] = object.get("status").cloned().unwrap_or(Value::Null);
        r
    } else {
        let mut object = object;
        defaults(st, kind, &mut object, Some(&existing));
        finalize(Some(&existing), object, true)
    };
    if dry {
        return Ok(result);
    }
    Ok(st.put(kind, ns, result))
}

/// DELETE; dependents (by ownerReferences) go too unless the policy is `Orphan`.
pub fn delete(
    st: &mut State,
    kind: Kind,
    ns: &str,
    name: &str,
    propagation: Option<&str>,
    preconditions: &Value,
    dry: bool,
) -> Result<Value, Failure> {
    let existing = st
        .get(kind, ns, name)
        .cloned()
        .ok_or_else(|| Failure::not_found(kind, name))?;
    for field in ["uid", "resourceVersion"] {
        if let Some(want) = preconditions[field].as_str()
            && Some(want) != existing["metadata"][field].as_str()
        {
            return Err(Failure::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {}.{} \"{name}\": Precondition failed: {field} in precondition: {want}, {field} in object meta: {}",
                    kind.plural,
                    kind.group,
                    existing["metadata"][field].as_str().unwrap_or_default()
                ),
            ));
        }
    }
    if dry {
        return Ok(existing);
    }
    if kind.plural == "namespaces" {
        let inside: Vec<Key> = st
            .objects
            .keys()
            .filter(|(_, n, _)| n == name)
            .cloned()
            .collect();
        for (plural, n, obj) in inside {
            if let Some(k) = crate::store::KINDS.iter().find(|k| k.plural == plural) {
                st.remove(*k, &n, &obj);
            }
        }
    } else if propagation != Some("Orphan") {
        delete_dependents(
            st,
            ns,
            existing["metadata"]["uid"].as_str().unwrap_or_default(),
        );
    }
    Ok(st.remove(kind, ns, name).unwrap_or(existing))
}

fn delete_dependents(st: &mut State, ns: &str, uid: &str) {
    if uid.is_empty() {
        return;
    }
    let dependents: Vec<(Kind, String, String)> = st
        .objects
        .iter()
        .filter(|((_, n, _), v)| {
            n == ns
                && v["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid))
        })
        .filter_map(|((p, n, name), v)| {
            let k = crate::store::KINDS.iter().find(|k| k.plural == *p)?;
            let _ = v;
            Some((*k, n.clone(), name.clone()))
        })
        .collect();
    for (k, n, name) in dependents {
        let child_uid = st
            .get(k, &n, &name)
            .and_then(|v| v["metadata"]["uid"].as_str().map(str::to_owned))
            .unwrap_or_default();
        delete_dependents(st, &n, &child_uid);
        st.remove(k, &n, &name);
    }
}
