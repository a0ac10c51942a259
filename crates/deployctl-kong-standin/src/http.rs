//! The Admin API over HTTP: authentication, bodies (JSON or form), routing of
//! `/<collection>[/{key}[/<nested>[/{key}]]]`, pagination and tag filters.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::{Method, Request, Response, StatusCode, body::Incoming};
use serde_json::{Map, Value, json};

use crate::schema::{self, Kind};
use crate::store::{Parent, State};
use crate::validate::{Refusal, render_fields};

type Body = BoxBody<Bytes, std::convert::Infallible>;

pub use crate::schema::KONG_VERSION;

const DEFAULT_SIZE: usize = 100;
const MAX_SIZE: usize = 1000;

fn respond(status: u16, v: &Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())).boxed());
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r.headers_mut().insert(
        "server",
        hyper::header::HeaderValue::from_str(&format!("kong/{KONG_VERSION}"))
            .unwrap_or(hyper::header::HeaderValue::from_static("kong")),
    );
    r
}

fn no_content() -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::new()).boxed());
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

fn refused(r: &Refusal) -> Response<Body> {
    respond(r.status, &r.body)
}

/// Serves one request.
pub async fn handle(
    state: Arc<Mutex<State>>,
    req: Request<Incoming>,
) -> Result<Response<Body>, std::convert::Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query: Vec<(String, String)> = req
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    if std::env::var_os("DEPLOYCTL_KONG_STANDIN_TRACE").is_some() {
        eprintln!(
            "kong-standin: {method} {} ({})",
            req.uri(),
            req.headers()
                .get(hyper::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
        );
    }
    let token = req
        .headers()
        .get("kong-admin-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let content_type = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let bytes = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return Ok(respond(
                400,
                &json!({"message": "cannot read the request body"}),
            ));
        }
    };
    let mut st = match state.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    if let Some(want) = &st.admin_token
        && token.as_deref() != Some(want.as_str())
    {
        return Ok(respond(
            401,
            &json!({"message": "Invalid credentials. Token or User credentials required"}),
        ));
    }
    let (body, lenient) = match parse_body(&bytes, &content_type) {
        Ok(b) => b,
        Err(r) => return Ok(refused(&r)),
    };
    let resp = route(&mut st, &method, &path, &query, body, lenient);
    if resp.status().is_success() && method != Method::GET && method != Method::HEAD {
        st.mutations.push(format!("{method} {path}"));
    }
    Ok(resp)
}

/// A JSON object body, or a form (`a.b=1`, `list[]=x`, repeated keys): then `true`, as
/// its scalars are strings to convert.
fn parse_body(bytes: &[u8], content_type: &str) -> Result<(Map<String, Value>, bool), Refusal> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok((Map::new(), false));
    }
    if content_type.starts_with("application/x-www-form-urlencoded") {
        let mut out = Value::Object(Map::new());
        for (k, v) in form_urlencoded::parse(bytes) {
            let (k, is_list) = match k.strip_suffix("[]") {
                Some(k) => (k.to_owned(), true),
                None => match k.rfind('[') {
                    Some(i) if k.ends_with(']') => (k[..i].to_owned(), true),
                    _ => (k.into_owned(), false),
                },
            };
            let mut slot = &mut out;
            for part in k.split('.') {
                if !slot.is_object() {
                    *slot = Value::Object(Map::new());
                }
                let Value::Object(m) = slot else { break };
                slot = m.entry(part.to_owned()).or_insert(Value::Null);
            }
            let v = Value::String(v.into_owned());
            *slot = match std::mem::take(slot) {
                Value::Null if is_list => Value::Array(vec![v]),
                Value::Null => v,
                Value::Array(mut a) => {
                    a.push(v);
                    Value::Array(a)
                }
                old => Value::Array(vec![old, v]),
            };
        }
        let Value::Object(m) = out else {
            return Ok((Map::new(), true));
        };
        return Ok((m, true));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok((m, false)),
        Ok(_) => Err(Refusal::bad_request(
            "Cannot parse JSON body: expected an object",
        )),
        Err(e) => Err(Refusal::bad_request(&format!(
            "Cannot parse JSON body: {e}"
        ))),
    }
}

