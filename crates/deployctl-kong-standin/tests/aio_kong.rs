//! The Python package `aio-kong` (installed into the services' venv by `cargo xtask services
//! up`) against the stand-in: `tests/python/aio_kong_check.py` does CRUD through its client,
//! pagination with its paginator, tag filters, a 409 on a duplicate name, form-encoded
//! credentials and its `apply_json`. Skips with a printed reason when the venv or the
//! package is missing (fails when `CI=true`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use deployctl_kong_standin::KongStandin;

#[tokio::test(flavor = "multi_thread")]
async fn aio_kong_crud_pagination_tags_and_conflicts() {
    let Some(python) = common::venv_python_with_aio_kong() else {
        return;
    };
    let kong = KongStandin::start().await.unwrap();
    let mut cmd = Command::new(python);
    cmd.arg(common::crate_dir().join("tests/python/aio_kong_check.py"))
        .env("KONG_URL", kong.url())
        .env("KONG_ADMIN_SSL", "false");
    let out = common::output(cmd).await;
    assert!(out.ok, "aio-kong's checks failed:\n{}", out.all());
    assert!(
        out.stdout.contains("aio-kong: all checks passed"),
        "{}",
        out.all()
    );
    let checks = out.stdout.lines().filter(|l| l.starts_with("ok: ")).count();
    assert_eq!(checks, 23, "every check ran:\n{}", out.stdout);
    assert!(
        kong.take_mutations().len() > 30,
        "the client changed the stand-in"
    );
}
