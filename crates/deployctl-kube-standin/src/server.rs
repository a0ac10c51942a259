//! HTTP: routing of the Kubernetes REST paths, query parameters, JSON bodies, chunked watch
//! streams and pod logs.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::ops::{self, Failure};
use crate::store::{Change, Kind, Selector, State, field_matches, kind};

pub type Body = BoxBody<Bytes, Infallible>;

fn full(status: StatusCode, v: &Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn fail(f: &Failure) -> Response<Body> {
    full(
        StatusCode::from_u16(f.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &f.status(),
    )
}

fn query(req: &Request<Incoming>) -> BTreeMap<String, String> {
    req.uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// A boolean query parameter, read as the API server does (Go's `strconv.ParseBool`: the
/// Python client sends `True`).
fn flag(q: &BTreeMap<String, String>, name: &str) -> bool {
    q.get(name)
        .is_some_and(|v| matches!(v.as_str(), "1" | "t" | "T" | "true" | "TRUE" | "True"))
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(x) => {
                        out.push(x);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a path names.
struct Target {
    kind: Kind,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn route(path: &str) -> Result<Option<Target>, Failure> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => {
            return Err(Failure::new(
                404,
                "NotFound",
                format!("the server could not find the requested resource ({path})"),
            ));
        }
    };
    let unknown = |plural: &str| {
        Failure::new(
            404,
            "NotFound",
            format!(
                "the server could not find the requested resource ({group}/{version} {plural})"
            ),
        )
    };
    let t = match rest {
        [] => return Ok(None),
        ["namespaces", ns, plural, tail @ ..] => {
            let k = kind(group, version, plural).ok_or_else(|| unknown(plural))?;
            Target {
                kind: k,
                namespace: Some((*ns).to_owned()),
                name: tail.first().map(|s| (*s).to_owned()),
                sub: tail.get(1).map(|s| (*s).to_owned()),
            }
        }
        [plural, tail @ ..] => {
            let k = kind(group, version, plural).ok_or_else(|| unknown(plural))?;
            Target {
                kind: k,
                namespace: None,
                name: tail.first().map(|s| (*s).to_owned()),
                sub: tail.get(1).map(|s| (*s).to_owned()),
            }
        }
    };
    Ok(Some(t))
}

fn parse_body(bytes: &[u8]) -> Result<Value, Failure> {
    serde_json::from_slice(bytes)
        .or_else(|_| serde_yaml::from_slice::<Value>(bytes))
        .map_err(|e| {
            Failure::new(
                400,
                "BadRequest",
                format!("the body is neither JSON nor YAML: {e}"),
            )
        })
}

fn selected(q: &BTreeMap<String, String>, v: &Value) -> Result<bool, Failure> {
    let labels = Selector::parse(q.get("labelSelector").map_or("", String::as_str))
        .map_err(|e| Failure::new(400, "BadRequest", e))?;
    Ok(labels.matches(&v["metadata"]["labels"])
        && q.get("fieldSelector").is_none_or(|f| field_matches(f, v)))
}

/// Serves one request.
pub async fn handle(
    state: Arc<Mutex<State>>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    crate::content::trace(&req);
    let path = req.uri().path().to_owned();
    let q = query(&req);
    let method = req.method().clone();
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_owned();
    if path == "/standin/control" {
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        return Ok(control(&state, &body));
    }
    if let Some(p) = crate::proxy::parse(&path, req.uri().query()) {
        return Ok(match crate::proxy::serve(&state, p, req).await {
            Ok(r) => r,
            Err(f) => fail(&f),
        });
    }
    if method == Method::GET {
        let accept = req
            .headers()
            .get("accept")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if let Some(a) = crate::discovery::answer(&path, accept) {
            let mut r = full(StatusCode::OK, &a.body);
            if let Ok(ct) = http::HeaderValue::from_str(&a.content_type) {
                r.headers_mut().insert("content-type", ct);
            }
            return Ok(r);
        }
        if let Some(r) = crate::openapi::answer(&path, accept) {
            return Ok(r);
        }
    }
    let target = match route(&path) {
        Ok(Some(t)) => t,
        Ok(None) => {
            return Ok(fail(&Failure::new(
                404,
                "NotFound",
                format!("the server could not find the requested resource ({path})"),
            )));
        }
        Err(f) => return Ok(fail(&f)),
    };
    let body = if matches!(
        method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) {
        match req.into_body().collect().await {
            Ok(b) => match crate::content::json_body(b.to_bytes(), &content_type) {
                Ok(b) => Some(b),
                Err(f) => return Ok(fail(&f)),
            },
            Err(e) => return Ok(fail(&Failure::new(400, "BadRequest", e.to_string()))),
        }
    } else {
        None
    };
    let dry = q.get("dryRun").is_some_and(|v| v == "All");
    if !dry
        && matches!(
            method,
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        )
    {
        lock(&state).mutations.push(format!("{method} {path}"));
    }
    let manager = q
        .get("fieldManager")
        .cloned()
        .unwrap_or_else(|| "unknown".into());
    let ns = target.namespace.clone().unwrap_or_default();
    let kind = target.kind;
    if kind.namespaced && target.namespace.is_some() && kind.plural != "namespaces" {
        let exists = state
            .lock()
            .map(|st| {
                st.get(
                    crate::store::kind_named("Namespace").unwrap_or(kind),
                    "",
                    &ns,
                )
                .is_some()
            })
            .unwrap_or(false);
        if !exists && method != Method::GET && method != Method::DELETE {
            let mut f = Failure::new(404, "NotFound", format!("namespaces \"{ns}\" not found"));
            f.details = json!({"name": ns, "kind": "namespaces"});
            return Ok(fail(&f));
        }
    }

    if target.sub.as_deref() == Some("scale")
        && kind.subresources.contains(&"scale")
        && let Some(name) = &target.name
    {
        return Ok(scale(
            &state,
            &method,
            kind,
            &ns,
            name,
            body.as_deref(),
            &manager,
            dry,
        ));
    }
    let result: Result<Value, Failure> = match (&method, &target.name, target.sub.as_deref()) {
        (&Method::GET, Some(name), Some("log")) if kind.plural == "pods" => {
            return Ok(logs(state, &ns, name, &q).await);
        }
        (&Method::GET, Some(name), _) => {
            let st = state.lock().map_err(|_| ());
            match st {
                Ok(st) => st
                    .get(kind, &ns, name)
                    .cloned()
                    .ok_or_else(|| Failure::not_found(kind, name)),
                Err(()) => Err(Failure::new(500, "InternalError", "state lock poisoned")),
            }
        }
        (&Method::GET, None, _) if flag(&q, "watch") => {
            return Ok(watch(state, kind, target.namespace.clone(), q));
        }
        (&Method::GET, None, _) => list(&state, kind, target.namespace.as_deref(), &q),
        (&Method::POST, None, _) => {
            let object = match body.as_deref().map(parse_body) {
                Some(Ok(v)) => v,
                Some(Err(f)) => return Ok(fail(&f)),
                None => Value::Null,
            };
            let mut st = lock(&state);
            strict(&q, kind, &object, false).and_then(|()| {
                ops::create(&mut st, kind, &ns, object, &manager, dry).map(return_created)
            })
        }
        (&Method::PATCH, Some(name), sub) => {
            let object = match body.as_deref().map(parse_body) {
                Some(Ok(v)) => v,
                Some(Err(f)) => return Ok(fail(&f)),
                None => Value::Null,
            };
            let mut st = lock(&state);
            if content_type.starts_with("application/apply-patch") {
                let force = flag(&q, "force");
                if !q.contains_key("fieldManager") {
                    Err(Failure::new(
                        400,
                        "BadRequest",
                        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                    ))
                } else {
                    strict(&q, kind, &object, true).and_then(|()| {
                        ops::apply(&mut st, kind, &ns, name, &object, &manager, force, dry)
                    })
                }
            } else if content_type.starts_with("application/json-patch") {
                Err(Failure::new(
                    415,
                    "UnsupportedMediaType",
                    "json-patch is not supported by the stand-in",
                ))
            } else {
                // Strategic merge: list items merged by key, on the current object; the
                // sender owns what it sent.
                let strategic = content_type.starts_with("application/strategic-merge");
                let (merge, owned) = match st.get(kind, &ns, name) {
                    Some(current) if strategic => (
                        crate::strategic::to_merge_patch(current, &object),
                        crate::strategic::strip(&object),
                    ),
                    _ => (object.clone(), object),
                };
                ops::patch_owning(
                    &mut st,
                    kind,
                    &ns,
                    name,
                    &merge,
                    &owned,
                    &manager,
                    sub == Some("status"),
                    dry,
                )
            }
        }
        (&Method::PUT, Some(name), sub) => {
            let object = match body.as_deref().map(parse_body) {
                Some(Ok(v)) => v,
                Some(Err(f)) => return Ok(fail(&f)),
                None => Value::Null,
            };
            let mut st = lock(&state);
            strict(&q, kind, &object, false).and_then(|()| {
                ops::replace(&mut st, kind, &ns, name, object, sub == Some("status"), dry)
            })
        }
        (&Method::DELETE, Some(name), _) => {
            // DeleteOptions may come as the body: its propagationPolicy and preconditions.
            let options = match body.as_deref().filter(|b| !b.is_empty()).map(parse_body) {
                Some(Ok(v)) => v,
                Some(Err(f)) => return Ok(fail(&f)),
                None => Value::Null,
            };
            let propagation = q
                .get("propagationPolicy")
                .map(String::as_str)
                .or_else(|| options["propagationPolicy"].as_str());
            let mut st = lock(&state);
            ops::delete(
                &mut st,
                kind,
                &ns,
                name,
                propagation,
                &options["preconditions"],
                dry,
            )
        }
        _ => Err(Failure::new(
            405,
            "MethodNotAllowed",
            format!("{method} is not supported on {path}"),
        )),
    };
    Ok(match result {
        Ok(v) if v.get("__created").is_some() => {
            let mut v = v;
            if let Some(m) = v.as_object_mut() {
                m.remove("__created");
            }
            full(StatusCode::CREATED, &v)
        }
        Ok(v) => full(StatusCode::OK, &v),
        Err(f) => fail(&f),
    })
}

/// The `scale` subresource: an `autoscaling/v1` Scale read from and written to the
/// object's `spec.replicas` (GET, PATCH with `{"spec": {"replicas": n}}`, PUT of a Scale).
#[allow(clippy::too_many_arguments)]
fn scale(
    state: &Arc<Mutex<State>>,
    method: &Method,
    kind: Kind,
    ns: &str,
    name: &str,
    body: Option<&[u8]>,
    manager: &str,
    dry: bool,
) -> Response<Body> {
    let mut st = lock(state);
    let object = if *method == Method::GET {
        st.get(kind, ns, name)
            .cloned()
            .ok_or_else(|| Failure::not_found(kind, name))
    } else if *method == Method::PATCH || *method == Method::PUT {
        match body.map(parse_body) {
            Some(Ok(v)) => match v["spec"]["replicas"].as_i64() {
                Some(n) => {
                    let patch = json!({"spec": {"replicas": n}});
                    ops::patch(&mut st, kind, ns, name, &patch, manager, false, dry)
                }
                None => st
                    .get(kind, ns, name)
                    .cloned()
                    .ok_or_else(|| Failure::not_found(kind, name)),
            },
            Some(Err(f)) => Err(f),
            None => Err(Failure::new(400, "BadRequest", "a Scale body is required")),
        }
    } else {
        Err(Failure::new(
            405,
            "MethodNotAllowed",
            format!("{method} is not supported on the scale subresource"),
        ))
    };
    match object {
        Ok(o) => {
            let selector = o["spec"]["selector"]["matchLabels"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            let m = &o["metadata"];
            full(
                StatusCode::OK,
                &json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
                    "metadata": {"name": m["name"], "namespace": m["namespace"], "uid": m["uid"],
                        "resourceVersion": m["resourceVersion"],
                        "creationTimestamp": m["creationTimestamp"]},
                    "spec": {"replicas": o["spec"]["replicas"].as_i64().unwrap_or(1)},
                    "status": {"replicas": o["status"]["replicas"].as_i64().unwrap_or(0),
                        "selector": selector}}),
            )
        }
        Err(f) => fail(&f),
    }
}

/// `fieldValidation=Strict`: fields the kind's schema does not declare are a 400, worded as
/// a real API server words it for a create/update and for a server-side apply.
fn strict(
    q: &BTreeMap<String, String>,
    kind: Kind,
    object: &Value,
    apply: bool,
) -> Result<(), Failure> {
    if q.get("fieldValidation").is_none_or(|v| v != "Strict") {
        return Ok(());
    }
    let unknown = crate::openapi::unknown_fields(&kind, object);
    if unknown.is_empty() {
        return Ok(());
    }
    let message = if apply {
        let ns = object["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        format!(
            "failed to create typed patch object ({ns}/{name}; {}, Kind={}): {}",
            kind.api_version(),
            kind.kind,
            unknown
                .iter()
                .map(|f| format!(".{f}: field not declared in schema"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else {
        format!(
            "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
            kind.kind,
            kind.version,
            kind.kind,
            unknown
                .iter()
                .map(|f| format!("unknown field \"{f}\""))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    Err(Failure::new(400, "BadRequest", message))
}

fn return_created(mut v: Value) -> Value {
    v["__created"] = json!(true);
    v
}

fn lock(state: &Arc<Mutex<State>>) -> std::sync::MutexGuard<'_, State> {
    match state.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

fn list(
    state: &Arc<Mutex<State>>,
    kind: Kind,
    ns: Option<&str>,
    q: &BTreeMap<String, String>,
) -> Result<Value, Failure> {
    let st = lock(state);
    let mut items = Vec::new();
    for v in st.list(kind, ns) {
        if selected(q, &v)? {
            items.push(v);
        }
    }
    Ok(json!({
        "kind": format!("{}List", kind.kind),
        "apiVersion": kind.api_version(),
        "metadata": {"resourceVersion": st.rv.to_string()},
        "items": items,
    }))
}

fn stream_body(rx: mpsc::Receiver<Bytes>) -> Body {
    let s = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    BodyExt::boxed(StreamBody::new(s))
}

fn watch(
    state: Arc<Mutex<State>>,
    kind: Kind,
    ns: Option<String>,
    q: BTreeMap<String, String>,
) -> Response<Body> {
    let selector = match Selector::parse(q.get("labelSelector").map_or("", String::as_str)) {
        Ok(s) => s,
        Err(e) => return fail(&Failure::new(400, "BadRequest", e)),
    };
    let since: Option<u64> = q
        .get("resourceVersion")
        .and_then(|r| r.parse().ok())
        .filter(|r| *r > 0);
    let timeout = Duration::from_secs(
        q.get("timeoutSeconds")
            .and_then(|t| t.parse().ok())
            .unwrap_or(300),
    );
    let bookmarks = flag(&q, "allowWatchBookmarks");
    // Streaming list (client-go's WatchListClient, on by default in kubectl 1.3x): the
    // current objects as ADDED, then a bookmark annotated `k8s.io/initial-events-end`.
    let send_initial = flag(&q, "sendInitialEvents");
    let since = if send_initial { None } else { since };
    let field = q.get("fieldSelector").cloned();
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let (mut sub, initial, oldest, current_rv) = {
        let st = lock(&state);
        let sub = st.tx.subscribe();
        let oldest = st.history.front().map_or(st.rv, |c| c.rv);
        let initial: Vec<Change> = match since {
            Some(rv) => st.history.iter().filter(|c| c.rv > rv).cloned().collect(),
            None => st
                .list(kind, ns.as_deref())
                .into_iter()
                .map(|o| Change {
                    rv: 0,
                    plural: kind.plural,
                    namespace: o["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    kind: "ADDED",
                    object: o,
                })
                .collect(),
        };
        (sub, initial, oldest, st.rv)
    };
    if let Some(rv) = since
        && rv + 1 < oldest
    {
        let f = Failure::new(
            410,
            "Expired",
            format!("too old resource version: {rv} ({oldest})"),
        );
        let line = json!({"type": "ERROR", "object": f.status()}).to_string() + "\n";
        let _ = tx.try_send(Bytes::from(line));
        let mut r = Response::new(stream_body(rx));
        r.headers_mut().insert(
            "content-type",
            http::HeaderValue::from_static("application/json"),
        );
        return r;
    }
    let matches = move |c: &Change| {
        c.plural == kind.plural
            && ns.as_deref().is_none_or(|n| c.namespace == n)
            && selector.matches(&c.object["metadata"]["labels"])
            && field.as_deref().is_none_or(|f| field_matches(f, &c.object))
    };
    tokio::spawn(async move {
        let mut last = since.unwrap_or(current_rv);
        for c in initial.iter().filter(|c| matches(c)) {
            last = last.max(c.rv);
            let line = json!({"type": c.kind, "object": c.object}).to_string() + "\n";
            if tx.send(Bytes::from(line)).await.is_err() {
                return;
            }
        }
        if send_initial {
            let line = json!({"type": "BOOKMARK", "object": {"kind": kind.kind, "apiVersion": kind.api_version(),
                "metadata": {"resourceVersion": current_rv.to_string(),
                    "annotations": {"k8s.io/initial-events-end": "true"}}}})
            .to_string()
                + "\n";
            if tx.send(Bytes::from(line)).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let next = tokio::time::timeout_at(deadline, sub.recv()).await;
            match next {
                Err(_) => return,
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => continue,
                Ok(Err(_)) => return,
                Ok(Ok(c)) => {
                    if c.rv <= last {
                        continue;
                    }
                    last = c.rv;
                    let line = if matches(&c) {
                        json!({"type": c.kind, "object": c.object}).to_string() + "\n"
                    } else if bookmarks && c.rv % 50 == 0 {
                        json!({"type": "BOOKMARK", "object": {"kind": kind.kind, "apiVersion": kind.api_version(),
                            "metadata": {"resourceVersion": c.rv.to_string()}}}).to_string() + "\n"
                    } else {
                        continue;
                    };
                    if tx.send(Bytes::from(line)).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    let mut r = Response::new(stream_body(rx));
    r.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    r
}

async fn logs(
    state: Arc<Mutex<State>>,
    ns: &str,
    pod: &str,
    q: &BTreeMap<String, String>,
) -> Response<Body> {
    let pk = crate::store::kind_named("Pod");
    let lines = {
        let st = lock(&state);
        if pk.is_none_or(|k| st.get(k, ns, pod).is_none()) {
            return fail(&Failure::new(
                404,
                "NotFound",
                format!("pods \"{pod}\" not found"),
            ));
        }
        st.logs
            .get(&(ns.to_owned(), pod.to_owned()))
            .cloned()
            .unwrap_or_default()
    };
    let tail: Option<usize> = q.get("tailLines").and_then(|t| t.parse().ok());
    let skip = tail.map_or(0, |t| lines.len().saturating_sub(t));
    let follow = flag(q, "follow");
    let text: String = lines.iter().skip(skip).map(|l| format!("{l}\n")).collect();
    if !follow {
        let mut r = Response::new(Full::new(Bytes::from(text)).boxed());
        r.headers_mut()
            .insert("content-type", http::HeaderValue::from_static("text/plain"));
        return r;
    }
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let (ns, pod) = (ns.to_owned(), pod.to_owned());
    let mut sent = lines.len();
    tokio::spawn(async move {
        if !text.is_empty() && tx.send(Bytes::from(text)).await.is_err() {
            return;
        }
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let (more, gone) = {
                let st = lock(&state);
                let gone = pk.is_none_or(|k| st.get(k, &ns, &pod).is_none());
                let all = st
                    .logs
                    .get(&(ns.clone(), pod.clone()))
                    .cloned()
                    .unwrap_or_default();
                (all.into_iter().skip(sent).collect::<Vec<_>>(), gone)
            };
            sent += more.len();
            for l in more {
                if tx.send(Bytes::from(format!("{l}\n"))).await.is_err() {
                    return;
                }
            }
            if gone {
                return;
            }
        }
    });
    let mut r = Response::new(stream_body(rx));
    r.headers_mut()
        .insert("content-type", http::HeaderValue::from_static("text/plain"));
    r
}

fn control(state: &Arc<Mutex<State>>, body: &[u8]) -> Response<Body> {
    let v: Value = serde_json::from_slice(body).unwrap_or_default();
    if let Some(url) = v["proxy"]["url"].as_str() {
        let mut st = lock(state);
        match (
            v["proxy"]["namespace"].as_str(),
            v["proxy"]["service"].as_str(),
        ) {
            (Some(ns), Some(svc)) => {
                st.proxy_targets
                    .insert((ns.to_owned(), svc.to_owned()), url.to_owned());
            }
            _ => st.default_proxy_target = Some(url.to_owned()),
        }
        return full(StatusCode::OK, &json!({"ok": true}));
    }
    let Some(image) = v["image"].as_str() else {
        return fail(&Failure::new(
            400,
            "BadRequest",
            "expected {\"image\": \"substring\", \"behavior\": \"ready|slow|image-pull-back-off|crash-loop-back-off|create-container-config-error|never-ready\"}",
        ));
    };
    let Some(b) = v["behavior"].as_str().and_then(crate::Behavior::parse) else {
        return fail(&Failure::new(400, "BadRequest", "unknown behavior"));
    };
    lock(state).behaviors.push((image.to_owned(), b));
    full(StatusCode::OK, &json!({"ok": true}))
}
