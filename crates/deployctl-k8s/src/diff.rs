//! Desired vs observed: the rendered manifests against what the cluster holds, and the plan
//! that says what a deploy changes. Pure: no calls, unit-tested without a server.

use std::collections::BTreeSet;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use deployctl_core::{Action, FieldChange, Plan, ResourceChange};
use serde_json::Value;

use crate::cluster::InventoryEntry;
use crate::quantity::same_quantity;
use crate::render::Manifest;

/// What the cluster holds for the app, as `observe` read it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Observed {
    /// Whether the app's namespace exists.
    pub namespace_exists: bool,
    /// The live object of each rendered manifest, in the manifests' order (`None`: absent).
    pub live: Vec<Option<Value>>,
    /// Every object with the app's instance and managed-by labels (history excluded).
    pub inventory: Vec<InventoryEntry>,
}

/// The plan and the objects it prunes.
#[derive(Debug, Clone)]
pub(crate) struct Diff {
    pub plan: Plan,
    /// Objects no longer rendered, to delete after the apply.
    pub prune: Vec<InventoryEntry>,
}

/// What the plan shows for the image when it is not built yet.
pub(crate) const IMAGE_NOT_BUILT: &str = "(the image this deploy builds)";

/// Compares `manifests` with `observed`. `image_known` is false for a plan made before the
/// image is built (rendered with a placeholder digest): an `.image` in the same repository
/// as the live one is then not a change — the build decides the digest, and a build of
/// unchanged sources gives the live one — and one in another repository shows
/// [`IMAGE_NOT_BUILT`].
pub(crate) fn diff(
    namespace: &str,
    manifests: &[Manifest],
    observed: &Observed,
    image_known: bool,
) -> Diff {
    let mut plan = Plan::new("k8s");
    if !observed.namespace_exists {
        plan.push(ResourceChange::new(
            "Namespace",
            namespace,
            Action::Create,
            "created if missing",
        ));
    }
    let mut rendered = BTreeSet::new();
    for (i, m) in manifests.iter().enumerate() {
        rendered.insert((m.kind.as_str(), m.name.as_str()));
        let action = match observed.live.get(i).and_then(Option::as_ref) {
            None => Action::Create,
            Some(have) => {
                let fields = changed_fields(m, have, image_known);
                if fields.is_empty() {
                    Action::Unchanged
                } else {
                    Action::Update { fields }
                }
            }
        };
        plan.push(ResourceChange::new(
            &m.kind,
            &m.name,
            action,
            format!("server-side apply ({})", m.api_version),
        ));
    }
    let mut prune = Vec::new();
    for entry in &observed.inventory {
        if !rendered.contains(&(entry.kind.kind, entry.name.as_str())) {
            plan.push(ResourceChange::new(
                entry.kind.kind,
                &entry.name,
                Action::Delete,
                "no longer rendered (prune)",
            ));
            prune.push(entry.clone());
        }
    }
    Diff { plan, prune }
}

/// The fields of `m` whose value in `have` differs (fields the server adds are ignored:
/// only what deployctl renders is compared). Secret data is never shown.
fn changed_fields(m: &Manifest, have: &Value, image_known: bool) -> Vec<FieldChange> {
    let mut fields = Vec::new();
    for (segments, want) in leaves(&m.value) {
        let got = at(have, &segments);
        if got == Some(&want) {
            continue;
        }
        // The server stores quantities in canonical form (`1000m` as `1`).
        if is_quantity(&segments) && got.is_some_and(|g| same_quantity(g, &want)) {
            continue;
        }
        // The server folds a Secret's `stringData` into `data` (base64) and keeps no
        // `stringData`: the same value there is no change.
        if m.is_secret() && segments.len() == 2 && segments[0] == "stringData" {
            let stored = at(have, &["data".to_owned(), segments[1].clone()]);
            if let (Some(stored), Some(text)) = (stored.and_then(Value::as_str), want.as_str())
                && stored == BASE64.encode(text)
            {
                continue;
            }
        }
        let path = format!(".{}", segments.join(".")).replace(".[", "[");
        if !image_known && path.ends_with(".image") && same_repository(got, &want) {
            continue;
        }
        let sensitive =
            m.is_secret() && path.starts_with(".data") || path.starts_with(".stringData");
        fields.push(if sensitive {
            FieldChange::sensitive(path)
        } else if !image_known && path.ends_with(".image") {
            FieldChange::new(path, got.map(value_text), Some(IMAGE_NOT_BUILT.into()))
        } else {
            FieldChange::new(path, got.map(value_text), Some(value_text(&want)))
        });
    }
    fields
}

