//! Rules serde cannot express: ranges, name formats, cross-field constraints.

use crate::load::{Diags, did_you_mean};
use crate::model::{Config, IntOrPercent, ServiceType};

/// AWS regions deployctl knows (did-you-mean source; a well-formed unknown region is
/// reported too, since a typo there fails late and far away).
const REGIONS: &[&str] = &[
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-south-1",
    "ap-south-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "eu-central-1",
    "eu-central-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-south-1",
    "eu-south-2",
    "eu-north-1",
    "il-central-1",
    "me-south-1",
    "me-central-1",
    "mx-central-1",
    "sa-east-1",
    "us-gov-east-1",
    "us-gov-west-1",
    "cn-north-1",
    "cn-northwest-1",
];

pub(crate) fn check(c: &Config, d: &mut Diags<'_>) {
    if !c.version.starts_with("1.") && c.version != "1" {
        d.value(
            "version",
            format!("unsupported config version `{}`", c.version),
            Some("this deployctl reads version \"1.0\"".to_owned()),
        );
    }
    dns_label(d, "app.name", &c.app.name, "the app name");
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
        lambda(c, d);
    }
    if c.kubernetes.enabled {
        kubernetes(c, d);
    }
    if c.enabled_targets().is_empty() {
        d.value(
            "",
            "no target is enabled",
            Some("set `enabled: true` under lambda, kubernetes or local".to_owned()),
        );
    }
}

fn lambda(c: &Config, d: &mut Diags<'_>) {
    let l = &c.lambda;
    if let Some(region) = &l.region
        && !REGIONS.contains(&region.as_str())
    {
        let hint = match did_you_mean(region, REGIONS.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None => "use a region name such as us-east-1 or eu-west-1".to_owned(),
        };
        d.value(
            "lambda.region",
            format!("`{region}` is not an AWS region"),
            Some(hint),
        );
    }
    let f = &l.function;
    if let Some(name) = &f.name {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_');
        if !ok {
            d.value(
                "lambda.function.name",
                format!("`{name}` is not a valid function name"),
                Some("use 1 to 64 letters, digits, `-` and `_`".to_owned()),
            );
        }
    }
    range(
        d,
        "lambda.function.memory",
        f.memory,
        128,
        10240,
        "MB",
        "Lambda accepts 128 to 10240 MB",
    );
    range(
        d,
        "lambda.function.timeout",
        f.timeout,
        1,
        900,
        "seconds",
        "Lambda accepts 1 to 900 seconds",
    );
    range(
        d,
        "lambda.function.ephemeral_storage",
        f.ephemeral_storage,
        512,
        10240,
        "MB",
        "Lambda accepts 512 to 10240 MB of /tmp",
    );
    if let Some(role) = &l.iam.role
        && role.trim().is_empty()
    {
        d.value(
            "lambda.iam.role",
            "must not be empty",
            Some("name an existing role, or remove the key to let deployctl create one".to_owned()),
        );
    }
    for (i, p) in l.iam.policies.iter().enumerate() {
        if !p.starts_with("arn:") {
            d.value(
                &format!("lambda.iam.policies[{i}]"),
                format!("`{p}` is not a policy ARN"),
                Some("e.g. arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess".to_owned()),
            );
        }
    }
    if let Some(v) = &l.vpc
        && (v.subnet_ids.is_empty() != v.security_group_ids.is_empty() || v.subnet_ids.is_empty())
    {
        d.value(
            "lambda.vpc",
            "subnet_ids and security_group_ids must both be given",
            Some("a function in a VPC needs at least one subnet and one security group".to_owned()),
        );
    }
    if let Some(e) = &l.efs {
        if !e.access_point_arn.starts_with("arn:") || !e.access_point_arn.contains(":access-point/")
        {
            d.value(
                "lambda.efs.access_point_arn",
                format!("`{}` is not an EFS access point ARN", e.access_point_arn),
                Some("arn:aws:elasticfilesystem:<region>:<account>:access-point/fsap-…".to_owned()),
            );
        }
        if !e.mount_path.starts_with("/mnt/") || e.mount_path.len() <= 5 {
            d.value(
                "lambda.efs.mount_path",
                format!("`{}` is not under /mnt/", e.mount_path),
                Some("Lambda mounts EFS under /mnt/, e.g. /mnt/data".to_owned()),
            );
        }
        if l.vpc.is_none() {
            d.value(
                "lambda.efs",
                "EFS needs the function in a VPC",
                Some("add lambda.vpc with subnet_ids and security_group_ids".to_owned()),
            );
        }
    }
    let api = &l.api_gateway;
    if api.enabled && !api.kind.eq_ignore_ascii_case("HTTP") {
        let hint = if api.kind.eq_ignore_ascii_case("REST") {
            "REST APIs are not supported; an HTTP API (type: HTTP) is cheaper and faster for a proxy to one function"
        } else {
            "the only supported type is HTTP"
        };
        d.value(
            "lambda.api_gateway.type",
            format!("API type `{}` is not supported", api.kind),
            Some(hint.to_owned()),
        );
    }
    if let Some(t) = &api.throttling {
        if t.rate_limit.is_nan() || t.rate_limit <= 0.0 {
            d.value(
                "lambda.api_gateway.throttling.rate_limit",
                "must be greater than 0",
                None,
            );
        }
        if t.burst_limit == 0 {
            d.value(
                "lambda.api_gateway.throttling.burst_limit",
                "must be greater than 0",
                None,
            );
        }
    }
    if let Some(max_age) = api.cors.max_age
        && max_age > 86400
    {
        d.value(
            "lambda.api_gateway.cors.max_age",
            format!("{max_age} is above 86400 seconds"),
            Some("API Gateway caps CORS max age at 86400".to_owned()),
        );
    }
    if l.function_url.enabled
        && l.function_url.auth_type != "NONE"
        && l.function_url.auth_type != "AWS_IAM"
    {
        d.value(
            "lambda.function_url.auth_type",
            format!("`{}` is not allowed", l.function_url.auth_type),
            Some("use NONE or AWS_IAM".to_owned()),
        );
    }
}

