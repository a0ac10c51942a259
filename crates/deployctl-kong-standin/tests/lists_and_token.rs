//! Lists as Kong 3.4 serves them (size/offset pages with `next`, tag filters, `/tags`)
//! and the admin token, checked over HTTP against the stand-in.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{call, standin};
use deployctl_kong_standin::{KongStandin, Options};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread")]
async fn lists_page_with_size_and_offset_and_filter_by_tags() {
    let (_k, u) = standin().await;
    for i in 0..7 {
        let tags = if i % 2 == 0 {
            json!(["even", "all"])
        } else {
            json!(["odd", "all"])
        };
        call(
            &u,
            "POST",
            "/services",
            Some(json!({"name": format!("s{i}"), "host": "h", "tags": tags})),
            &[],
        )
        .await;
    }
    let mut seen = Vec::new();
    let mut path = "/services?size=3".to_owned();
    let mut pages = 0;
    loop {
        let (s, b) = call(&u, "GET", &path, None, &[]).await;
        assert_eq!(s, 200, "{b}");
        pages += 1;
        seen.extend(
            b["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["name"].as_str().unwrap().to_owned()),
        );
        match b["next"].as_str() {
            Some(next) => {
                assert!(b["offset"].is_string());
                assert!(next.starts_with("/services?offset="), "{next}");
                path = next.to_owned();
            }
            None => {
                assert!(b.get("offset").is_none(), "no offset on the last page: {b}");
                break;
            }
        }
    }
    assert_eq!(pages, 3);
    seen.sort();
    assert_eq!(seen, ["s0", "s1", "s2", "s3", "s4", "s5", "s6"]);
    let count = |b: &Value| b["data"].as_array().unwrap().len();
    assert_eq!(
        count(&call(&u, "GET", "/services?tags=even", None, &[]).await.1),
        4
    );
    assert_eq!(
        count(
            &call(&u, "GET", "/services?tags=even,odd", None, &[])
                .await
                .1
        ),
        0,
        "AND"
    );
    assert_eq!(
        count(
            &call(&u, "GET", "/services?tags=even/odd", None, &[])
                .await
                .1
        ),
        7,
        "OR"
    );
    assert_eq!(
        count(&call(&u, "GET", "/services?tags=all,odd", None, &[]).await.1),
        3
    );
    assert_eq!(
        call(&u, "GET", "/services?tags=a,b/c", None, &[]).await.0,
        400
    );
    assert_eq!(call(&u, "GET", "/services?size=0", None, &[]).await.0, 400);
    assert_eq!(
        call(&u, "GET", "/services?offset=zz", None, &[]).await.0,
        400
    );
    let (_, t) = call(&u, "GET", "/tags/odd", None, &[]).await;
    assert_eq!(count(&t), 3);
    assert_eq!(t["data"][0]["entity_name"], "services");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_token_is_required_when_set() {
    let k = KongStandin::start_with(Options::with_admin_token("s3cret"))
        .await
        .unwrap();
    let u = k.url();
    let (s, b) = call(&u, "GET", "/services", None, &[]).await;
    assert_eq!(s, 401, "{b}");
    assert_eq!(
        call(
            &u,
            "POST",
            "/services",
            Some(json!({"host": "h"})),
            &[("Kong-Admin-Token", "wrong")]
        )
        .await
        .0,
        401
    );
    assert!(k.take_mutations().is_empty());
    let (s, info) = call(&u, "GET", "/", None, &[("Kong-Admin-Token", "s3cret")]).await;
    assert_eq!(s, 200);
    assert!(info["version"].as_str().unwrap().starts_with("3."));
    assert_eq!(info["configuration"]["database"], "postgres");
}
