//! Kubernetes' rules and limits.

use std::collections::BTreeMap;

use super::http_path;
use super::names::{dns_label, dns_subdomain, is_dns_subdomain, is_label_value, is_qualified_name};
use crate::load::Diags;
use crate::model::{Config, IntOrPercent, ServiceType};

pub(super) fn check(c: &Config, d: &mut Diags<'_>) {
    let k = &c.kubernetes;
    // A namespace derived from an invalid org or project is reported there, once.
    let derived_from_bad_tenant = k.tenant.as_ref().is_some_and(|t| {
        k.namespace == t.default_namespace()
            && !(super::names::is_dns_label(&t.org) && super::names::is_dns_label(&t.project))
    });
    if !derived_from_bad_tenant {
        dns_label(d, "kubernetes.namespace", &k.namespace, "a namespace");
    }
    if let Some(t) = &k.tenant {
        tenant(d, t);
    }
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
        if !is_host(&h.host) {
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
    if let Some(class) = &ing.class {
        dns_subdomain(d, "kubernetes.ingress.class", class);
    }
    for (i, t) in ing.tls.iter().enumerate() {
        dns_subdomain(
            d,
            &format!("kubernetes.ingress.tls[{i}].secret_name"),
            &t.secret_name,
        );
        for (j, h) in t.hosts.iter().enumerate() {
            if !is_host(h) {
                d.value(
                    &format!("kubernetes.ingress.tls[{i}].hosts[{j}]"),
                    format!("`{h}` is not a host name"),
                    Some("a lowercase DNS name without scheme or port".to_owned()),
                );
            }
        }
    }
    annotations(d, "kubernetes.ingress.annotations", &ing.annotations);
    annotations(
        d,
        "kubernetes.service_account.annotations",
        &k.service_account.annotations,
    );
    if let Some(class) = &k.persistence.storage_class {
        dns_subdomain(d, "kubernetes.persistence.storage_class", class);
    }
    let np = &k.network_policy;
    for (i, ns) in np.allow_namespaces.iter().enumerate() {
        dns_label(
            d,
            &format!("kubernetes.network_policy.allow_namespaces[{i}]"),
            ns,
            "a namespace",
        );
    }
    for (key, value) in &np.allow_pod_labels {
        let path = format!("kubernetes.network_policy.allow_pod_labels.{key}");
        if !is_qualified_name(key) {
            d.key(
                &path,
                format!("`{key}` is not a valid label key"),
                Some(QUALIFIED_NAME_HINT.to_owned()),
            );
        }
        if !is_label_value(value) {
            d.value(
                &path,
                format!("`{value}` is not a valid label value"),
                Some(
                    "at most 63 letters, digits, `-`, `_` and `.`, starting and ending with a \
                     letter or digit"
                        .to_owned(),
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

/// Kubernetes' limit on the annotations of one object: keys and values together.
pub(crate) const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;

const QUALIFIED_NAME_HINT: &str = "`[prefix/]name`: the prefix a DNS subdomain (e.g. \
    example.com), the name at most 63 letters, digits, `-`, `_` and `.`, starting and ending \
    with a letter or digit";

/// A host name as an Ingress accepts it: a DNS-1123 subdomain, optionally `*.` first.
fn is_host(h: &str) -> bool {
    is_dns_subdomain(h.strip_prefix("*.").unwrap_or(h))
}

/// Annotation keys are qualified names; keys and values together at most 256 KiB.
fn annotations(d: &mut Diags<'_>, path: &str, a: &BTreeMap<String, String>) {
    for key in a.keys() {
        if !is_qualified_name(key) {
            d.key(
                &format!("{path}.{key}"),
                format!("`{key}` is not a valid annotation key"),
                Some(QUALIFIED_NAME_HINT.to_owned()),
            );
        }
    }
    let total: usize = a.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > ANNOTATIONS_MAX_BYTES {
        d.value(
            path,
            format!(
                "the annotations are {total} bytes, above Kubernetes' limit of {ANNOTATIONS_MAX_BYTES} bytes (256 KiB) per object"
            ),
            Some("keys and values count together; keep large data out of annotations".to_owned()),
        );
    }
}

fn is_percent(t: &str) -> bool {
    t.strip_suffix('%')
        .is_some_and(|n| !n.is_empty() && n.chars().all(|ch| ch.is_ascii_digit()))
}

/// Kubernetes resource quantity: a decimal number with an optional suffix.
/// `kubernetes.tenant`: names are DNS-1123 labels, amounts are quantities.
fn tenant(d: &mut Diags<'_>, t: &crate::tenant::Tenant) {
    dns_label(d, "kubernetes.tenant.org", &t.org, "an organisation");
    dns_label(d, "kubernetes.tenant.project", &t.project, "a project");
    dns_label(
        d,
        "kubernetes.tenant.ingress_namespace",
        &t.ingress_namespace,
        "a namespace",
    );
    let q = &t.quota;
    for (name, v) in [
        ("cpu", &q.cpu),
        ("memory", &q.memory),
        ("storage", &q.storage),
    ] {
        quantity(d, &format!("kubernetes.tenant.quota.{name}"), v);
    }
    for (which, a) in [
        ("default_requests", &t.limits.default_requests),
        ("default_limits", &t.limits.default_limits),
    ] {
        for (name, v) in [("cpu", &a.cpu), ("memory", &a.memory)] {
            if let Some(v) = v {
                quantity(d, &format!("kubernetes.tenant.limits.{which}.{name}"), v);
            }
        }
    }
}

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