fn route(
    st: &mut State,
    method: &Method,
    path: &str,
    query: &[(String, String)],
    body: Map<String, Value>,
    lenient: bool,
) -> Response<Body> {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match (method, segs.as_slice()) {
        (&Method::GET, []) => return respond(200, &node_info(st)),
        (&Method::GET, ["status"]) => return respond(200, &status()),
        (&Method::GET, ["schemas", "plugins", name]) => {
            return match schema::plugin(name) {
                Some(p) => respond(200, &plugin_schema(p)),
                None => respond(
                    404,
                    &json!({"message": format!("No plugin named '{name}'")}),
                ),
            };
        }
        (&Method::GET, ["schemas", name]) => {
            return match schema::KINDS
                .iter()
                .find(|k| k.schema == *name || k.collection == *name)
            {
                Some(k) => respond(200, &json!({"fields": render_fields(k.fields)})),
                None => respond(
                    404,
                    &json!({"message": format!("No entity named '{name}'")}),
                ),
            };
        }
        (&Method::GET, ["tags", tag]) => return tagged(st, tag, path, query),
        (&Method::GET, [coll]) if schema::EMPTY_COLLECTIONS.contains(coll) => {
            return respond(200, &json!({"data": [], "next": null}));
        }
        (_, [coll, ..]) if schema::EMPTY_COLLECTIONS.contains(coll) => {
            return respond(405, &json!({"message": "Method not allowed"}));
        }
        _ => {}
    }
    // Resolve `/<collection>/{key}/<nested>` to the child kind and its parent.
    let (kind, parent, key): (&'static Kind, Option<Parent>, Option<&str>) = match segs.as_slice() {
        [coll] | [coll, _] => {
            let Some(k) = schema::kind(coll) else {
                return refused(&Refusal::not_found());
            };
            (k, None, segs.get(1).copied())
        }
        [pcoll, pkey, nested] | [pcoll, pkey, nested, _] => {
            let Some(pk) = schema::kind(pcoll) else {
                return refused(&Refusal::not_found());
            };
            let Some((child, field)) = schema::KINDS.iter().find_map(|c| {
                c.foreign
                    .iter()
                    .find(|(_, coll, _)| coll == pcoll)
                    .filter(|_| c.nested == *nested)
                    .map(|(f, _, _)| (c, *f))
            }) else {
                return refused(&Refusal::not_found());
            };
            let Some(p) = st.find(pk, pkey, None) else {
                return refused(&Refusal::not_found());
            };
            let parent = Parent {
                field,
                id: p["id"].as_str().unwrap_or_default().to_owned(),
            };
            (child, Some(parent), segs.get(3).copied())
        }
        _ => return refused(&Refusal::not_found()),
    };
    let parent = parent.as_ref();
    let result = match (method, key) {
        (&Method::GET, None) => return list(st, kind, parent, path, query),
        (&Method::POST, None) => st.create(kind, body, parent, lenient).map(|v| (201, v)),
        (&Method::GET, Some(k)) => st
            .find(kind, k, parent)
            .map(|v| (200, v))
            .ok_or_else(Refusal::not_found),
        (&Method::PUT, Some(k)) => st.upsert(kind, k, body, parent, lenient).map(|v| (200, v)),
        (&Method::PATCH, Some(k)) => st.update(kind, k, body, parent, lenient).map(|v| (200, v)),
        (&Method::DELETE, Some(k)) => match st.delete(kind, k, parent) {
            Ok(()) => return no_content(),
            Err(r) => Err(r),
        },
        _ => return respond(405, &json!({"message": "Method not allowed"})),
    };
    match result {
        Ok((status, v)) => respond(status, &v),
        Err(r) => refused(&r),
    }
}

/// The entities whose tags match `tags=a,b` (all of them) or `tags=a/b` (any of them).
fn tag_filter(query: &[(String, String)]) -> Result<Option<(Vec<String>, bool)>, Refusal> {
    let Some((_, t)) = query.iter().find(|(k, _)| k == "tags") else {
        return Ok(None);
    };
    let all = t.contains(',');
    let any = t.contains('/');
    if all && any {
        return Err(Refusal {
            status: 400,
            body: json!({
                "code": 9,
                "name": "invalid filter syntax",
                "message": "invalid filter syntax (tags: invalid filter syntax)",
                "fields": {"tags": "invalid filter syntax"},
            }),
        });
    }
    let sep = if any { '/' } else { ',' };
    Ok(Some((t.split(sep).map(str::to_owned).collect(), !any)))
}

fn matches_tags(e: &Value, filter: Option<&(Vec<String>, bool)>) -> bool {
    let Some((wanted, all)) = filter else {
        return true;
    };
    let has = |t: &String| {
        e["tags"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(t)))
    };
    if *all {
        wanted.iter().all(has)
    } else {
        wanted.iter().any(has)
    }
}

/// `size` (1..=1000, default 100) and the opaque `offset` of a list request.
fn page_args(query: &[(String, String)]) -> Result<(usize, Option<String>), Refusal> {
    let size = match query.iter().find(|(k, _)| k == "size") {
        None => DEFAULT_SIZE,
        Some((_, s)) => match s.parse::<usize>() {
            Ok(n) if (1..=MAX_SIZE).contains(&n) => n,
            _ => {
                return Err(Refusal {
                    status: 400,
                    body: json!({
                        "code": 9,
                        "name": "invalid size",
                        "message": format!("invalid size: size must be a number between 1 and {MAX_SIZE}"),
                    }),
                });
            }
        },
    };
    let offset = match query.iter().find(|(k, _)| k == "offset") {
        None => None,
        Some((_, o)) => Some(decode_offset(o).ok_or_else(|| Refusal {
            status: 400,
            body: json!({"code": 7, "name": "invalid offset", "message": format!("'{o}' is not a valid offset: bad base64 encoding")}),
        })?),
    };
    Ok((size, offset))
}

