//! Defaulting as a real API server does it on create, update, patch and server-side apply:
//! the fields k8s.io/kubernetes `pkg/apis/{core,apps,autoscaling,networking}/v1*/defaults.go`
//! fill in for the kinds the stand-in serves, quantities in canonical form
//! ([`crate::quantity`]), a Secret's `stringData` folded into `data`, and Services' cluster
//! IPs allocated (kept across updates).
//!
//! Not defaulted: feature-gated fields (HPA `selectionStrategy`, pod-level resources),
//! `nodePort` allocation, and the fields only a Pod (not a template) gets are limited to
//! `enableServiceLinks` and requests copied from limits.

use serde_json::{Map, Value, json};

use crate::quantity;

/// Fills in `object` (of kind `kind`, e.g. `Deployment`) as a server would before storing
/// it. `existing` is the stored object on an update; `next_ip` hands out cluster IPs.
pub fn default_object(
    kind: &str,
    object: &mut Value,
    existing: Option<&Value>,
    next_ip: &mut dyn FnMut() -> String,
) {
    match kind {
        "Deployment" => {
            if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
                deployment_spec(spec);
                if let Some(t) = spec.get_mut("template") {
                    pod_template(t);
                }
            }
        }
        "ReplicaSet" => {
            if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
                put(spec, "replicas", json!(1));
                if let Some(t) = spec.get_mut("template") {
                    pod_template(t);
                }
            }
        }
        "Pod" => {
            if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
                pod_spec(spec);
                put(spec, "enableServiceLinks", json!(true));
                for list in ["containers", "initContainers"] {
                    for c in items(spec, list) {
                        requests_from_limits(c);
                    }
                }
            }
        }
        "Service" => service(object, existing, next_ip),
        "Secret" => secret(object),
        "Namespace" => namespace(object),
        "PersistentVolumeClaim" => {
            if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
                put(spec, "volumeMode", json!("Filesystem"));
                if let Some(r) = spec.get_mut("resources").and_then(Value::as_object_mut) {
                    resource_lists(r);
                }
            }
            if existing.is_none() {
                put(status_of(object), "phase", json!("Pending"));
            }
        }
        "HorizontalPodAutoscaler" => hpa(object),
        "NetworkPolicy" => network_policy(object),
        _ => {}
    }
}

/// Sets `key` when absent.
fn put(map: &mut Map<String, Value>, key: &str, value: Value) {
    map.entry(key.to_owned()).or_insert(value);
}

/// The objects in list `key` of `map`.
fn items<'a>(
    map: &'a mut Map<String, Value>,
    key: &str,
) -> impl Iterator<Item = &'a mut Map<String, Value>> {
    map.get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
}

fn status_of(object: &mut Value) -> &mut Map<String, Value> {
    if !object.get("status").is_some_and(Value::is_object) {
        object["status"] = json!({});
    }
    object["status"]
        .as_object_mut()
        .expect("status was just made an object")
}

fn deployment_spec(spec: &mut Map<String, Value>) {
    put(spec, "replicas", json!(1));
    put(spec, "revisionHistoryLimit", json!(10));
    put(spec, "progressDeadlineSeconds", json!(600));
    let strategy = spec.entry("strategy").or_insert_with(|| json!({}));
    if let Some(s) = strategy.as_object_mut() {
        put(s, "type", json!("RollingUpdate"));
        if s.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
            let ru = s.entry("rollingUpdate").or_insert_with(|| json!({}));
            if let Some(ru) = ru.as_object_mut() {
                put(ru, "maxUnavailable", json!("25%"));
                put(ru, "maxSurge", json!("25%"));
            }
        }
    }
}

fn pod_template(template: &mut Value) {
    if let Some(spec) = template.get_mut("spec").and_then(Value::as_object_mut) {
        pod_spec(spec);
    }
}

