//! Admission the controller's pod creation goes through, as a real API server's: a
//! ResourceQuota's `hard.pods` refuses a pod beyond it, and the ReplicaSet gets the
//! `FailedCreate` Event a real ReplicaSet controller records (updated on every retry).
//! Only the pod count is enforced; cpu and memory, `status.used` and LimitRange
//! defaulting are not.

use serde_json::{Value, json};

use crate::store::{State, kind_named};

/// The refusal message when a new pod in `ns` would exceed a quota's `hard.pods`.
pub(crate) fn pod_refusal(st: &State, ns: &str, pod: &str) -> Option<String> {
    let (qk, pk) = (kind_named("ResourceQuota")?, kind_named("Pod")?);
    let used = st.list(pk, Some(ns)).len();
    st.list(qk, Some(ns)).into_iter().find_map(|q| {
        let hard: usize = match &q["spec"]["hard"]["pods"] {
            Value::String(s) => s.parse().ok()?,
            Value::Number(n) => usize::try_from(n.as_u64()?).ok()?,
            _ => return None,
        };
        (used >= hard).then(|| {
            format!(
                "pods \"{pod}\" is forbidden: exceeded quota: {}, requested: pods=1, used: pods={used}, limited: pods={hard}",
                q["metadata"]["name"].as_str().unwrap_or_default()
            )
        })
    })
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
