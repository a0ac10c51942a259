//! Quota-aware rollouts, the pure part: whether the pods a rollout brings up at its peak
//! (`replicas + maxSurge`) fit the namespace's ResourceQuotas, with LimitRange defaults for
//! containers that set no requests or limits, as the API server's admission would charge
//! them. A rollout that cannot fit otherwise hangs until its deadline with pods never
//! created; this lets a deploy fail before it applies anything, with the numbers.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::cluster::{Cluster, managed_kind};
use crate::error::{Error, api_err};
use crate::quantity::quantity_value;
use crate::render::Manifest;

/// One ResourceQuota as the check sees it: its `hard` and its `status.used` (empty when
/// the quota has no status yet, or is about to be created).
#[derive(Debug, Clone)]
pub(crate) struct QuotaState {
    pub name: String,
    pub hard: Value,
    pub used: Value,
}

/// The resources of a quota a Deployment's pods are charged against.
const CHARGED: &[&str] = &[
    "pods",
    "requests.cpu",
    "cpu",
    "requests.memory",
    "memory",
    "limits.cpu",
    "limits.memory",
];

/// What one pod of `template` (`spec.template`) is charged: `pods` 1 and, per resource,
/// the sum over containers of the request (else the limit, else the LimitRange default
/// request) and the limit (else the LimitRange default).
fn per_pod(template: &Value, defaults: &LimitDefaults) -> BTreeMap<&'static str, f64> {
    let mut out = BTreeMap::from([("pods", 1.0)]);
    let containers = template
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for c in &containers {
        for res in ["cpu", "memory"] {
            let limit = c
                .pointer(&format!("/resources/limits/{res}"))
                .and_then(quantity_value)
                .or_else(|| defaults.limit.get(res).copied());
            let request = c
                .pointer(&format!("/resources/requests/{res}"))
                .and_then(quantity_value)
                .or_else(|| {
                    c.pointer(&format!("/resources/limits/{res}"))
                        .and_then(quantity_value)
                })
                .or_else(|| defaults.request.get(res).copied());
            let (rk, lk, plain) = if res == "cpu" {
                ("requests.cpu", "limits.cpu", "cpu")
            } else {
                ("requests.memory", "limits.memory", "memory")
            };
            if let Some(r) = request {
                *out.entry(rk).or_default() += r;
                *out.entry(plain).or_default() += r;
            }
            if let Some(l) = limit {
                *out.entry(lk).or_default() += l;
            }
        }
    }
    out
}

/// LimitRange container defaults (`defaultRequest`, `default`), by resource.
#[derive(Debug, Clone, Default)]
pub(crate) struct LimitDefaults {
    pub request: BTreeMap<String, f64>,
    pub limit: BTreeMap<String, f64>,
}

impl LimitDefaults {
    /// From LimitRange objects (or manifests): the first `Container` item's defaults.
    pub(crate) fn from_limit_ranges<'a>(ranges: impl IntoIterator<Item = &'a Value>) -> Self {
        let mut out = Self::default();
        for lr in ranges {
            let items = lr
                .pointer("/spec/limits")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for item in items.iter().filter(|i| i["type"] == "Container") {
                for (field, map) in [
                    ("defaultRequest", &mut out.request),
                    ("default", &mut out.limit),
                ] {
                    if let Some(o) = item[field].as_object() {
                        for (k, v) in o {
                            if let Some(q) = quantity_value(v) {
                                map.entry(k.clone()).or_insert(q);
                            }
                        }
                    }
                }
            }
        }
        out
    }
}

/// The most pods a rolling update of `deployment` runs at once: `replicas` plus
/// `maxSurge` (a number, or a percentage of replicas rounded up; 25% when unset).
fn peak_pods(deployment: &Value) -> (f64, f64) {
    let replicas = deployment
        .pointer("/spec/replicas")
        .and_then(Value::as_f64)
        .unwrap_or(1.0);
    let surge = match deployment.pointer("/spec/strategy/rollingUpdate/maxSurge") {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
        Some(Value::String(p)) => p
            .strip_suffix('%')
            .and_then(|p| p.parse::<f64>().ok())
            .map_or(0.0, |p| (replicas * p / 100.0).ceil()),
        _ => (replicas * 0.25).ceil(),
    };
    let recreate = deployment.pointer("/spec/strategy/type") == Some(&Value::from("Recreate"));
    (replicas, if recreate { 0.0 } else { surge })
}

