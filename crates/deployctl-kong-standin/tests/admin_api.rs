//! The Admin API's rules, checked over HTTP against the stand-in: what Kong 3.4 answers
//! (defaults, 409 and 400 shapes, upsert, cascades, pagination, tag filters, the token).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{call, standin};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread")]
async fn entities_get_kongs_defaults_and_uuid_ids() {
    let (_k, u) = standin().await;
    let (s, svc) = call(
        &u,
        "POST",
        "/services",
        Some(json!({"name": "web", "url": "https://web.ns.svc:8443/api"})),
        &[],
    )
    .await;
    assert_eq!(s, 201, "{svc}");
    assert_eq!(svc["id"].as_str().unwrap().len(), 36);
    for (k, v) in [
        ("protocol", json!("https")),
        ("host", json!("web.ns.svc")),
        ("port", json!(8443)),
        ("path", json!("/api")),
        ("retries", json!(5)),
        ("connect_timeout", json!(60000)),
        ("read_timeout", json!(60000)),
        ("write_timeout", json!(60000)),
        ("enabled", json!(true)),
        ("tags", Value::Null),
    ] {
        assert_eq!(svc[k], v, "{k} in {svc}");
    }
    assert!(svc["created_at"].as_i64().unwrap() > 1_600_000_000);
    let (s, route) = call(
        &u,
        "POST",
        "/services/web/routes",
        Some(json!({"name": "r", "paths": ["/a"]})),
        &[],
    )
    .await;
    assert_eq!(s, 201, "{route}");
    assert_eq!(route["service"], json!({"id": svc["id"]}));
    for (k, v) in [
        ("protocols", json!(["http", "https"])),
        ("strip_path", json!(true)),
        ("preserve_host", json!(false)),
        ("regex_priority", json!(0)),
        ("path_handling", json!("v0")),
        ("https_redirect_status_code", json!(426)),
        ("request_buffering", json!(true)),
        ("methods", Value::Null),
    ] {
        assert_eq!(route[k], v, "{k} in {route}");
    }
    // By id and by name, flat and nested.
    let id = svc["id"].as_str().unwrap();
    assert_eq!(
        call(&u, "GET", &format!("/services/{id}"), None, &[])
            .await
            .1["name"],
        "web"
    );
    assert_eq!(
        call(&u, "GET", "/services/web/routes/r", None, &[]).await.1["id"],
        route["id"]
    );
    assert_eq!(
        call(&u, "GET", "/services/nope", None, &[]).await,
        (404, json!({"message": "Not found"}))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unique_fields_conflict_with_409_and_schema_errors_are_400() {
    let (_k, u) = standin().await;
    assert_eq!(
        call(
            &u,
            "POST",
            "/services",
            Some(json!({"name": "web", "host": "a"})),
            &[]
        )
        .await
        .0,
        201
    );
    let (s, b) = call(
        &u,
        "POST",
        "/services",
        Some(json!({"name": "web", "host": "b"})),
        &[],
    )
    .await;
    assert_eq!(s, 409);
    assert_eq!(b["code"], 5);
    assert_eq!(b["name"], "unique constraint violation");
    assert_eq!(b["fields"], json!({"name": "web"}));
    assert_eq!(
        b["message"],
        "UNIQUE violation detected on '{name=\"web\"}'"
    );

    let (s, b) = call(
        &u,
        "POST",
        "/services",
        Some(json!({"name": "x", "host": "h", "port": "eighty", "colour": 1})),
        &[],
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(b["name"], "schema violation");
    assert_eq!(
        b["fields"],
        json!({"port": "expected an integer", "colour": "unknown field"})
    );
    let (s, b) = call(&u, "POST", "/services", Some(json!({"name": "x"})), &[]).await;
    assert_eq!(
        (s, &b["fields"]),
        (400, &json!({"host": "required field missing"}))
    );
    let (s, b) = call(
        &u,
        "POST",
        "/routes",
        Some(json!({"paths": ["items"]})),
        &[],
    )
    .await;
    assert_eq!(s, 400, "{b}");
    let (s, b) = call(
        &u,
        "POST",
        "/routes",
        Some(json!({"protocols": ["http"]})),
        &[],
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert!(
        b["message"].as_str().unwrap().contains("must set one of"),
        "{b}"
    );
    let (s, b) = call(
        &u,
        "POST",
        "/routes",
        Some(json!({"paths": ["/a"], "service": {"id": "7d3ad2b4-1d4e-4f0a-9d55-9b0a4ae2a1b3"}})),
        &[],
    )
    .await;
    assert_eq!(
        (s, &b["name"]),
        (400, &json!("foreign key violation")),
        "{b}"
    );
    let (s, b) = call(
        &u,
        "POST",
        "/routes",
        Some(json!({"paths": ["~/items/(?<id>[^/]+$"]})),
        &[],
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert!(
        b["fields"]["paths"][0]
            .as_str()
            .unwrap()
            .starts_with("invalid regex: '/items/(?<id>[^/]+$'"),
        "{b}"
    );
    let (s, b) = call(
        &u,
        "POST",
        "/routes",
        Some(json!({"paths": ["~/items/(?<id>[^/]+)$"]})),
        &[],
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = call(
        &u,
        "POST",
        "/services",
        Some(json!({"name": "my service", "host": "h"})),
        &[],
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(
        b["fields"]["name"],
        "invalid value 'my service': the only accepted ascii characters are alphanumerics or ., -, _, and ~"
    );
    let (s, b) = call(
        &u,
        "POST",
        "/services",
        Some(json!({"name": "my-service.v1_~é", "host": "h"})),
        &[],
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = call(
        &u,
        "POST",
        "/services",
        Some(json!({"host": "h", "tags": ["a/b"]})),
        &[],
    )
    .await;
    assert_eq!(s, 400, "a tag with a slash cannot be filtered on: {b}");
    let (s, _) = call(&u, "POST", "/consumers", Some(json!({"tags": ["t"]})), &[]).await;
    assert_eq!(s, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn put_upserts_by_name_or_id_and_patch_merges() {
    let (k, u) = standin().await;
    let (s, a) = call(
        &u,
        "PUT",
        "/services/web",
        Some(json!({"host": "a", "tags": ["t1"]})),
        &[],
    )
    .await;
    assert_eq!(s, 200, "{a}");
    assert_eq!(a["name"], "web");
    let (_, b) = call(&u, "PUT", "/services/web", Some(json!({"host": "b"})), &[]).await;
    assert_eq!(b["id"], a["id"], "same entity");
    assert_eq!(
        b["tags"],
        Value::Null,
        "PUT replaces: tags not given are gone"
    );
    assert_eq!(b["created_at"], a["created_at"]);
    let id = "0b9a5f3e-6a4f-4f34-9e2f-2f6f1d6c1c11";
    let (s, c) = call(
        &u,
        "PUT",
        &format!("/services/{id}"),
        Some(json!({"name": "api", "host": "c"})),
        &[],
    )
    .await;
    assert_eq!((s, c["id"].as_str()), (200, Some(id)));
    let (s, d) = call(
        &u,
        "PATCH",
        "/services/api",
        Some(json!({"port": 9000})),
        &[],
    )
    .await;
    assert_eq!(
        (s, d["host"].as_str(), d["port"].as_i64()),
        (200, Some("c"), Some(9000))
    );
    assert_eq!(
        call(&u, "PATCH", "/services/none", Some(json!({"port": 1})), &[])
            .await
            .0,
        404
    );
    let (s, p) = call(
        &u,
        "POST",
        "/services/api/plugins",
        Some(json!({"name": "rate-limiting", "config": {"minute": 5}})),
        &[],
    )
    .await;
    assert_eq!(s, 201, "{p}");
    let pid = p["id"].as_str().unwrap();
    let (_, p2) = call(
        &u,
        "PATCH",
        &format!("/plugins/{pid}"),
        Some(json!({"config": {"hour": 100}})),
        &[],
    )
    .await;
    assert_eq!(
        (
            p2["config"]["minute"].as_i64(),
            p2["config"]["hour"].as_i64()
        ),
        (Some(5), Some(100)),
        "{p2}"
    );
    assert_eq!(
        k.take_mutations(),
        vec![
            "PUT /services/web".to_owned(),
            "PUT /services/web".to_owned(),
            format!("PUT /services/{id}"),
            "PATCH /services/api".to_owned(),
            "POST /services/api/plugins".to_owned(),
            format!("PATCH /plugins/{pid}"),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plugins_are_validated_and_defaulted_as_kong_does() {
    let (_k, u) = standin().await;
    let (s, b) = call(
        &u,
        "POST",
        "/plugins",
        Some(json!({"name": "no-such-plugin"})),
        &[],
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(
        b["fields"]["name"],
        "plugin 'no-such-plugin' not enabled; add it to the 'plugins' configuration property"
    );
    let (s, b) = call(
        &u,
        "POST",
        "/plugins",
        Some(json!({"name": "cors", "config": {"origin": ["*"]}})),
        &[],
    )
    .await;
    assert_eq!(
        (s, &b["fields"]),
        (400, &json!({"config": {"origin": "unknown field"}}))
    );
    let (s, b) = call(
        &u,
        "POST",
        "/plugins",
        Some(json!({"name": "rate-limiting", "config": {"policy": "local"}})),
        &[],
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .contains("at least one of these fields must be non-empty: 'config.second'"),
        "{b}"
    );
    let (s, b) = call(
        &u,
        "POST",
        "/plugins",
        Some(json!({"name": "rate-limiting", "config": {"minute": 5, "policy": "memcached"}})),
        &[],
    )
    .await;
    assert_eq!(
        (s, &b["fields"]["config"]["policy"]),
        (400, &json!("expected one of: local, cluster, redis"))
    );
    let (s, ka) = call(
        &u,
        "POST",
        "/plugins",
        Some(json!({"name": "key-auth", "config": {"key_names": ["X-Key"]}})),
        &[],
    )
    .await;
    assert_eq!(s, 201, "{ka}");
    assert_eq!(ka["config"]["key_in_header"], true);
    assert_eq!(ka["config"]["hide_credentials"], false);
    assert_eq!(ka["protocols"], json!(["grpc", "grpcs", "http", "https"]));
    assert_eq!(ka["enabled"], true);
    let (s, b) = call(
        &u,
        "POST",
        "/plugins",
        Some(json!({"name": "key-auth"})),
        &[],
    )
    .await;
    assert_eq!(s, 409, "the same plugin twice on the same scope: {b}");
    let (s, b) = call(
        &u,
        "POST",
        "/plugins",
        Some(json!({"name": "key-auth", "config": {"key_names": ["X Key"]}})),
        &[],
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(
        b["fields"]["config"]["key_names"][0],
        "bad header name 'X Key', allowed characters are A-Z, a-z, 0-9, '_', and '-'"
    );
    let (s, b) = call(
        &u,
        "POST",
        "/plugins",
        Some(json!({"name": "request-transformer", "config": {"add": {"headers": ["X-Gateway"]}}})),
        &[],
    )
    .await;
    assert_eq!(
        (s, &b["fields"]["config"]["add"]["headers"][0]),
        (400, &json!("invalid value: X-Gateway")),
        "{b}"
    );
    let (s, rt) = call(
        &u,
        "POST",
        "/plugins",
        Some(json!({"name": "request-transformer", "config": {"add": {"headers": ["a:b"]}}})),
        &[],
    )
    .await;
    assert_eq!(s, 201, "{rt}");
    assert_eq!(
        rt["config"]["add"],
        json!({"body": [], "headers": ["a:b"], "querystring": []})
    );
    assert_eq!(rt["config"]["remove"]["headers"], json!([]));
    let (s, cors) = call(&u, "POST", "/plugins", Some(json!({"name": "cors"})), &[]).await;
    assert_eq!(s, 201);
    assert_eq!(cors["config"]["methods"].as_array().unwrap().len(), 9);
    for name in ["jwt", "basic-auth"] {
        let (s, p) = call(&u, "POST", "/plugins", Some(json!({"name": name})), &[]).await;
        assert_eq!(s, 201, "{p}");
    }
    let (s, sch) = call(&u, "GET", "/schemas/plugins/rate-limiting", None, &[]).await;
    assert_eq!(s, 200);
    assert!(sch.to_string().contains("\"limit_by\""), "{sch}");
}

#[tokio::test(flavor = "multi_thread")]
async fn consumers_get_credentials_with_generated_keys() {
    let (_k, u) = standin().await;
    assert_eq!(
        call(
            &u,
            "POST",
            "/consumers",
            Some(json!({"username": "dev"})),
            &[]
        )
        .await
        .0,
        201
    );
    let (s, c) = call(&u, "POST", "/consumers/dev/key-auth", Some(json!({})), &[]).await;
    assert_eq!(s, 201, "{c}");
    let key = c["key"].as_str().unwrap();
    assert_eq!(key.len(), 32);
    assert!(key.chars().all(|c| c.is_ascii_hexdigit()));
    let (s, b) = call(
        &u,
        "POST",
        "/consumers/dev/key-auth",
        Some(json!({"key": key})),
        &[],
    )
    .await;
    assert_eq!((s, &b["fields"]), (409, &json!({"key": key})));
    let (s, j) = call(&u, "POST", "/consumers/dev/jwt", Some(json!({})), &[]).await;
    assert_eq!((s, j["algorithm"].as_str()), (201, Some("HS256")));
    assert_eq!(j["secret"].as_str().unwrap().len(), 32);
    let (s, b) = call(
        &u,
        "POST",
        "/consumers/dev/basic-auth",
        Some(json!({"username": "dev", "password": "pw"})),
        &[],
    )
    .await;
    assert_eq!(s, 201);
    assert_ne!(b["password"], "pw", "stored hashed, as Kong does");
    assert_eq!(
        call(&u, "GET", "/key-auths", None, &[]).await.1["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        call(&u, "GET", &format!("/key-auths/{key}"), None, &[])
            .await
            .0,
        200
    );
    // Deleting the consumer deletes its credentials.
    assert_eq!(call(&u, "DELETE", "/consumers/dev", None, &[]).await.0, 204);
    for coll in ["/key-auths", "/jwts", "/basic-auths"] {
        assert_eq!(
            call(&u, "GET", coll, None, &[]).await.1["data"],
            json!([]),
            "{coll}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_service_with_routes_is_refused_and_plugins_cascade() {
    let (k, u) = standin().await;
    call(
        &u,
        "POST",
        "/services",
        Some(json!({"name": "web", "host": "h"})),
        &[],
    )
    .await;
    call(
        &u,
        "POST",
        "/services/web/routes",
        Some(json!({"name": "r", "paths": ["/"]})),
        &[],
    )
    .await;
    call(
        &u,
        "POST",
        "/services/web/plugins",
        Some(json!({"name": "cors"})),
        &[],
    )
    .await;
    call(
        &u,
        "POST",
        "/routes/r/plugins",
        Some(json!({"name": "key-auth"})),
        &[],
    )
    .await;
    k.take_mutations();
    let (s, b) = call(&u, "DELETE", "/services/web", None, &[]).await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(
        b["message"],
        "an existing 'routes' entity references this 'services' entity"
    );
    assert!(
        k.take_mutations().is_empty(),
        "a refused delete changes nothing"
    );
    assert_eq!(
        call(&u, "GET", "/plugins", None, &[]).await.1["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(call(&u, "DELETE", "/routes/r", None, &[]).await.0, 204);
    assert_eq!(
        call(&u, "GET", "/plugins", None, &[]).await.1["data"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "the route's plugin went with it"
    );
    assert_eq!(call(&u, "DELETE", "/services/web", None, &[]).await.0, 204);
    assert_eq!(
        call(&u, "GET", "/plugins", None, &[]).await.1["data"],
        json!([])
    );
    assert_eq!(
        call(&u, "DELETE", "/services/web", None, &[]).await.0,
        204,
        "deleting nothing is 204 too"
    );
}
