//! The object store: resource kinds, objects, resource versions, watch history, selectors
//! and server-side-apply field ownership.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Instant, SystemTime};

use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::fieldpath::fields_v1;
pub use crate::fieldpath::{dotted, get_path, leaves, remove_path, set_path};

/// A resource kind the stand-in serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    /// API group (`""` for core).
    pub group: &'static str,
    /// Version.
    pub version: &'static str,
    /// Plural resource name.
    pub plural: &'static str,
    /// Kind.
    pub kind: &'static str,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Singular resource name (discovery's `singularName`).
    pub singular: &'static str,
    /// Short names as a real API server lists them (`deploy`, `svc`…).
    pub short_names: &'static [&'static str],
    /// Categories (`all` where Kubernetes puts the kind in it).
    pub categories: &'static [&'static str],
    /// Subresources served (`status`, `scale`, `log`, `proxy`).
    pub subresources: &'static [&'static str],
}

impl Kind {
    /// `apiVersion` as objects carry it.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// Every kind served.
pub const KINDS: &[Kind] = &[
    Kind {
        group: "",
        version: "v1",
        plural: "namespaces",
        kind: "Namespace",
        namespaced: false,
        singular: "namespace",
        short_names: &["ns"],
        categories: &[],
        subresources: &["status"],
    },
    Kind {
        group: "",
        version: "v1",
        plural: "pods",
        kind: "Pod",
        namespaced: true,
        singular: "pod",
        short_names: &["po"],
        categories: &["all"],
        subresources: &["log", "proxy", "status"],
    },
    Kind {
        group: "",
        version: "v1",
        plural: "services",
        kind: "Service",
        namespaced: true,
        singular: "service",
        short_names: &["svc"],
        categories: &["all"],
        subresources: &["proxy", "status"],
    },
    Kind {
        group: "",
        version: "v1",
        plural: "configmaps",
        kind: "ConfigMap",
        namespaced: true,
        singular: "configmap",
        short_names: &["cm"],
        categories: &[],
        subresources: &[],
    },
    Kind {
        group: "",
        version: "v1",
        plural: "secrets",
        kind: "Secret",
        namespaced: true,
        singular: "secret",
        short_names: &[],
        categories: &[],
        subresources: &[],
    },
    Kind {
        group: "",
        version: "v1",
        plural: "persistentvolumeclaims",
        kind: "PersistentVolumeClaim",
        namespaced: true,
        singular: "persistentvolumeclaim",
        short_names: &["pvc"],
        categories: &[],
        subresources: &["status"],
    },
    Kind {
        group: "",
        version: "v1",
        plural: "serviceaccounts",
        kind: "ServiceAccount",
        namespaced: true,
        singular: "serviceaccount",
        short_names: &["sa"],
        categories: &[],
        subresources: &[],
    },
    Kind {
        group: "",
        version: "v1",
        plural: "events",
        kind: "Event",
        namespaced: true,
        singular: "event",
        short_names: &["ev"],
        categories: &[],
        subresources: &[],
    },
    Kind {
        group: "apps",
        version: "v1",
        plural: "deployments",
        kind: "Deployment",
        namespaced: true,
        singular: "deployment",
        short_names: &["deploy"],
        categories: &["all"],
        subresources: &["scale", "status"],
    },
    Kind {
        group: "apps",
        version: "v1",
        plural: "replicasets",
        kind: "ReplicaSet",
        namespaced: true,
        singular: "replicaset",
        short_names: &["rs"],
        categories: &["all"],
        subresources: &["scale", "status"],
    },
    Kind {
        group: "networking.k8s.io",
        version: "v1",
        plural: "ingresses",
        kind: "Ingress",
        namespaced: true,
        singular: "ingress",
        short_names: &["ing"],
        categories: &[],
        subresources: &["status"],
    },
    Kind {
        group: "networking.k8s.io",
        version: "v1",
        plural: "networkpolicies",
        kind: "NetworkPolicy",
        namespaced: true,
        singular: "networkpolicy",
        short_names: &["netpol"],
        categories: &[],
        subresources: &[],
    },
    Kind {
        group: "coordination.k8s.io",
        version: "v1",
        plural: "leases",
        kind: "Lease",
        namespaced: true,
        singular: "lease",
        short_names: &[],
        categories: &[],
        subresources: &[],
    },
    Kind {
        group: "autoscaling",
        version: "v2",
        plural: "horizontalpodautoscalers",
        kind: "HorizontalPodAutoscaler",
        namespaced: true,
        singular: "horizontalpodautoscaler",
        short_names: &["hpa"],
        categories: &["all"],
        subresources: &["status"],
    },
    Kind {
        group: "policy",
        version: "v1",
        plural: "poddisruptionbudgets",
        kind: "PodDisruptionBudget",
        namespaced: true,
        singular: "poddisruptionbudget",
        short_names: &["pdb"],
        categories: &[],
        subresources: &["status"],
    },
    Kind {
        group: "",
        version: "v1",
        plural: "resourcequotas",
        kind: "ResourceQuota",
        namespaced: true,
        singular: "resourcequota",
        short_names: &["quota"],
        categories: &[],
        subresources: &["status"],
    },
    Kind {
        group: "",
        version: "v1",
        plural: "limitranges",
        kind: "LimitRange",
        namespaced: true,
        singular: "limitrange",
        short_names: &["limits"],
        categories: &[],
        subresources: &[],
    },
    Kind {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "roles",
        kind: "Role",
        namespaced: true,
        singular: "role",
        short_names: &[],
        categories: &[],
        subresources: &[],
    },
    Kind {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "rolebindings",
        kind: "RoleBinding",
        namespaced: true,
        singular: "rolebinding",
        short_names: &[],
        categories: &[],
        subresources: &[],
    },
    Kind {
        group: "batch",
        version: "v1",
        plural: "jobs",
        kind: "Job",
        namespaced: true,
        singular: "job",
        short_names: &[],
        categories: &["all"],
        subresources: &["status"],
    },
    // Custom resources, as a cluster with the Kong Ingress Controller's CRDs serves them.
    Kind {
        group: "configuration.konghq.com",
        version: "v1",
        plural: "kongplugins",
        kind: "KongPlugin",
        namespaced: true,
        singular: "kongplugin",
        short_names: &["kp"],
        categories: &["kong-ingress-controller"],
        subresources: &[],
    },
    Kind {
        group: "configuration.konghq.com",
        version: "v1",
        plural: "kongconsumers",
        kind: "KongConsumer",
        namespaced: true,
        singular: "kongconsumer",
        short_names: &["kc"],
        categories: &["kong-ingress-controller"],
        subresources: &["status"],
    },
];

/// Finds a kind by group, version and plural.
pub fn kind(group: &str, version: &str, plural: &str) -> Option<Kind> {
    KINDS
        .iter()
        .copied()
        .find(|k| k.group == group && k.version == version && k.plural == plural)
}

/// Finds a kind by its name.
pub fn kind_named(name: &str) -> Option<Kind> {
    KINDS.iter().copied().find(|k| k.kind == name)
}

/// Store key: plural, namespace (`""` for cluster-scoped), name.
pub type Key = (&'static str, String, String);

/// One change, as watches see it.
#[derive(Debug, Clone)]
pub struct Change {
    pub rv: u64,
    pub plural: &'static str,
    pub namespace: String,
    pub kind: &'static str,
    pub object: Value,
}

/// The mutable state behind the server.
#[derive(Debug)]
pub struct State {
    pub objects: BTreeMap<Key, Value>,
    /// Field ownership: key → manager → (operation, owned leaf paths).
    pub managed: BTreeMap<Key, BTreeMap<String, (String, BTreeSet<String>)>>,
    pub rv: u64,
    pub history: VecDeque<Change>,
    pub uid: u64,
    pub tx: broadcast::Sender<Change>,
    pub logs: BTreeMap<(String, String), Vec<String>>,
    pub started: BTreeMap<Key, Instant>,
    pub behaviors: Vec<(String, crate::Behavior)>,
    pub ready_after: std::time::Duration,
    /// Where the proxy of a Service (namespace, name) forwards (`http://host:port`).
    pub proxy_targets: BTreeMap<(String, String), String>,
    /// Where the proxy of a Service without its own target forwards.
    pub default_proxy_target: Option<String>,
    /// Mutating requests served (`METHOD path`), dry runs excluded.
    pub mutations: Vec<String>,
    /// What a Job's pod of a matching image prints (image substring → lines; later wins),
    /// `${NAME}` replaced by the value the pod's environment has for NAME.
    pub job_output: Vec<(String, Vec<String>)>,
}

/// History kept for watches that resume from a resource version.
const HISTORY: usize = 20_000;

pub fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

impl State {
    pub fn new(tx: broadcast::Sender<Change>) -> Self {
        Self {
            objects: BTreeMap::new(),
            managed: BTreeMap::new(),
            rv: 1,
            history: VecDeque::new(),
            uid: 0,
            tx,
            logs: BTreeMap::new(),
            started: BTreeMap::new(),
            behaviors: Vec::new(),
            ready_after: std::time::Duration::from_millis(150),
            proxy_targets: BTreeMap::new(),
            default_proxy_target: None,
            mutations: Vec::new(),
            job_output: Vec::new(),
        }
    }

    fn record(&mut self, kind: Kind, namespace: &str, event: &'static str, object: &Value) {
        let change = Change {
            rv: self.rv,
            plural: kind.plural,
            namespace: namespace.to_owned(),
            kind: event,
            object: object.clone(),
        };
        self.history.push_back(change.clone());
        while self.history.len() > HISTORY {
            self.history.pop_front();
        }
        let _ = self.tx.send(change);
    }

    /// Stores `object` (new or changed) under a fresh resource version.
    pub fn put(&mut self, kind: Kind, namespace: &str, mut object: Value) -> Value {
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let key: Key = (kind.plural, namespace.to_owned(), name);
        let event = if self.objects.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        self.rv += 1;
        object["apiVersion"] = json!(kind.api_version());
        object["kind"] = json!(kind.kind);
        let meta = object["metadata"]
            .as_object_mut()
            .map(std::mem::take)
            .unwrap_or_default();
        let mut meta = meta;
        if !meta.contains_key("uid") {
            self.uid += 1;
            meta.insert(
                "uid".into(),
                json!(format!("00000000-0000-4000-8000-{:012x}", self.uid)),
            );
            meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
        }
        meta.insert("resourceVersion".into(), json!(self.rv.to_string()));
        if kind.namespaced {
            meta.insert("namespace".into(), json!(namespace));
        }
        meta.insert("managedFields".into(), self.managed_fields(&key, kind));
        object["metadata"] = Value::Object(meta);
        self.objects.insert(key, object.clone());
        self.record(kind, namespace, event, &object);
        object
    }

    /// Removes an object; returns it.
    pub fn remove(&mut self, kind: Kind, namespace: &str, name: &str) -> Option<Value> {
        let key: Key = (kind.plural, namespace.to_owned(), name.to_owned());
        let mut object = self.objects.remove(&key)?;
        self.managed.remove(&key);
        self.started.remove(&key);
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.record(kind, namespace, "DELETED", &object);
        if kind.plural == "pods" {
            self.logs.remove(&(namespace.to_owned(), name.to_owned()));
        }
        Some(object)
    }

    pub fn get(&self, kind: Kind, namespace: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(&(kind.plural, namespace.to_owned(), name.to_owned()))
    }

    /// Objects of `kind` (in `namespace`, or all when `None`).
    pub fn list(&self, kind: Kind, namespace: Option<&str>) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|((p, ns, _), _)| *p == kind.plural && namespace.is_none_or(|n| n == ns))
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn managed_fields(&self, key: &Key, kind: Kind) -> Value {
        let Some(m) = self.managed.get(key) else {
            return json!([]);
        };
        Value::Array(
            m.iter()
                .map(|(manager, (op, paths))| {
                    json!({
                        "manager": manager,
                        "operation": op,
                        "apiVersion": kind.api_version(),
                        "fieldsType": "FieldsV1",
                        "fieldsV1": fields_v1(paths),
                        "time": now_rfc3339(),
                    })
                })
                .collect(),
        )
    }
}

/// A parsed label selector (equality and set-based).
#[derive(Debug, Clone, Default)]
pub struct Selector(Vec<Req>);

#[derive(Debug, Clone)]
enum Req {
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

impl Selector {
    /// Parses `a=b,c!=d,e in (x,y),f notin (z),g,!h`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        let mut parts = Vec::new();
        let (mut depth, mut cur) = (0, String::new());
        for c in s.chars() {
            match c {
                '(' => {
                    depth += 1;
                    cur.push(c);
                }
                ')' => {
                    depth -= 1;
                    cur.push(c);
                }
                ',' if depth == 0 => parts.push(std::mem::take(&mut cur)),
                _ => cur.push(c),
            }
        }
        parts.push(cur);
        for p in parts.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
            let set = |rest: &str| -> Result<Vec<String>, String> {
                let rest = rest.trim();
                let inner = rest
                    .strip_prefix('(')
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or_else(|| format!("bad set in selector: {p}"))?;
                Ok(inner.split(',').map(|v| v.trim().to_owned()).collect())
            };
            if let Some((k, v)) = p.split_once("!=") {
                reqs.push(Req::Ne(k.trim().into(), v.trim().into()));
            } else if let Some((k, v)) = p.split_once("==") {
                reqs.push(Req::Eq(k.trim().into(), v.trim().into()));
            } else if let Some((k, v)) = p.split_once('=') {
                reqs.push(Req::Eq(k.trim().into(), v.trim().into()));
            } else if let Some((k, rest)) = p.split_once(" notin ") {
                reqs.push(Req::NotIn(k.trim().into(), set(rest)?));
            } else if let Some((k, rest)) = p.split_once(" in ") {
                reqs.push(Req::In(k.trim().into(), set(rest)?));
            } else if let Some(k) = p.strip_prefix('!') {
                reqs.push(Req::NotExists(k.trim().into()));
            } else if p
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
            {
                reqs.push(Req::Exists(p.into()));
            } else {
                return Err(format!("unable to parse requirement: {p}"));
            }
        }
        Ok(Self(reqs))
    }