fn kubernetes(c: &Config, d: &mut Diags<'_>) {
    let k = &c.kubernetes;
    dns_label(d, "kubernetes.namespace", &k.namespace, "a namespace");
    let dep = &k.deployment;
    if dep.replicas < 0 {
        d.value(
            "kubernetes.deployment.replicas",
            format!("{} replicas is negative", dep.replicas),
            Some("use 0 or more".to_owned()),
        );
    }
    for (which, amounts) in [
        ("requests", &dep.resources.requests),
        ("limits", &dep.resources.limits),
    ] {
        if let Some(cpu) = &amounts.cpu {
            quantity(
                d,
                &format!("kubernetes.deployment.resources.{which}.cpu"),
                cpu,
            );
        }
        if let Some(mem) = &amounts.memory {
            quantity(
                d,
                &format!("kubernetes.deployment.resources.{which}.memory"),
                mem,
            );
        }
    }
    for (which, probe) in [
        ("liveness", &dep.probes.liveness),
        ("readiness", &dep.probes.readiness),
    ] {
        if let Some(p) = &probe.path {
            http_path(d, &format!("kubernetes.deployment.probes.{which}.path"), p);
        }
        if probe.period_seconds == 0 || probe.timeout_seconds == 0 || probe.failure_threshold == 0 {
            d.value(
                &format!("kubernetes.deployment.probes.{which}"),
                "period_seconds, timeout_seconds and failure_threshold must be at least 1",
                None,
            );
        }
    }
    for (name, v) in [
        ("max_surge", &dep.strategy.max_surge),
        ("max_unavailable", &dep.strategy.max_unavailable),
    ] {
        let path = format!("kubernetes.deployment.strategy.{name}");
        match v {
            IntOrPercent::Int(n) if *n < 0 => d.value(&path, format!("{n} is negative"), None),
            IntOrPercent::Text(t) if !is_percent(t) => d.value(
                &path,
                format!("`{t}` is neither a whole number nor a percentage"),
                Some("e.g. 1 or \"25%\"".to_owned()),
            ),
            _ => {}
        }
    }
    if matches!(dep.strategy.max_surge, IntOrPercent::Int(0))
        && matches!(dep.strategy.max_unavailable, IntOrPercent::Int(0))
    {
        d.value(
            "kubernetes.deployment.strategy",
            "max_surge and max_unavailable cannot both be 0",
            Some("a rollout could never make progress".to_owned()),
        );
    }
    let svc = &k.service;
    if svc.port == 0 {
        d.value("kubernetes.service.port", "port 0 is not a port", None);
    }
    if let Some(np) = svc.node_port {
        if svc.kind != ServiceType::NodePort && svc.kind != ServiceType::LoadBalancer {
            d.value(
                "kubernetes.service.node_port",
                "node_port needs service type NodePort or LoadBalancer",
                Some("set kubernetes.service.type: NodePort, or remove node_port".to_owned()),
            );
        }
        if !(30000..=32767).contains(&np) {
            d.value(
                "kubernetes.service.node_port",
                format!("{np} is outside 30000-32767"),
                Some("Kubernetes allocates node ports from 30000 to 32767 by default".to_owned()),
            );
        }
    }
    let ing = &k.ingress;
    if ing.enabled && ing.hosts.is_empty() {
        d.value(
            "kubernetes.ingress.hosts",
            "an enabled ingress needs at least one host",
            Some("add hosts: [{ host: app.example.com }]".to_owned()),
        );
    }
    for (i, h) in ing.hosts.iter().enumerate() {
        if h.host.is_empty()
            || h.host.contains('/')
            || h.host.contains(':')
            || h.host.chars().any(|ch| ch.is_ascii_uppercase())
        {
            d.value(
                &format!("kubernetes.ingress.hosts[{i}].host"),
                format!("`{}` is not a host name", h.host),
                Some("a lowercase DNS name without scheme or port".to_owned()),
            );
        }
        for (j, p) in h.paths.iter().enumerate() {
            if !p.path.starts_with('/') {
                d.value(
                    &format!("kubernetes.ingress.hosts[{i}].paths[{j}].path"),
                    format!("`{}` does not start with /", p.path),
                    None,
                );
            }
            if !["Prefix", "Exact", "ImplementationSpecific"].contains(&p.path_type.as_str()) {
                d.value(
                    &format!("kubernetes.ingress.hosts[{i}].paths[{j}].path_type"),
                    format!("`{}` is not a path type", p.path_type),
                    Some("use Prefix, Exact or ImplementationSpecific".to_owned()),
                );
            }
        }
    }
    let hpa = &k.hpa;
    if hpa.enabled {
        if hpa.min_replicas == 0 {
            d.value("kubernetes.hpa.min_replicas", "must be at least 1", None);
        }
        if hpa.min_replicas > hpa.max_replicas {
            d.value(
                "kubernetes.hpa.max_replicas",
                format!(
                    "max_replicas {} is below min_replicas {}",
                    hpa.max_replicas, hpa.min_replicas
                ),
                Some("max_replicas must be at least min_replicas".to_owned()),
            );
        }
        if hpa.cpu_target_percent.is_none() && hpa.memory_target_percent.is_none() {
            d.value(
                "kubernetes.hpa",
                "an autoscaler needs cpu_target_percent or memory_target_percent",
                None,
            );
        }
        for (name, v) in [
            ("cpu_target_percent", hpa.cpu_target_percent),
            ("memory_target_percent", hpa.memory_target_percent),
        ] {
            if let Some(p) = v
                && (p == 0 || p > 100)
            {
                d.value(
                    &format!("kubernetes.hpa.{name}"),
                    format!("{p} is not a percentage from 1 to 100"),
                    None,
                );
            }
        }
    }
    let pv = &k.persistence;
    if pv.enabled {
        quantity(d, "kubernetes.persistence.size", &pv.size);
        if !pv.mount_path.starts_with('/') {
            d.value(
                "kubernetes.persistence.mount_path",
                format!("`{}` is not an absolute path", pv.mount_path),
                None,
            );
        }
        if ![
            "ReadWriteOnce",
            "ReadWriteMany",
            "ReadOnlyMany",
            "ReadWriteOncePod",
        ]
        .contains(&pv.access_mode.as_str())
        {
            d.value(
                "kubernetes.persistence.access_mode",
                format!("`{}` is not an access mode", pv.access_mode),
                Some(
                    "use ReadWriteOnce, ReadWriteMany, ReadOnlyMany or ReadWriteOncePod".to_owned(),
                ),
            );
        }
    }
    if let Some(name) = &k.service_account.name {
        dns_subdomain(d, "kubernetes.service_account.name", name);
    }
    if let Some(name) = &k.image_pull_secret {
        dns_subdomain(d, "kubernetes.image_pull_secret", name);
    }
    if k.rollout.timeout_seconds == 0 {
        d.value(
            "kubernetes.rollout.timeout_seconds",
            "must be at least 1",
            None,
        );
    }
}