/// The offset handed out is the hex of the last id served (opaque to clients, as Kong's).
fn encode_offset(id: &str) -> String {
    id.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_offset(o: &str) -> Option<String> {
    if !o.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..o.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(o.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

/// One page of `items` (sorted by id) after `offset`, with Kong's `next` and `offset`.
fn page(items: Vec<(String, Value)>, path: &str, query: &[(String, String)]) -> Response<Body> {
    let (size, offset) = match page_args(query) {
        Ok(a) => a,
        Err(r) => return refused(&r),
    };
    let rest: Vec<(String, Value)> = items
        .into_iter()
        .filter(|(id, _)| offset.as_ref().is_none_or(|o| id > o))
        .collect();
    let more = rest.len() > size;
    let data: Vec<(String, Value)> = rest.into_iter().take(size).collect();
    let mut out =
        json!({"data": data.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(), "next": null});
    if more && let Some((last, _)) = data.last() {
        let off = encode_offset(last);
        let mut next = form_urlencoded::Serializer::new(String::new());
        next.append_pair("offset", &off);
        for (k, v) in query {
            if k == "size" || k == "tags" {
                next.append_pair(k, v);
            }
        }
        out["next"] = json!(format!("{path}?{}", next.finish()));
        out["offset"] = json!(off);
    }
    respond(200, &out)
}

fn list(
    st: &State,
    kind: &Kind,
    parent: Option<&Parent>,
    path: &str,
    query: &[(String, String)],
) -> Response<Body> {
    let filter = match tag_filter(query) {
        Ok(f) => f,
        Err(r) => return refused(&r),
    };
    let items = st
        .list(kind, parent)
        .into_iter()
        .filter(|e| matches_tags(e, filter.as_ref()))
        .map(|e| (e["id"].as_str().unwrap_or_default().to_owned(), e))
        .collect();
    page(items, path, query)
}

/// `GET /tags/{tag}`: every entity carrying the tag, as `{entity_name, entity_id, tag}`.
fn tagged(st: &State, tag: &str, path: &str, query: &[(String, String)]) -> Response<Body> {
    let mut items: Vec<(String, Value)> = Vec::new();
    for kind in schema::KINDS {
        for e in st.list(kind, None) {
            if e["tags"]
                .as_array()
                .is_some_and(|a| a.iter().any(|t| t == tag))
            {
                let id = e["id"].as_str().unwrap_or_default().to_owned();
                items.push((
                    id.clone(),
                    json!({"entity_name": kind.schema, "entity_id": id, "tag": tag}),
                ));
            }
        }
    }
    items.sort_by(|a, b| a.0.cmp(&b.0));
    page(items, path, query)
}

fn node_info(st: &State) -> Value {
    let available: Map<String, Value> = schema::PLUGINS
        .iter()
        .map(|p| {
            (
                p.name.to_owned(),
                json!({"version": p.version, "priority": p.priority}),
            )
        })
        .collect();
    let names: Vec<&str> = schema::PLUGINS.iter().map(|p| p.name).collect();
    json!({
        "version": KONG_VERSION,
        "edition": "community",
        "tagline": "Welcome to kong",
        "hostname": "deployctl-kong-standin",
        "node_id": st.node_id,
        "lua_version": "LuaJIT 2.1.0-20230410",
        "plugins": {"available_on_server": available, "enabled_in_cluster": names},
        "configuration": {
            "database": "postgres",
            "router_flavor": "traditional_compatible",
            "role": "traditional",
            "plugins": ["bundled"],
            "loaded_plugins": names.iter().map(|n| (n.to_string(), json!(true))).collect::<Map<String, Value>>(),
            "admin_listen": ["127.0.0.1:8001"],
            "proxy_listen": ["0.0.0.0:8000"],
        },
        "timers": {"running": 0, "pending": 0},
        "pids": {"master": 1, "workers": [2]},
    })
}

fn status() -> Value {
    json!({
        "database": {"reachable": true},
        "memory": {"workers_lua_vms": [{"http_allocated_gc": "0.02 MiB", "pid": 2}], "lua_shared_dicts": {}},
        "server": {
            "connections_accepted": 1, "connections_active": 1, "connections_handled": 1,
            "connections_reading": 0, "connections_waiting": 0, "connections_writing": 1,
            "total_requests": 1,
        },
    })
}

/// `/schemas/plugins/{name}`: the plugin entity's fields with its `config` record.
fn plugin_schema(p: &schema::Plugin) -> Value {
    let mut fields = vec![
        json!({"consumer": {"type": "foreign", "reference": "consumers", "eq": null}}),
        json!({"protocols": {"type": "set", "required": true, "default": ["grpc", "grpcs", "http", "https"], "elements": {"type": "string", "one_of": ["grpc", "grpcs", "http", "https"]}}}),
    ];
    fields.push(
        json!({"config": {"type": "record", "required": true, "fields": render_fields(p.config)}}),
    );
    let mut out = json!({"fields": fields});
    if !p.at_least_one_of.is_empty() {
        out["entity_checks"] = json!([{"at_least_one_of": p.at_least_one_of.iter().map(|f| format!("config.{f}")).collect::<Vec<_>>()}]);
    }
    out
}