/// Checks the rollout of `deployment` against every quota: the pods at the peak need
/// `(replicas + surge) × per pod`; a quota has room for `hard − used`, plus what the app's
/// live pods (`live_pods` of the live template `live_template`) already use, since they are
/// in `used` and the peak counts them again. Returns one line per resource that does not
/// fit, with the numbers.
pub(crate) fn shortfalls(
    deployment: &Value,
    live_template: Option<&Value>,
    live_pods: f64,
    defaults: &LimitDefaults,
    quotas: &[QuotaState],
) -> Vec<String> {
    let (replicas, surge) = peak_pods(deployment);
    let peak = replicas + surge;
    let Some(template) = deployment.pointer("/spec/template") else {
        return Vec::new();
    };
    let need = per_pod(template, defaults);
    let own = live_template
        .map(|t| per_pod(t, defaults))
        .unwrap_or_default();
    let mut out = Vec::new();
    for q in quotas {
        for res in CHARGED {
            let Some(hard) = q.hard.get(*res).and_then(quantity_value) else {
                continue;
            };
            let Some(per) = need.get(res).copied() else {
                continue;
            };
            let used = q.used.get(*res).and_then(quantity_value).unwrap_or(0.0);
            let mine = own.get(res).copied().unwrap_or(0.0) * live_pods;
            let room = hard - used + mine;
            let wanted = per * peak;
            if wanted > room + 1e-9 {
                out.push(format!(
                    "ResourceQuota {}: {res} needs {} for {peak} pods ({replicas} replicas + {surge} surge, {} each) but has room for {} (hard {}, used {}{})",
                    q.name,
                    show(res, wanted),
                    show(res, per),
                    show(res, room.max(0.0)),
                    show(res, hard),
                    show(res, used),
                    if mine > 0.0 {
                        format!(", {} of it by this app's {live_pods} live pods", show(res, mine))
                    } else {
                        String::new()
                    }
                ));
            }
        }
    }
    out
}

impl Cluster {
    /// Before applying `manifests`: fails with [`Error::QuotaExceeded`] when the
    /// Deployment's rollout cannot fit the namespace's ResourceQuotas (the rendered ones'
    /// `hard`, the live ones' `status.used`). Reads only; without a quota, nothing to check.
    pub(crate) async fn check_quota(&self, manifests: &[Manifest]) -> Result<(), Error> {
        let Some(deployment) = manifests.iter().find(|m| m.kind == "Deployment") else {
            return Ok(());
        };
        let (Some(rq), Some(lr), Some(dep)) = (
            managed_kind("v1", "ResourceQuota"),
            managed_kind("v1", "LimitRange"),
            managed_kind("apps/v1", "Deployment"),
        ) else {
            return Ok(());
        };
        let list = |kind| async move {
            match self.dynamic(kind).list(&Default::default()).await {
                Ok(l) => Ok(l
                    .items
                    .into_iter()
                    .filter_map(|o| serde_json::to_value(o).ok())
                    .collect::<Vec<Value>>()),
                // A namespace not created yet, a server without the kind: nothing live.
                Err(e) if crate::error::is_not_found(&e) => Ok(Vec::new()),
                Err(e) => Err(api_err(
                    "list",
                    format!("{} in {}", kind.kind, self.namespace),
                    e,
                )),
            }
        };
        let live_quotas = list(rq).await?;
        let rendered_quotas: Vec<&Manifest> = manifests
            .iter()
            .filter(|m| m.kind == "ResourceQuota")
            .collect();
        let mut quotas: Vec<QuotaState> = Vec::new();
        for m in &rendered_quotas {
            let used = live_quotas
                .iter()
                .find(|q| q.pointer("/metadata/name") == Some(&Value::from(m.name.as_str())))
                .and_then(|q| q.pointer("/status/used").cloned())
                .unwrap_or(Value::Null);
            quotas.push(QuotaState {
                name: m.name.clone(),
                hard: m
                    .value
                    .pointer("/spec/hard")
                    .cloned()
                    .unwrap_or(Value::Null),
                used,
            });
        }
        for q in &live_quotas {
            let name = q["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if rendered_quotas.iter().all(|m| m.name != name) {
                quotas.push(QuotaState {
                    name,
                    hard: q.pointer("/spec/hard").cloned().unwrap_or(Value::Null),
                    used: q.pointer("/status/used").cloned().unwrap_or(Value::Null),
                });
            }
        }
        if quotas.is_empty() {
            return Ok(());
        }
        let mut ranges: Vec<Value> = manifests
            .iter()
            .filter(|m| m.kind == "LimitRange")
            .map(|m| m.value.clone())
            .collect();
        ranges.extend(list(lr).await?);
        let defaults = LimitDefaults::from_limit_ranges(&ranges);
        let live = self
            .dynamic(dep)
            .get_opt(&deployment.name)
            .await
            .map_err(|e| api_err("get", format!("Deployment/{}", deployment.name), e))?
            .and_then(|o| serde_json::to_value(o).ok());
        let live_template = live.as_ref().and_then(|d| d.pointer("/spec/template"));
        let live_pods = live
            .as_ref()
            .and_then(|d| d.pointer("/status/replicas"))
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
        let lines = shortfalls(
            &deployment.value,
            live_template,
            live_pods,
            &defaults,
            &quotas,
        );
        if lines.is_empty() {
            Ok(())
        } else {
            Err(Error::QuotaExceeded {
                deployment: deployment.name.clone(),
                namespace: self.namespace.clone(),
                shortfalls: lines,
            })
        }
    }
}

