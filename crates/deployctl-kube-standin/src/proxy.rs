//! The API server's `proxy` subresource of Services and Pods:
//! `/api/v1/namespaces/{ns}/services/{name}[:{port}]/proxy{path}` and
//! `/api/v1/namespaces/{ns}/pods/{name}[:{port}]/proxy{path}`.
//!
//! No container runs here, so a test registers the URL that stands for a Service's pods
//! ([`crate::StandIn::set_proxy_target`], or one default for every Service); the request
//! (method, path after `proxy`, query, body) is forwarded there over HTTP/1.1 and the
//! answer (status, headers, body) comes back unchanged. As on a real API server, a Service
//! with no ready pod behind its selector — or, here, with nothing registered — is a 503
//! `no endpoints available for service "<name>"`; a target that refuses the connection is
//! a 503 `error trying to reach service`. A pod proxies to the target of a Service whose
//! selector matches its labels.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::ops::Failure;
use crate::server::Body;
use crate::store::{State, kind_named};

/// A request for the proxy subresource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyPath {
    pub namespace: String,
    /// `services` or `pods`.
    pub plural: &'static str,
    pub name: String,
    /// The path after `/proxy` (at least `/`), with the query.
    pub rest: String,
}

/// Parses `path` (and `query`) when it names a proxy subresource.
pub fn parse(path: &str, query: Option<&str>) -> Option<ProxyPath> {
    let tail = path.strip_prefix("/api/v1/namespaces/")?;
    let mut parts = tail.splitn(4, '/');
    let namespace = parts.next()?;
    let plural = match parts.next()? {
        "services" => "services",
        "pods" => "pods",
        _ => return None,
    };
    let name_port = parts.next()?;
    let after = parts.next()?;
    let rest = match after.strip_prefix("proxy")? {
        "" => "/",
        r if r.starts_with('/') => r,
        _ => return None,
    };
    // `name`, `name:port`, `scheme:name:port`: the name is the part that is not a port or
    // a scheme.
    let name = match name_port.split(':').collect::<Vec<_>>().as_slice() {
        [name] | [name, _] if !matches!(*name, "http" | "https") => *name,
        [_, name, ..] => *name,
        _ => return None,
    };
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    Some(ProxyPath {
        namespace: namespace.to_owned(),
        plural,
        name: name.to_owned(),
        rest: format!("{rest}{query}"),
    })
}

fn labels_match(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|sel| !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

fn pod_ready(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_null()
        && pod["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

fn unavailable(service: &str) -> Failure {
    Failure::new(
        503,
        "ServiceUnavailable",
        format!("no endpoints available for service \"{service}\""),
    )
}

/// Where the request goes: the registered URL, or why there is none.
fn resolve(st: &State, p: &ProxyPath) -> Result<String, Failure> {
    let (Some(services), Some(pods)) = (kind_named("Service"), kind_named("Pod")) else {
        return Err(Failure::new(500, "InternalError", "no Service or Pod kind"));
    };
    let target_of = |service: &str| {
        st.proxy_targets
            .get(&(p.namespace.clone(), service.to_owned()))
            .or(st.default_proxy_target.as_ref())
            .cloned()
    };
    if p.plural == "services" {
        let svc = st
            .get(services, &p.namespace, &p.name)
            .ok_or_else(|| Failure::not_found(services, &p.name))?;
        let selector = &svc["spec"]["selector"];
        let ready = st
            .list(pods, Some(&p.namespace))
            .iter()
            .any(|pod| pod_ready(pod) && labels_match(selector, &pod["metadata"]["labels"]));
        return match target_of(&p.name) {
            Some(url) if ready => Ok(url),
            _ => Err(unavailable(&p.name)),
        };
    }
    let pod = st
        .get(pods, &p.namespace, &p.name)
        .ok_or_else(|| Failure::not_found(pods, &p.name))?;
    if !pod_ready(pod) {
        return Err(Failure::new(
            503,
            "ServiceUnavailable",
            format!("pod \"{}\" is not ready", p.name),
        ));
    }
    st.list(services, Some(&p.namespace))
        .iter()
        .filter(|svc| labels_match(&svc["spec"]["selector"], &pod["metadata"]["labels"]))
        .find_map(|svc| target_of(svc["metadata"]["name"].as_str().unwrap_or_default()))
        .ok_or_else(|| unavailable(&p.name))
}

/// Serves a proxy request: forwards it to the registered target.
pub async fn serve(
    state: &Arc<Mutex<State>>,
    p: ProxyPath,
    req: Request<Incoming>,
) -> Result<Response<Body>, Failure> {
    let url = {
        let st = match state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        resolve(&st, &p)?
    };
    let method = req.method().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| Failure::new(400, "BadRequest", e.to_string()))?;
    forward(&url, &p.rest, method, body).await.map_err(|e| {
        Failure::new(
            503,
            "ServiceUnavailable",
            format!("error trying to reach service: {e}"),
        )
    })
}

/// One HTTP/1.1 request to `url` (`http://host:port[/base]`) + `rest`.
async fn forward(
    url: &str,
    rest: &str,
    method: Method,
    body: Bytes,
) -> Result<Response<Body>, String> {
    let without_scheme = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// targets are supported"))?;
    let (authority, base) = without_scheme
        .split_once('/')
        .map_or((without_scheme, ""), |(a, b)| (a, b));
    let base = base.trim_end_matches('/');
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|e| format!("dial tcp {authority}: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let uri = if base.is_empty() {
        rest.to_owned()
    } else {
        format!("/{base}{rest}")
    };
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", authority)
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Response::from_parts(parts, Full::new(bytes).boxed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_paths_parse() {
        let p = parse(
            "/api/v1/namespaces/shop/services/web:80/proxy/health",
            Some("a=1"),
        );
        assert_eq!(
            p,
            Some(ProxyPath {
                namespace: "shop".into(),
                plural: "services",
                name: "web".into(),
                rest: "/health?a=1".into(),
            })
        );
        let p = parse("/api/v1/namespaces/shop/pods/web-1:8080/proxy", None);
        assert_eq!(
            p.map(|p| (p.name, p.rest)),
            Some(("web-1".into(), "/".into()))
        );
        let p = parse(
            "/api/v1/namespaces/shop/services/https:web:443/proxy/x",
            None,
        );
        assert_eq!(p.map(|p| p.name), Some("web".into()));
        assert_eq!(parse("/api/v1/namespaces/shop/services/web", None), None);
        assert_eq!(
            parse("/api/v1/namespaces/shop/services/web/proxyx", None),
            None
        );
        assert_eq!(
            parse("/api/v1/namespaces/shop/configmaps/web/proxy/x", None),
            None
        );
    }
}