    /// Whether `labels` match.
    pub fn matches(&self, labels: &Value) -> bool {
        let get = |k: &str| labels.get(k).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Req::Eq(k, v) => get(k) == Some(v.as_str()),
            Req::Ne(k, v) => get(k) != Some(v.as_str()),
            Req::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Req::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
            Req::Exists(k) => get(k).is_some(),
            Req::NotExists(k) => get(k).is_none(),
        })
    }
}

/// A field selector (`metadata.name=x`, `metadata.namespace=y`, with `=`/`==`/`!=`).
pub fn field_matches(selector: &str, object: &Value) -> bool {
    selector.split(',').filter(|p| !p.is_empty()).all(|p| {
        let (k, v, neg) = if let Some((k, v)) = p.split_once("!=") {
            (k, v, true)
        } else if let Some((k, v)) = p.split_once("==") {
            (k, v, false)
        } else if let Some((k, v)) = p.split_once('=') {
            (k, v, false)
        } else {
            return true;
        };
        let actual = k
            .split('.')
            .try_fold(object, |cur, seg| cur.get(seg))
            .and_then(Value::as_str);
        (actual == Some(v)) != neg
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors() {
        let labels = json!({"app": "web", "tier": "front"});
        for (s, want) in [
            ("app=web", true),
            ("app==web,tier=front", true),
            ("app!=web", false),
            ("app in (web, api)", true),
            ("app notin (web)", false),
            ("tier", true),
            ("!tier", false),
            ("!missing", true),
            ("app in (api),tier", false),
        ] {
            assert_eq!(Selector::parse(s).unwrap().matches(&labels), want, "{s}");
        }
        assert!(Selector::parse("app in web").is_err());
    }

    #[test]
    fn leaves_skip_identity_and_status() {
        let l = leaves(&json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "x", "labels": {"a": "b"}, "resourceVersion": "3"},
            "data": {"k": "v"}, "status": {"s": 1}
        }));
        let keys: Vec<String> = l.keys().map(|k| dotted(k)).collect();
        assert_eq!(keys, [".data.k", ".metadata.labels.a"]);
    }
}
