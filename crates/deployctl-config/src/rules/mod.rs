//! Rules serde cannot express: ranges, name formats, cross-field constraints, and the
//! limits the real services enforce (checked offline, before anything remote happens).
//!
//! `lambda` holds AWS Lambda's rules, `kubernetes` the cluster's, `names` the name and
//! label formats both use.

mod kubernetes;
mod lambda;
mod names;

use crate::load::Diags;
use crate::model::Config;
use names::{dns_label, env_name};

pub(crate) fn check(c: &Config, d: &mut Diags<'_>) {
    if !c.version.starts_with("1.") && c.version != "1" {
        d.value(
            "version",
            format!("unsupported config version `{}`", c.version),
            Some("this deployctl reads version \"1.0\"".to_owned()),
        );
    }
    dns_label(d, "app.name", &c.app.name, "the app name");
    crate::kong::check(c, d);
    crate::hooks::check(c, d);
    if c.app.version.is_empty() {
        d.value("app.version", "must not be empty", None);
    } else if !valid_tag(&c.app.version) {
        d.value(
            "app.version",
            format!("`{}` cannot be an image tag", c.app.version),
            Some(
                "use letters, digits, `_`, `.` and `-` (at most 128), not starting with `.` or `-`"
                    .to_owned(),
            ),
        );
    }
    if c.app.port == 0 {
        d.value(
            "app.port",
            "port 0 is not a port",
            Some("use 1 to 65535, e.g. 8080".to_owned()),
        );
    }
    http_path(d, "app.health_check_path", &c.app.health_check_path);
    if let Some(p) = &c.build.platform
        && p != "linux/amd64"
        && p != "linux/arm64"
    {
        d.value(
            "build.platform",
            format!("`{p}` is not supported"),
            Some("use linux/amd64 or linux/arm64".to_owned()),
        );
    }
    if let Some(n) = &c.build.network
        && !matches!(n.as_str(), "default" | "none" | "host")
    {
        d.value(
            "build.network",
            format!("`{n}` is not a build network"),
            Some("use default, none or host".to_owned()),
        );
    }
    let cache_refs = c
        .build
        .cache
        .from
        .iter()
        .enumerate()
        .map(|(i, r)| (format!("build.cache.from[{i}]"), r))
        .chain(
            c.build
                .cache
                .to
                .iter()
                .map(|r| ("build.cache.to".to_owned(), r)),
        );
    for (path, r) in cache_refs {
        if let Err(e) = deployctl_core::ImageRef::parse(r) {
            d.value(
                &path,
                format!("`{r}` is not an image reference: {e}"),
                Some(
                    "write host[:port]/repository:tag, e.g. 127.0.0.1:5000/app:buildcache"
                        .to_owned(),
                ),
            );
        }
    }
    if let Some(r) = &c.registry {
        if r.url.trim().is_empty() || r.url.contains("://") || r.url.contains(' ') {
            d.value(
                "registry.url",
                format!("`{}` is not a registry address", r.url),
                Some("write host[:port][/namespace] without a scheme, e.g. 127.0.0.1:5000 or ghcr.io/team".to_owned()),
            );
        }
        if r.username.is_some() != r.password.is_some() {
            d.value(
                "registry",
                "username and password must be given together",
                Some("set both, or neither to use another credential source".to_owned()),
            );
        }
    }
    for (k, _) in c.env.iter().chain(c.kubernetes.configmap.iter()) {
        env_name(d, "env", k);
    }
    for k in c.secrets.keys() {
        env_name(d, "secrets", k);
        if c.env.contains_key(k) {
            d.value(
                &format!("secrets.{k}"),
                format!("`{k}` is both in env and in secrets"),
                Some("keep it in secrets only".to_owned()),
            );
        }
    }
    if c.lambda.enabled {
        lambda::check(c, d);
    }
    if c.kubernetes.enabled {
        kubernetes::check(c, d);
    }
    if c.enabled_targets().is_empty() {
        d.value(
            "",
            "no target is enabled",
            Some("set `enabled: true` under lambda, kubernetes or local".to_owned()),
        );
    }
}

pub(super) fn range(
    d: &mut Diags<'_>,
    path: &str,
    v: u32,
    min: u32,
    max: u32,
    unit: &str,
    hint: &str,
) {
    if v < min {
        d.value(
            path,
            format!("{v} is below the minimum {min} {unit}"),
            Some(hint.to_owned()),
        );
    } else if v > max {
        d.value(
            path,
            format!("{v} is above the maximum {max} {unit}"),
            Some(hint.to_owned()),
        );
    }
}

pub(super) fn http_path(d: &mut Diags<'_>, path: &str, v: &str) {
    if !v.starts_with('/') || v.contains(char::is_whitespace) {
        d.value(
            path,
            format!("`{v}` is not an HTTP path"),
            Some("start with `/`, e.g. /health".to_owned()),
        );
    }
}

fn valid_tag(t: &str) -> bool {
    t.len() <= 128
        && t.starts_with(|ch: char| ch.is_ascii_alphanumeric() || ch == '_')
        && t.chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '.' | '-'))
}

/// Lambda's environment rules (names, reserved names, the 4 KB total), run again once
/// secret references have their values.
pub(crate) fn lambda_environment(c: &Config, d: &mut Diags<'_>) {
    lambda::environment_limits(c, d);
}