/// Whether a leaf holds a Kubernetes quantity: a resource list entry, an `emptyDir`
/// size limit, an HPA metric target value.
fn is_quantity(segments: &[String]) -> bool {
    let n = segments.len();
    let last = segments.last().map(String::as_str);
    let parent = n.checked_sub(2).map(|i| segments[i].as_str());
    // `hard` is a ResourceQuota's, `default`/`defaultRequest` a LimitRange's.
    matches!(
        parent,
        Some("requests" | "limits" | "hard" | "default" | "defaultRequest")
    ) || matches!(last, Some("sizeLimit" | "averageValue"))
        || (last == Some("value") && parent == Some("target"))
}

/// Leaf paths of a manifest (segments; label keys may contain dots) and their values.
fn leaves(v: &Value) -> Vec<(Vec<String>, Value)> {
    fn walk(prefix: &mut Vec<String>, v: &Value, out: &mut Vec<(Vec<String>, Value)>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, child) in m {
                    prefix.push(k.clone());
                    walk(prefix, child, out);
                    prefix.pop();
                }
            }
            Value::Array(a) if !a.is_empty() => {
                for (i, child) in a.iter().enumerate() {
                    prefix.push(format!("[{i}]"));
                    walk(prefix, child, out);
                    prefix.pop();
                }
            }
            other => out.push((prefix.clone(), other.clone())),
        }
    }
    let mut out = Vec::new();
    walk(&mut Vec::new(), v, &mut out);
    out
}

fn at<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, seg| {
        match seg
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .and_then(|n| n.parse::<usize>().ok())
        {
            Some(i) => cur.get(i),
            None => cur.get(seg),
        }
    })
}

