//! Admission of a new Pod, as a real API server's plugins do it, and the quota usage it keeps:
//!
//! - **LimitRanger**: a `Container` item of a LimitRange in the pod's namespace fills the
//!   requests and limits a container lacks (`defaultRequest`, else `default`, else `max`/`min`,
//!   as `SetDefaults_LimitRangeItem` defaults them), records what it set in the
//!   `kubernetes.io/limit-ranger` annotation, and refuses a container outside `min`/`max`.
//! - **ResourceQuota**: `pods`, `requests.cpu`/`cpu`, `requests.memory`/`memory`,
//!   `limits.cpu` and `limits.memory`. A pod that lacks a constrained resource is refused with
//!   "failed quota: … must specify …"; one that would take usage beyond `hard` with "exceeded
//!   quota: NAME, requested: …, used: …, limited: …" naming only the exceeded resources.
//!   Pods that have finished (`Succeeded`/`Failed`) count for nothing.
//! - [`refresh_quotas`] keeps every quota's `status.hard` and `status.used` current, as the
//!   quota controller does.
//!
//! A refused pod created by a controller gets the `FailedCreate` Event on its ReplicaSet
//! ([`failed_create`]); a refused POST answers 403 `Forbidden`.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::quantity::{from_milli, milli};
use crate::store::{State, kind_named};

/// The compute resources a LimitRange defaults and a quota can constrain.
const COMPUTE: [&str; 2] = ["cpu", "memory"];