fn range(d: &mut Diags<'_>, path: &str, v: u32, min: u32, max: u32, unit: &str, hint: &str) {
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

fn dns_label(d: &mut Diags<'_>, path: &str, v: &str, what: &str) {
    let ok = !v.is_empty()
        && v.len() <= 63
        && v.chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-')
        && !v.starts_with('-')
        && !v.ends_with('-');
    if !ok {
        let mut hint = "use at most 63 lowercase letters, digits and `-`, starting and ending with a letter or digit".to_owned();
        let fixed: String = v
            .to_ascii_lowercase()
            .chars()
            .map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '-' })
            .collect::<String>()
            .trim_matches('-')
            .chars()
            .take(63)
            .collect();
        if !fixed.is_empty() && fixed != v {
            hint = format!("{hint}, e.g. `{fixed}`");
        }
        let shown = if v.len() > 70 {
            format!(
                "{}…",
                &v[..v.char_indices().nth(60).map_or(v.len(), |(i, _)| i)]
            )
        } else {
            v.to_owned()
        };
        d.value(
            path,
            format!("`{shown}` is not a valid name for {what}"),
            Some(hint),
        );
    }
}

fn dns_subdomain(d: &mut Diags<'_>, path: &str, v: &str) {
    let ok = !v.is_empty()
        && v.len() <= 253
        && v.chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-' || ch == '.')
        && v.starts_with(|ch: char| ch.is_ascii_alphanumeric())
        && v.ends_with(|ch: char| ch.is_ascii_alphanumeric());
    if !ok {
        d.value(
            path,
            format!("`{v}` is not a valid Kubernetes name"),
            Some("lowercase letters, digits, `-` and `.`".to_owned()),
        );
    }
}

