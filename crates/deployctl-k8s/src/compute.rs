//! The container's compute resources: deployctl's defaults (one place), the user's
//! `kubernetes.deployment.resources` over them value by value, and Kubernetes quantity
//! comparison so that a default never makes a request exceed its limit.
//!
//! Namespaces with a compute `ResourceQuota` reject pods without requests and limits, so
//! every Deployment gets both. A default limit below a request the user set is raised to
//! that request; a default request above a limit the user set is lowered to that limit.
//! What the user set explicitly is never changed.

use std::collections::BTreeMap;

use deployctl_config::Resources;

/// Default CPU request.
pub(crate) const DEFAULT_CPU_REQUEST: &str = "100m";
/// Default memory request.
pub(crate) const DEFAULT_MEMORY_REQUEST: &str = "128Mi";
/// Default CPU limit.
pub(crate) const DEFAULT_CPU_LIMIT: &str = "500m";
/// Default memory limit.
pub(crate) const DEFAULT_MEMORY_LIMIT: &str = "256Mi";

/// `requests`/`limits` → `cpu`/`memory` → quantity, as the Deployment template renders it.
pub(crate) type ResourceMap = BTreeMap<&'static str, BTreeMap<&'static str, String>>;

/// The resources a container gets: the user's values over the defaults, adjusted so that
/// no request exceeds its limit because of a default.
pub(crate) fn container_resources(user: &Resources) -> ResourceMap {
    let mut requests = BTreeMap::new();
    let mut limits = BTreeMap::new();
    for (name, user_request, user_limit, default_request, default_limit) in [
        (
            "cpu",
            &user.requests.cpu,
            &user.limits.cpu,
            DEFAULT_CPU_REQUEST,
            DEFAULT_CPU_LIMIT,
        ),
        (
            "memory",
            &user.requests.memory,
            &user.limits.memory,
            DEFAULT_MEMORY_REQUEST,
            DEFAULT_MEMORY_LIMIT,
        ),
    ] {
        let (request, limit) = match (user_request, user_limit) {
            (Some(r), Some(l)) => (r.clone(), l.clone()),
            (Some(r), None) => {
                let limit = if exceeds(r, default_limit) {
                    r.clone()
                } else {
                    default_limit.to_owned()
                };
                (r.clone(), limit)
            }
            (None, Some(l)) => {
                let request = if exceeds(default_request, l) {
                    l.clone()
                } else {
                    default_request.to_owned()
                };
                (request, l.clone())
            }
            (None, None) => (default_request.to_owned(), default_limit.to_owned()),
        };
        requests.insert(name, request);
        limits.insert(name, limit);
    }
    let mut out = BTreeMap::new();
    out.insert("requests", requests);
    out.insert("limits", limits);
    out
}

/// Whether quantity `a` is larger than `b`; `false` when either does not parse (the API
/// server reports a malformed quantity itself).
fn exceeds(a: &str, b: &str) -> bool {
    matches!((quantity(a), quantity(b)), (Some(a), Some(b)) if a > b)
}

/// A Kubernetes quantity (`100m`, `0.5`, `128Mi`, `1G`, `1e3`) as a number of base units.
fn quantity(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '+' | '-')))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024_f64,
        "Mi" => 1024_f64.powi(2),
        "Gi" => 1024_f64.powi(3),
        "Ti" => 1024_f64.powi(4),
        "Pi" => 1024_f64.powi(5),
        "Ei" => 1024_f64.powi(6),
        exponent => {
            let e: i32 = exponent.strip_prefix(['e', 'E'])?.parse().ok()?;
            10_f64.powi(e)
        }
    };
    Some(number * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resources(yaml: &str) -> Resources {
        serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{e}"))
    }

    fn flat(m: &ResourceMap) -> Vec<String> {
        m.iter()
            .flat_map(|(which, v)| v.iter().map(move |(k, q)| format!("{which}.{k}={q}")))
            .collect()
    }

    #[test]
    fn quantities_compare_across_units() {
        assert!(exceeds("1Gi", "256Mi"));
        assert!(exceeds("1", "500m"));
        assert!(exceeds("0.6", "500m"));
        assert!(!exceeds("500m", "500m"));
        assert!(exceeds("300M", "256Mi"));
        assert!(!exceeds("200M", "256Mi"));
        assert!(exceeds("1e9", "256Mi"));
        assert!(!exceeds("lots", "1"));
    }

    #[test]
    fn defaults_fill_what_the_user_left_out() {
        assert_eq!(
            flat(&container_resources(&Resources::default())),
            [
                "limits.cpu=500m",
                "limits.memory=256Mi",
                "requests.cpu=100m",
                "requests.memory=128Mi"
            ]
        );
        let some = resources("requests: {cpu: 250m}\nlimits: {memory: 200Mi}\n");
        assert_eq!(
            flat(&container_resources(&some)),
            [
                "limits.cpu=500m",
                "limits.memory=200Mi",
                "requests.cpu=250m",
                "requests.memory=128Mi"
            ]
        );
    }

    #[test]
    fn a_default_never_makes_a_request_exceed_its_limit() {
        let big = resources("requests: {cpu: \"2\", memory: 1Gi}\n");
        assert_eq!(
            flat(&container_resources(&big)),
            [
                "limits.cpu=2",
                "limits.memory=1Gi",
                "requests.cpu=2",
                "requests.memory=1Gi"
            ]
        );
        let small = resources("limits: {cpu: 50m, memory: 64Mi}\n");
        assert_eq!(
            flat(&container_resources(&small)),
            [
                "limits.cpu=50m",
                "limits.memory=64Mi",
                "requests.cpu=50m",
                "requests.memory=64Mi"
            ]
        );
        // What the user set is theirs, even when it is inconsistent.
        let theirs = resources("requests: {memory: 1Gi}\nlimits: {memory: 512Mi}\n");
        let got = container_resources(&theirs);
        assert_eq!(got["requests"]["memory"], "1Gi");
        assert_eq!(got["limits"]["memory"], "512Mi");
    }
}