/// A value for a message: cpu in millicores (`1500m`), memory in Mi, pods as a count.
fn show(res: &str, v: f64) -> String {
    if res.ends_with("cpu") {
        format!("{}m", (v * 1000.0).round())
    } else if res.ends_with("memory") {
        format!("{}Mi", (v / 1_048_576.0 * 10.0).round() / 10.0)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn deployment(replicas: i64, surge: Value, requests: Value) -> Value {
        json!({"spec": {"replicas": replicas,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge}},
            "template": {"spec": {"containers": [{"name": "web", "resources": requests}]}}}})
    }

    fn quota(hard: Value, used: Value) -> QuotaState {
        QuotaState {
            name: "tenant-quota".into(),
            hard,
            used,
        }
    }

    #[test]
    fn the_peak_is_replicas_plus_surge_and_percentages_round_up() {
        assert_eq!(peak_pods(&deployment(3, json!(1), json!({}))), (3.0, 1.0));
        assert_eq!(
            peak_pods(&deployment(3, json!("25%"), json!({}))),
            (3.0, 1.0)
        );
        assert_eq!(
            peak_pods(&deployment(8, json!("50%"), json!({}))),
            (8.0, 4.0)
        );
    }

    #[test]
    fn a_rollout_that_fits_has_no_shortfall() {
        let d = deployment(
            2,
            json!(1),
            json!({"requests": {"cpu": "100m"}, "limits": {"cpu": "200m"}}),
        );
        let q = quota(json!({"pods": "10", "requests.cpu": "1"}), json!({}));
        assert!(shortfalls(&d, None, 0.0, &LimitDefaults::default(), &[q]).is_empty());
    }

    #[test]
    fn pods_and_cpu_beyond_the_headroom_are_reported_with_numbers() {
        let d = deployment(3, json!(1), json!({"requests": {"cpu": "500m"}}));
        let q = quota(
            json!({"pods": "5", "requests.cpu": "2"}),
            json!({"pods": "2", "requests.cpu": "500m"}),
        );
        let lines = shortfalls(&d, None, 0.0, &LimitDefaults::default(), &[q]);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[0].contains("pods needs 4 for 4 pods (3 replicas + 1 surge, 1 each) but has room for 3 (hard 5, used 2)"),
            "{lines:?}"
        );
        assert!(
            lines[1].contains("requests.cpu needs 2000m") && lines[1].contains("room for 1500m"),
            "{lines:?}"
        );
    }

    #[test]
    fn containers_without_requests_are_charged_the_limit_range_defaults() {
        let d = deployment(2, json!(0), json!({}));
        let defaults = LimitDefaults::from_limit_ranges([&json!({"spec": {"limits": [{
            "type": "Container",
            "defaultRequest": {"cpu": "100m", "memory": "128Mi"},
            "default": {"cpu": "500m", "memory": "256Mi"}}]}})]);
        let q = quota(
            json!({"limits.memory": "384Mi", "requests.cpu": "1"}),
            json!({}),
        );
        let lines = shortfalls(&d, None, 0.0, &defaults, &[q]);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("limits.memory needs 512Mi"), "{lines:?}");
    }

    #[test]
    fn the_apps_own_live_pods_are_not_counted_twice() {
        let d = deployment(2, json!(1), json!({"requests": {"cpu": "100m"}}));
        let live = d["spec"]["template"].clone();
        // 2 live pods of this app use 2 of 3 pods: the peak of 3 still fits.
        let q = quota(json!({"pods": "3"}), json!({"pods": "2"}));
        assert!(shortfalls(&d, Some(&live), 2.0, &LimitDefaults::default(), &[q]).is_empty());
    }
}