fn env_name(d: &mut Diags<'_>, section: &str, k: &str) {
    let ok = k.starts_with(|ch: char| ch.is_ascii_alphabetic() || ch == '_')
        && k.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
    if !ok {
        d.key(
            &format!("{section}.{k}"),
            format!("`{k}` is not a valid environment variable name"),
            Some("letters, digits and `_`, not starting with a digit".to_owned()),
        );
    }
}

fn http_path(d: &mut Diags<'_>, path: &str, v: &str) {
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

fn is_percent(t: &str) -> bool {
    t.strip_suffix('%')
        .is_some_and(|n| !n.is_empty() && n.chars().all(|ch| ch.is_ascii_digit()))
}

/// Kubernetes resource quantity: a decimal number with an optional suffix.
fn quantity(d: &mut Diags<'_>, path: &str, q: &str) {
    if !is_quantity(q) {
        d.value(
            path,
            format!("`{q}` is not a Kubernetes quantity"),
            Some("e.g. 250m or 0.5 for CPU, 256Mi or 1Gi for memory and storage".to_owned()),
        );
    }
}

pub(crate) fn is_quantity(q: &str) -> bool {
    let suffixes = [
        "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u", "m", "k", "M", "G", "T", "P", "E", "",
    ];
    let body = q.strip_prefix(['+', '-']).unwrap_or(q);
    for s in suffixes {
        if let Some(num) = body.strip_suffix(s)
            && is_decimal(num)
        {
            return true;
        }
    }
    // Exponent form: 1e3, 1.5E-2
    if let Some(i) = body.find(['e', 'E']) {
        let (m, e) = (&body[..i], &body[i + 1..]);
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        return is_decimal(m) && !e.is_empty() && e.chars().all(|ch| ch.is_ascii_digit());
    }
    false
}

fn is_decimal(s: &str) -> bool {
    let mut parts = s.splitn(2, '.');
    let int = parts.next().unwrap_or_default();
    let frac = parts.next();
    let digits = |x: &str| x.chars().all(|ch| ch.is_ascii_digit());
    match frac {
        None => !int.is_empty() && digits(int),
        Some(f) => (!int.is_empty() || !f.is_empty()) && digits(int) && digits(f),
    }
}

#[cfg(test)]
mod tests {
    use super::is_quantity;

    #[test]
    fn quantities() {
        for ok in [
            "1", "250m", "0.5", ".5", "1Gi", "512Mi", "1e3", "2.5E-2", "100k", "+1",
        ] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in ["", "1GB", "abc", "1.2.3", "Mi", "1 Gi", "--1"] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }
}