fn pod_spec(spec: &mut Map<String, Value>) {
    put(spec, "dnsPolicy", json!("ClusterFirst"));
    put(spec, "restartPolicy", json!("Always"));
    put(spec, "securityContext", json!({}));
    put(spec, "terminationGracePeriodSeconds", json!(30));
    put(spec, "schedulerName", json!("default-scheduler"));
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        for c in items(spec, list) {
            container(c);
        }
    }
    for v in items(spec, "volumes") {
        volume(v);
    }
}

fn container(c: &mut Map<String, Value>) {
    if !c.contains_key("imagePullPolicy") {
        let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
        let policy = if image_tag(image) == "latest" {
            "Always"
        } else {
            "IfNotPresent"
        };
        c.insert("imagePullPolicy".into(), json!(policy));
    }
    put(c, "terminationMessagePath", json!("/dev/termination-log"));
    put(c, "terminationMessagePolicy", json!("File"));
    for p in items(c, "ports") {
        put(p, "protocol", json!("TCP"));
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe).and_then(Value::as_object_mut) {
            put(p, "timeoutSeconds", json!(1));
            put(p, "periodSeconds", json!(10));
            put(p, "successThreshold", json!(1));
            put(p, "failureThreshold", json!(3));
            if let Some(h) = p.get_mut("httpGet").and_then(Value::as_object_mut) {
                put(h, "path", json!("/"));
                put(h, "scheme", json!("HTTP"));
            }
        }
    }
    for e in items(c, "env") {
        if let Some(f) = e
            .get_mut("valueFrom")
            .and_then(|v| v.get_mut("fieldRef"))
            .and_then(Value::as_object_mut)
        {
            put(f, "apiVersion", json!("v1"));
        }
    }
    if let Some(r) = c.get_mut("resources").and_then(Value::as_object_mut) {
        resource_lists(r);
    }
}

/// `requests` and `limits` quantities rounded up to milli units, in canonical form.
fn resource_lists(r: &mut Map<String, Value>) {
    for list in ["requests", "limits"] {
        if let Some(l) = r.get_mut(list).and_then(Value::as_object_mut) {
            for v in l.values_mut() {
                if let Some(c) = quantity::canonical_value(v, true) {
                    *v = c;
                }
            }
        }
    }
}

/// A Pod's requests default to its limits where unset.
fn requests_from_limits(c: &mut Map<String, Value>) {
    let Some(r) = c.get_mut("resources").and_then(Value::as_object_mut) else {
        return;
    };
    let Some(limits) = r.get("limits").and_then(Value::as_object).cloned() else {
        return;
    };
    let requests = r.entry("requests").or_insert_with(|| json!({}));
    if let Some(requests) = requests.as_object_mut() {
        for (k, v) in limits {
            requests.entry(k).or_insert(v);
        }
    }
}

fn volume(v: &mut Map<String, Value>) {
    let sources = v.keys().filter(|k| *k != "name").count();
    if sources == 0 {
        v.insert("emptyDir".into(), json!({}));
    }
    for (source, mode) in [
        ("secret", 420),
        ("configMap", 420),
        ("downwardAPI", 420),
        ("projected", 420),
    ] {
        if let Some(s) = v.get_mut(source).and_then(Value::as_object_mut) {
            put(s, "defaultMode", json!(mode));
        }
    }
    if let Some(size) = v.get_mut("emptyDir").and_then(|e| e.get_mut("sizeLimit"))
        && let Some(c) = quantity::canonical_value(size, false)
    {
        *size = c;
    }
}

