//! Verification through the API server: a GET of the app's health path via the Service
//! proxy (`/api/v1/namespaces/{ns}/services/{name}:{port}/proxy{path}`), falling back to
//! the proxy of a ready pod (`/api/v1/namespaces/{ns}/pods/{pod}:{port}/proxy{path}`),
//! retried until a deadline. Works wherever the kubeconfig works: no port-forward, no
//! route from this machine into the cluster. Reads only.

use std::time::{Duration, Instant};

use deployctl_core::{Cancellation, Verification};
use k8s_openapi::api::core::v1::Pod;

use crate::cluster::Cluster;
use crate::error::Error;
use crate::observe::service_port;

/// How long one proxied request may take at most (the kube client retries a 503 — what
/// the API server answers while a Service has no ready endpoint — with backoff inside
/// that time).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one proxied request may take at least, however close the deadline.
const REQUEST_TIMEOUT_MIN: Duration = Duration::from_secs(1);
/// Pause between attempts.
const RETRY_EVERY: Duration = Duration::from_millis(500);

/// What a verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Health {
    /// A success (2xx or 3xx) answer.
    Healthy(Verification),
    /// No check is possible, and why.
    NotVerifiable(String),
    /// No success answer before the deadline.
    Unhealthy {
        url: String,
        method: &'static str,
        detail: String,
    },
}

/// One proxied GET's result: the status, or why there was none.
type Answer = Result<u16, String>;

/// Whether an HTTP status counts as healthy.
pub(crate) fn is_success(status: u16) -> bool {
    (200..400).contains(&status)
}

/// `path` with a leading `/`.
fn rooted(path: &str) -> String {
    if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    }
}

/// The API server path that proxies to `kind` (`services`, `pods`) `name` on `port`.
pub(crate) fn proxy_path(namespace: &str, kind: &str, name: &str, port: i32, path: &str) -> String {
    format!(
        "/api/v1/namespaces/{namespace}/{kind}/{name}:{port}/proxy{}",
        rooted(path)
    )
}

/// A pod that can take traffic: Ready, not being deleted. Returns its name and the first
/// container port (or `fallback_port`).
fn ready_pod(pods: &[Pod], fallback_port: i32) -> Option<(String, i32)> {
    pods.iter().find_map(|p| {
        if p.metadata.deletion_timestamp.is_some() {
            return None;
        }
        let ready = p
            .status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        if !ready {
            return None;
        }
        let port = p
            .spec
            .as_ref()
            .and_then(|s| s.containers.first())
            .and_then(|c| c.ports.as_ref())
            .and_then(|ports| ports.first())
            .map_or(fallback_port, |cp| cp.container_port);
        Some((p.metadata.name.clone()?, port))
    })
}

impl Cluster {
    /// GETs `path` through the API server, waiting until `deadline` at most (within
    /// bounds); the status, or the transport failure.
    async fn proxied_get(&self, path: &str, deadline: Instant) -> Answer {
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .clamp(REQUEST_TIMEOUT_MIN, REQUEST_TIMEOUT);
        let request = http::Request::get(path)
            .body(Vec::new())
            .map_err(|e| format!("cannot build the request: {e}"))?;
        let sent = tokio::time::timeout(
            wait,
            self.client.send(request.map(kube::client::Body::from)),
        )
        .await;
        match sent {
            Err(_) => Err(format!(
                "no answer within {:.1} s (the client retries while the API server answers 503, \
                 e.g. no endpoints available)",
                wait.as_secs_f64()
            )),
            Ok(Err(e)) => Err(e.to_string()),
            Ok(Ok(response)) => Ok(response.status().as_u16()),
        }
    }

    /// Checks the app's health path until a success answer or `timeout`.
    pub async fn check_health(
        &self,
        health_path: &str,
        app_port: i32,
        timeout: Duration,
        cancel: &Cancellation,
    ) -> Result<Health, Error> {
        let Some(service) = self.service().await? else {
            return Ok(Health::NotVerifiable(format!(
                "there is no Service {} in namespace {} to send a request through",
                self.service, self.namespace
            )));
        };
        let Some(port) = service_port(&service) else {
            return Ok(Health::NotVerifiable(format!(
                "the Service {} has no port to send a request to",
                self.service
            )));
        };
        let service_path = proxy_path(
            &self.namespace,
            "services",
            &self.service,
            port,
            health_path,
        );
        let deadline = Instant::now() + timeout;
        loop {
            let started = Instant::now();
            let answer = self.proxied_get(&service_path, deadline).await;
            if let Ok(status) = answer
                && is_success(status)
            {
                return Ok(healthy(&service_path, "service proxy", status, started));
            }
            let mut last = describe("service proxy", &answer);
            if let Some((pod, pod_port)) = ready_pod(&self.pods().await?, app_port) {
                let pod_path = proxy_path(&self.namespace, "pods", &pod, pod_port, health_path);
                let started = Instant::now();
                let pod_answer = self.proxied_get(&pod_path, deadline).await;
                if let Ok(status) = pod_answer
                    && is_success(status)
                {
                    return Ok(healthy(&pod_path, "pod proxy", status, started));
                }
                last = format!("{last}; {}", describe("pod proxy", &pod_answer));
            }
            if cancel.is_cancelled() {
                return Err(Error::Cancelled("the health check answered".into()));
            }
            if Instant::now() + RETRY_EVERY > deadline {
                return Ok(Health::Unhealthy {
                    url: service_path,
                    method: "service proxy",
                    detail: format!("{last} (retried for {} s)", timeout.as_secs()),
                });
            }
            tokio::time::sleep(RETRY_EVERY).await;
        }
    }
}

fn describe(method: &str, answer: &Answer) -> String {
    match answer {
        Ok(status) => format!("the {method} answered HTTP {status}"),
        Err(e) => format!("the {method} failed: {e}"),
    }
}

fn healthy(url: &str, method: &str, status: u16, started: Instant) -> Health {
    Health::Healthy(Verification::Healthy {
        url: url.to_owned(),
        method: method.to_owned(),
        status,
        latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_paths_and_success_statuses() {
        assert_eq!(
            proxy_path("shop", "services", "web", 80, "/health"),
            "/api/v1/namespaces/shop/services/web:80/proxy/health"
        );
        assert_eq!(
            proxy_path("shop", "pods", "web-1", 8080, "healthz"),
            "/api/v1/namespaces/shop/pods/web-1:8080/proxy/healthz"
        );
        assert!(is_success(200) && is_success(302) && is_success(399));
        assert!(!is_success(199) && !is_success(404) && !is_success(500));
    }

    #[test]
    fn only_a_ready_pod_that_is_not_going_away_is_chosen() {
        let pod = |name: &str, ready: &str, deleting: bool| -> Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "deletionTimestamp": if deleting { Some("2026-01-01T00:00:00Z") } else { None }},
                "spec": {"containers": [{"name": "web", "ports": [{"containerPort": 9000}]}]},
                "status": {"conditions": [{"type": "Ready", "status": ready}]},
            }))
            .unwrap_or_default()
        };
        assert_eq!(ready_pod(&[pod("a", "False", false)], 80), None);
        assert_eq!(ready_pod(&[pod("a", "True", true)], 80), None);
        assert_eq!(
            ready_pod(&[pod("a", "False", false), pod("b", "True", false)], 80),
            Some(("b".to_owned(), 9000))
        );
    }
}