/// Admits `pod` (defaulted, about to be created in `ns`): LimitRange defaults are written
/// into it; `Err` is the refusal message.
pub(crate) fn admit_pod(st: &State, ns: &str, pod: &mut Value) -> Result<(), String> {
    let name = pod["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    limit_ranges(st, ns, pod).map_err(|e| forbidden(&name, &e))?;
    quotas(st, ns, pod).map_err(|e| forbidden(&name, &e))
}

fn forbidden(pod: &str, errors: &[String]) -> String {
    let what = if errors.len() == 1 {
        errors[0].clone()
    } else {
        format!("[{}]", errors.join(", "))
    };
    format!("pods \"{pod}\" is forbidden: {what}")
}

fn limit_ranges(st: &State, ns: &str, pod: &mut Value) -> Result<(), Vec<String>> {
    let Some(lk) = kind_named("LimitRange") else {
        return Ok(());
    };
    let items: Vec<Value> = st
        .list(lk, Some(ns))
        .into_iter()
        .flat_map(|lr| lr["spec"]["limits"].as_array().cloned().unwrap_or_default())
        .filter(|item| item["type"] == "Container")
        .collect();
    if items.is_empty() {
        return Ok(());
    }
    let mut set: Vec<String> = Vec::new();
    let mut errors = Vec::new();
    let slots: Vec<(&str, usize)> = ["containers", "initContainers"]
        .into_iter()
        .flat_map(|f| (0..pod["spec"][f].as_array().map_or(0, Vec::len)).map(move |i| (f, i)))
        .collect();
    for (field, i) in slots {
        let c = &mut pod["spec"][field][i];
        let cname = c["name"].as_str().unwrap_or_default().to_owned();
        let (mut req_set, mut lim_set) = (Vec::new(), Vec::new());
        for item in &items {
            for r in COMPUTE {
                let default_limit = item["default"]
                    .get(r)
                    .or_else(|| item["max"].get(r))
                    .cloned();
                let default_request = item["defaultRequest"]
                    .get(r)
                    .cloned()
                    .or_else(|| default_limit.clone())
                    .or_else(|| item["min"].get(r).cloned());
                if c["resources"]["limits"].get(r).is_none()
                    && let Some(v) = default_limit
                {
                    c["resources"]["limits"][r] = v;
                    lim_set.push(r);
                }
                if c["resources"]["requests"].get(r).is_none()
                    && let Some(v) = default_request
                {
                    c["resources"]["requests"][r] = v;
                    req_set.push(r);
                }
                let value = |v: &Value| milli(v).map(|(m, _)| m);
                if let (Some(max), Some(limit)) = (
                    item["max"].get(r).and_then(value),
                    c["resources"]["limits"].get(r).and_then(value),
                ) && limit > max
                {
                    errors.push(format!(
                        "maximum {r} usage per Container is {}, but limit is {}",
                        show(&item["max"][r]),
                        show(&c["resources"]["limits"][r])
                    ));
                }
                if let (Some(min), Some(request)) = (
                    item["min"].get(r).and_then(value),
                    c["resources"]["requests"].get(r).and_then(value),
                ) && request < min
                {
                    errors.push(format!(
                        "minimum {r} usage per Container is {}, but request is {}",
                        show(&item["min"][r]),
                        show(&c["resources"]["requests"][r])
                    ));
                }
            }
        }
        if !req_set.is_empty() {
            set.push(format!(
                "{} request for container {cname}",
                req_set.join(", ")
            ));
        }
        if !lim_set.is_empty() {
            set.push(format!(
                "{} limit for container {cname}",
                lim_set.join(", ")
            ));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if !set.is_empty() {
        pod["metadata"]["annotations"]["kubernetes.io/limit-ranger"] =
            json!(format!("LimitRanger plugin set: {}", set.join("; ")));
    }
    Ok(())
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The quota resource a key of `hard` stands for: (`requests`|`limits`, resource).
fn compute_key(key: &str) -> Option<(&'static str, &'static str)> {
    match key {
        "cpu" | "requests.cpu" => Some(("requests", "cpu")),
        "memory" | "requests.memory" => Some(("requests", "memory")),
        "limits.cpu" => Some(("limits", "cpu")),
        "limits.memory" => Some(("limits", "memory")),
        _ => None,
    }
}

/// A pod's usage of quota `key` in milli units (pods: 1000 per pod), and whether the value
/// is binary SI; `None` when a container lacks the resource. Init containers run one at a
/// time before the others, so the pod needs the larger of their largest and the sum.
fn usage(pod: &Value, key: &str) -> Option<(i128, bool)> {
    if key == "pods" {
        return Some((1000, false));
    }
    let (list, r) = compute_key(key)?;
    let mut binary = true;
    let mut sum_of = |field: &str, sum: bool| -> Option<i128> {
        let mut total = 0i128;
        for c in pod["spec"][field].as_array().into_iter().flatten() {
            let (m, b) = milli(c["resources"][list].get(r)?)?;
            binary &= b;
            total = if sum { total + m } else { total.max(m) };
        }
        Some(total)
    };
    let main = sum_of("containers", true)?;
    let init = sum_of("initContainers", false)?;
    Some((main.max(init), binary))
}

/// Pods of `ns` that still hold quota (not `Succeeded` or `Failed`).
fn live_pods(st: &State, ns: &str) -> Vec<Value> {
    kind_named("Pod")
        .map(|pk| st.list(pk, Some(ns)))
        .unwrap_or_default()
        .into_iter()
        .filter(|p| !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
        .collect()
}

/// The usage of `key` by `pods`, as a quantity.
fn used(pods: &[Value], key: &str) -> String {
    let (total, binary) = pods
        .iter()
        .filter_map(|p| usage(p, key))
        .fold((0i128, true), |(t, b), (m, mb)| (t + m, b && mb));
    if key == "pods" {
        return (total / 1000).to_string();
    }
    from_milli(total, binary && total != 0)
}

fn quotas(st: &State, ns: &str, pod: &Value) -> Result<(), Vec<String>> {
    let Some(qk) = kind_named("ResourceQuota") else {
        return Ok(());
    };
    let pods = live_pods(st, ns);
    for q in st.list(qk, Some(ns)) {
        let qname = q["metadata"]["name"].as_str().unwrap_or_default();
        let hard: BTreeMap<&str, &Value> = q["spec"]["hard"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| *k == "pods" || compute_key(k).is_some())
            .map(|(k, v)| (k.as_str(), v))
            .collect();
        // Every constrained resource must be set on every container.
        let mut missing = Vec::new();
        for key in hard.keys().filter(|k| **k != "pods") {
            let Some((list, r)) = compute_key(key) else {
                continue;
            };
            let lacking: Vec<&str> = ["containers", "initContainers"]
                .iter()
                .flat_map(|f| pod["spec"][*f].as_array().into_iter().flatten())
                .filter(|c| c["resources"][list].get(r).is_none())
                .filter_map(|c| c["name"].as_str())
                .collect();
            if !lacking.is_empty() {
                missing.push(format!("{key} for: {}", lacking.join(",")));
            }
        }
        if !missing.is_empty() {
            return Err(vec![format!(
                "failed quota: {qname}: must specify {}",
                missing.join("; ")
            )]);
        }
        let (mut requested, mut in_use, mut limited) = (Vec::new(), Vec::new(), Vec::new());
        for (key, limit) in &hard {
            let (Some((want, binary)), Some((limit_m, _))) = (usage(pod, key), milli(limit)) else {
                continue;
            };
            let have: i128 = pods
                .iter()
                .filter_map(|p| usage(p, key))
                .map(|(m, _)| m)
                .sum();
            if have + want > limit_m {
                let print = |m: i128| {
                    if *key == "pods" {
                        (m / 1000).to_string()
                    } else {
                        from_milli(m, binary)
                    }
                };
                requested.push(format!("{key}={}", print(want)));
                in_use.push(format!("{key}={}", used(&pods, key)));
                limited.push(format!("{key}={}", show(limit)));
            }
        }
        if !requested.is_empty() {
            return Err(vec![format!(
                "exceeded quota: {qname}, requested: {}, used: {}, limited: {}",
                requested.join(","),
                in_use.join(","),
                limited.join(",")
            )]);
        }
    }
    Ok(())
}

/// Writes every ResourceQuota's `status.hard` and `status.used` where they changed.
pub(crate) fn refresh_quotas(st: &mut State) {
    let Some(qk) = kind_named("ResourceQuota") else {
        return;
    };
    for mut q in st.list(qk, None) {
        let ns = q["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let pods = live_pods(st, &ns);
        let hard = q["spec"]["hard"].clone();
        let mut in_use = serde_json::Map::new();
        for key in hard.as_object().into_iter().flatten().map(|(k, _)| k) {
            if key == "pods" || compute_key(key).is_some() {
                in_use.insert(key.clone(), json!(used(&pods, key)));
            }
        }
        let status = json!({"hard": hard, "used": in_use});
        if q["status"] != status {
            q["status"] = status;
            st.put(qk, &ns, q);
        }
    }
}

/// Records (or updates, counting) the ReplicaSet's `FailedCreate` Event.
pub(crate) fn failed_create(st: &mut State, ns: &str, replica_set: &str, message: &str) {
    let Some(k) = kind_named("Event") else { return };
    let name = format!("{replica_set}.failedcreate");
    let count = st
        .get(k, ns, &name)
        .and_then(|e| e["count"].as_i64())
        .unwrap_or(0);
    st.put(
        k,
        ns,
        json!({
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": {"kind": "ReplicaSet", "name": replica_set, "namespace": ns, "apiVersion": "apps/v1"},
            "reason": "FailedCreate",
            "message": message,
            "type": "Warning",
            "count": count + 1,
            "source": {"component": "replicaset-controller"},
        }),
    );
}