/// The tag `parsers.ParseImageName` finds: `latest` when there is neither tag nor digest.
fn image_tag(image: &str) -> &str {
    let (name, digest) = match image.split_once('@') {
        Some((n, _)) => (n, true),
        None => (image, false),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.split_once(':') {
        Some((_, tag)) => tag,
        None if digest => "",
        None => "latest",
    }
}

fn service(object: &mut Value, existing: Option<&Value>, next_ip: &mut dyn FnMut() -> String) {
    let old = existing.and_then(|e| e.get("spec"));
    let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    put(spec, "sessionAffinity", json!("None"));
    put(spec, "type", json!("ClusterIP"));
    for p in items(spec, "ports") {
        put(p, "protocol", json!("TCP"));
        if !p.contains_key("targetPort")
            && let Some(port) = p.get("port").cloned()
        {
            p.insert("targetPort".into(), port);
        }
    }
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_owned();
    if ty == "ExternalName" {
        return;
    }
    if matches!(ty.as_str(), "NodePort" | "LoadBalancer") {
        put(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if ty == "LoadBalancer" {
        put(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    put(spec, "internalTrafficPolicy", json!("Cluster"));
    // Allocated values stay what they were (the REST strategy carries them over).
    for f in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
        if !spec.contains_key(f)
            && let Some(v) = old.and_then(|o| o.get(f))
        {
            spec.insert(f.into(), v.clone());
        }
    }
    if !spec.contains_key("clusterIP") {
        let ip = spec
            .get("clusterIPs")
            .and_then(|v| v.get(0))
            .cloned()
            .unwrap_or_else(|| json!(next_ip()));
        spec.insert("clusterIP".into(), ip);
    }
    if !spec.contains_key("clusterIPs") {
        let ip = spec["clusterIP"].clone();
        spec.insert("clusterIPs".into(), json!([ip]));
    }
    put(spec, "ipFamilies", json!(["IPv4"]));
    put(spec, "ipFamilyPolicy", json!("SingleStack"));
    if existing.is_none() {
        put(status_of(object), "loadBalancer", json!({}));
    }
}

fn secret(object: &mut Value) {
    let Some(m) = object.as_object_mut() else {
        return;
    };
    put(m, "type", json!("Opaque"));
    if let Some(Value::Object(string_data)) = m.remove("stringData") {
        let data = m.entry("data").or_insert_with(|| json!({}));
        if let Some(data) = data.as_object_mut() {
            for (k, v) in string_data {
                let text = v.as_str().unwrap_or_default();
                data.insert(k, json!(base64(text.as_bytes())));
            }
        }
    }
}

fn namespace(object: &mut Value) {
    if let Some(name) = object["metadata"]["name"].as_str().map(str::to_owned) {
        if !object["metadata"]["labels"].is_object() {
            object["metadata"]["labels"] = json!({});
        }
        object["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
    }
    if !object.get("spec").is_some_and(Value::is_object) {
        object["spec"] = json!({});
    }
    if let Some(spec) = object["spec"].as_object_mut() {
        put(spec, "finalizers", json!(["kubernetes"]));
    }
    put(status_of(object), "phase", json!("Active"));
}

fn hpa(object: &mut Value) {
    let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    put(spec, "minReplicas", json!(1));
    if spec
        .get("metrics")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        spec.insert(
            "metrics".into(),
            json!([{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 80}}}]),
        );
    }
    for m in items(spec, "metrics") {
        for source in m.values_mut().filter_map(Value::as_object_mut) {
            for t in ["target", "current"] {
                if let Some(t) = source.get_mut(t).and_then(Value::as_object_mut) {
                    for f in ["value", "averageValue"] {
                        if let Some(v) = t.get_mut(f)
                            && let Some(c) = quantity::canonical_value(v, false)
                        {
                            *v = c;
                        }
                    }
                }
            }
        }
    }
    if let Some(b) = spec.get_mut("behavior").and_then(Value::as_object_mut) {
        let up = b.entry("scaleUp").or_insert_with(|| json!({}));
        if let Some(up) = up.as_object_mut() {
            put(up, "stabilizationWindowSeconds", json!(0));
            put(up, "selectPolicy", json!("Max"));
            put(
                up,
                "policies",
                json!([{"type": "Pods", "value": 4, "periodSeconds": 15},
                       {"type": "Percent", "value": 100, "periodSeconds": 15}]),
            );
        }
        let down = b.entry("scaleDown").or_insert_with(|| json!({}));
        if let Some(down) = down.as_object_mut() {
            put(down, "selectPolicy", json!("Max"));
            put(
                down,
                "policies",
                json!([{"type": "Percent", "value": 100, "periodSeconds": 15}]),
            );
        }
    }
}

fn network_policy(object: &mut Value) {
    let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    for direction in ["ingress", "egress"] {
        for rule in items(spec, direction) {
            for p in items(rule, "ports") {
                put(p, "protocol", json!("TCP"));
            }
        }
    }
    if spec
        .get("policyTypes")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        let egress = spec
            .get("egress")
            .and_then(Value::as_array)
            .is_some_and(|e| !e.is_empty());
        let types = if egress {
            json!(["Ingress", "Egress"])
        } else {
            json!(["Ingress"])
        };
        spec.insert("policyTypes".into(), types);
    }
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ABC[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaulted(kind: &str, mut v: Value) -> Value {
        let mut n = 0;
        default_object(kind, &mut v, None, &mut || {
            n += 1;
            format!("10.96.0.{n}")
        });
        v
    }

    #[test]
    fn deployment_and_pod_template_defaults() {
        let d = defaulted(
            "Deployment",
            json!({"spec": {"template": {"spec": {"containers": [{
                "name": "web", "image": "r/web:1.2",
                "ports": [{"containerPort": 8080}],
                "readinessProbe": {"httpGet": {"path": "/health", "port": 8080}},
                "resources": {"limits": {"cpu": "1000m", "memory": "1024Mi"},
                              "requests": {"cpu": 0.5, "memory": "0.5Gi"}},
            }]}}}}),
        );
        let spec = &d["spec"];
        assert_eq!(spec["replicas"], 1);
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(spec["progressDeadlineSeconds"], 600);
        assert_eq!(
            spec["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        let pod = &spec["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Always");
        assert_eq!(pod["dnsPolicy"], "ClusterFirst");
        assert_eq!(pod["schedulerName"], "default-scheduler");
        assert_eq!(pod["securityContext"], json!({}));
        assert_eq!(pod["terminationGracePeriodSeconds"], 30);
        assert!(
            pod.get("enableServiceLinks").is_none(),
            "templates do not get it"
        );
        let c = &pod["containers"][0];
        assert_eq!(c["imagePullPolicy"], "IfNotPresent");
        assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(c["terminationMessagePolicy"], "File");
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        let probe = &c["readinessProbe"];
        assert_eq!(
            (
                &probe["timeoutSeconds"],
                &probe["periodSeconds"],
                &probe["successThreshold"],
                &probe["failureThreshold"],
                &probe["httpGet"]["scheme"],
            ),
            (&json!(1), &json!(10), &json!(1), &json!(3), &json!("HTTP"))
        );
        assert_eq!(
            c["resources"],
            json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m", "memory": "512Mi"}})
        );
    }

    #[test]
    fn pull_policy_follows_the_tag() {
        for (image, want) in [
            ("web", "Always"),
            ("web:latest", "Always"),
            ("registry:5000/web", "Always"),
            ("registry:5000/web:1", "IfNotPresent"),
            ("r/web@sha256:abc", "IfNotPresent"),
            ("r/web:latest@sha256:abc", "Always"),
        ] {
            let d = defaulted(
                "Pod",
                json!({"spec": {"containers": [{"name": "c", "image": image}]}}),
            );
            assert_eq!(
                d["spec"]["containers"][0]["imagePullPolicy"], want,
                "{image}"
            );
        }
    }

    #[test]
    fn set_fields_are_kept() {
        let d = defaulted(
            "Deployment",
            json!({"spec": {"replicas": 3, "strategy": {"type": "Recreate"},
                "template": {"spec": {"restartPolicy": "Never", "containers": [
                    {"name": "c", "image": "x", "imagePullPolicy": "Never"}]}}}}),
        );
        assert_eq!(d["spec"]["replicas"], 3);
        assert_eq!(d["spec"]["strategy"], json!({"type": "Recreate"}));
        assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Never");
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
            "Never"
        );
    }

    #[test]
    fn service_defaults_and_kept_cluster_ip() {
        let s = defaulted(
            "Service",
            json!({"spec": {"selector": {"a": "b"}, "ports": [{"port": 80}, {"port": 81, "targetPort": "http"}]}}),
        );
        let spec = &s["spec"];
        assert_eq!(spec["type"], "ClusterIP");
        assert_eq!(spec["sessionAffinity"], "None");
        assert_eq!(spec["clusterIP"], "10.96.0.1");
        assert_eq!(spec["clusterIPs"], json!(["10.96.0.1"]));
        assert_eq!(spec["ipFamilies"], json!(["IPv4"]));
        assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
        assert_eq!(spec["internalTrafficPolicy"], "Cluster");
        assert_eq!(spec["ports"][0]["protocol"], "TCP");
        assert_eq!(spec["ports"][0]["targetPort"], 80);
        assert_eq!(spec["ports"][1]["targetPort"], "http");
        assert!(spec.get("externalTrafficPolicy").is_none());
        // An update without the allocated fields keeps them.
        let mut update = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}]}});
        default_object("Service", &mut update, Some(&s), &mut || "10.96.9.9".into());
        assert_eq!(update["spec"]["clusterIP"], "10.96.0.1");
        assert_eq!(update["spec"]["externalTrafficPolicy"], "Cluster");
    }

    #[test]
    fn secret_string_data_becomes_data() {
        let s = defaulted(
            "Secret",
            json!({"stringData": {"a": "hello", "b": "hi!?"}, "data": {"c": "eA=="}}),
        );
        assert_eq!(s["type"], "Opaque");
        assert!(s.get("stringData").is_none());
        assert_eq!(
            s["data"],
            json!({"a": "aGVsbG8=", "b": "aGkhPw==", "c": "eA=="})
        );
    }

    #[test]
    fn other_kinds() {
        let ns = defaulted("Namespace", json!({"metadata": {"name": "shop"}}));
        assert_eq!(
            ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "shop"
        );
        assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(ns["status"]["phase"], "Active");
        let np = defaulted(
            "NetworkPolicy",
            json!({"spec": {"podSelector": {}, "ingress": [{"ports": [{"port": 8080}]}], "egress": [{}]}}),
        );
        assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
        assert_eq!(np["spec"]["ingress"][0]["ports"][0]["protocol"], "TCP");
        let hpa = defaulted(
            "HorizontalPodAutoscaler",
            json!({"spec": {"maxReplicas": 3, "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}}),
        );
        assert_eq!(hpa["spec"]["minReplicas"], 1);
        assert_eq!(
            hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            80
        );
        assert_eq!(
            hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"],
            60
        );
        assert_eq!(
            hpa["spec"]["behavior"]["scaleUp"]["policies"][0]["value"],
            4
        );
        let pvc = defaulted(
            "PersistentVolumeClaim",
            json!({"spec": {"resources": {"requests": {"storage": "1024Mi"}}}}),
        );
        assert_eq!(pvc["spec"]["volumeMode"], "Filesystem");
        assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "1Gi");
        let pod = defaulted(
            "Pod",
            json!({"spec": {"volumes": [{"name": "v"}, {"name": "s", "secret": {"secretName": "x"}}],
                "containers": [{"name": "c", "image": "x:1", "resources": {"limits": {"cpu": "2"}}}]}}),
        );
        assert_eq!(pod["spec"]["enableServiceLinks"], true);
        assert_eq!(pod["spec"]["volumes"][0]["emptyDir"], json!({}));
        assert_eq!(pod["spec"]["volumes"][1]["secret"]["defaultMode"], 420);
        assert_eq!(
            pod["spec"]["containers"][0]["resources"]["requests"]["cpu"],
            "2"
        );
    }
}