/// Whether two image references name the same repository (the part before `@` or the tag).
fn same_repository(live: Option<&Value>, planned: &Value) -> bool {
    fn repository(image: &str) -> &str {
        let name = image.split('@').next().unwrap_or(image);
        match name.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => repo,
            _ => name,
        }
    }
    match (live.and_then(Value::as_str), planned.as_str()) {
        (Some(live), Some(planned)) => repository(live) == repository(planned),
        _ => false,
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::managed_kind;
    use crate::render::test_manifest;
    use serde_json::json;

    fn deployment(image: &str, replicas: i64) -> Manifest {
        test_manifest(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "labels": {"app.kubernetes.io/name": "web"}},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "web", "image": image}]}}},
        }))
    }

    fn secret(value: &str) -> Manifest {
        test_manifest(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "web-secrets", "namespace": "shop"},
            "data": {"DB_PASSWORD": value},
        }))
    }

    fn live(m: &Manifest) -> Value {
        let mut v = m.value.clone();
        // What a server adds is not a change.
        v["metadata"]["uid"] = json!("1234");
        v["metadata"]["resourceVersion"] = json!("7");
        v["status"] = json!({"replicas": 2});
        v
    }

    #[test]
    fn nothing_live_creates_everything_and_the_namespace() {
        let ms = [deployment("r/web@sha256:1", 2)];
        let d = diff("shop", &ms, &Observed::default(), true);
        let got: Vec<(&str, &str)> = d
            .plan
            .changes
            .iter()
            .map(|c| (c.kind.as_str(), c.action.name()))
            .collect();
        assert_eq!(got, [("Namespace", "create"), ("Deployment", "create")]);
        assert!(d.prune.is_empty());
    }

    #[test]
    fn server_fields_are_not_changes_and_a_new_image_is() {
        let ms = [deployment("r/web@sha256:1", 2)];
        let observed = Observed {
            namespace_exists: true,
            live: vec![Some(live(&ms[0]))],
            inventory: Vec::new(),
        };
        assert!(diff("shop", &ms, &observed, true).plan.is_noop());
        let new = [deployment("r/web@sha256:2", 2)];
        let d = diff("shop", &new, &observed, true);
        match &d.plan.changes[0].action {
            Action::Update { fields } => {
                assert_eq!(fields.len(), 1, "{fields:?}");
                assert_eq!(fields[0].field, ".spec.template.spec.containers[0].image");
                assert_eq!(fields[0].to.as_deref(), Some("r/web@sha256:2"));
            }
            other => panic!("{other:?}"),
        }
        // Before the build: the same repository is no change (the build decides the
        // digest); another repository is, shown as the image this deploy builds.
        let unbuilt = [deployment("r/web@sha256:0000", 2)];
        assert!(diff("shop", &unbuilt, &observed, false).plan.is_noop());
        let moved = [deployment("other/web@sha256:0000", 3)];
        let d = diff("shop", &moved, &observed, false);
        match &d.plan.changes[0].action {
            Action::Update { fields } => {
                let image = fields.iter().find(|f| f.field.ends_with(".image"));
                assert_eq!(image.and_then(|f| f.to.as_deref()), Some(IMAGE_NOT_BUILT));
                assert_eq!(fields.len(), 2, "{fields:?}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_quantity_the_server_canonicalised_is_no_change() {
        let mut m = deployment("r/web@sha256:1", 2);
        let c = &mut m.value["spec"]["template"]["spec"]["containers"][0];
        c["resources"] = json!({"limits": {"cpu": "1000m", "memory": "1024Mi"},
                                "requests": {"cpu": 0.5, "memory": "256Mi"}});
        let ms = [m];
        let mut have = live(&ms[0]);
        have["spec"]["template"]["spec"]["containers"][0]["resources"] = json!({
            "limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m", "memory": "256Mi"}});
        let observed = Observed {
            namespace_exists: true,
            live: vec![Some(have.clone())],
            inventory: Vec::new(),
        };
        assert!(diff("shop", &ms, &observed, true).plan.is_noop());
        // A different value still is a change.
        have["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] =
            json!("2");
        let observed = Observed {
            live: vec![Some(have)],
            ..observed
        };
        match &diff("shop", &ms, &observed, true).plan.changes[0].action {
            Action::Update { fields } => {
                assert_eq!(fields.len(), 1, "{fields:?}");
                assert_eq!(
                    fields[0].field,
                    ".spec.template.spec.containers[0].resources.limits.cpu"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn secret_data_changes_are_sensitive() {
        let observed = Observed {
            namespace_exists: true,
            live: vec![Some(live(&secret("b2xk")))],
            inventory: Vec::new(),
        };
        let d = diff("shop", &[secret("bmV3")], &observed, true);
        let text = format!("{:?}", d.plan);
        assert!(!text.contains("bmV3") && !text.contains("b2xk"), "{text}");
        assert!(
            matches!(&d.plan.changes[0].action, Action::Update { fields } if fields.len() == 1)
        );
    }

    #[test]
    fn string_data_the_server_folded_into_data_is_no_change() {
        let m = test_manifest(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "web-secrets", "namespace": "shop"},
            "stringData": {"TOKEN": "hello"},
        }));
        // What a server keeps: `data`, no `stringData`.
        let have = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "web-secrets", "namespace": "shop"},
            "type": "Opaque", "data": {"TOKEN": "aGVsbG8="}});
        let observed = Observed {
            namespace_exists: true,
            live: vec![Some(have)],
            inventory: Vec::new(),
        };
        assert!(
            diff("shop", std::slice::from_ref(&m), &observed, true)
                .plan
                .is_noop()
        );
        let mut other = m.clone();
        other.value["stringData"]["TOKEN"] = json!("bye");
        let d = diff("shop", &[other], &observed, true);
        assert!(
            matches!(&d.plan.changes[0].action, Action::Update { fields } if fields.len() == 1)
        );
    }

    #[test]
    fn inventory_not_rendered_is_pruned() {
        let ms = [deployment("r/web@sha256:1", 2)];
        let kind = |api, k| managed_kind(api, k).unwrap_or_else(|| panic!("{k}"));
        let observed = Observed {
            namespace_exists: true,
            live: vec![Some(live(&ms[0]))],
            inventory: vec![
                InventoryEntry {
                    kind: kind("apps/v1", "Deployment"),
                    name: "web".into(),
                },
                InventoryEntry {
                    kind: kind("networking.k8s.io/v1", "Ingress"),
                    name: "web".into(),
                },
            ],
        };
        let d = diff("shop", &ms, &observed, true);
        assert_eq!(d.prune.len(), 1);
        assert_eq!(d.prune[0].kind.kind, "Ingress");
        let last = d
            .plan
            .changes
            .last()
            .map(|c| (c.kind.as_str(), c.action.name()));
        assert_eq!(last, Some(("Ingress", "delete")));
    }
}
