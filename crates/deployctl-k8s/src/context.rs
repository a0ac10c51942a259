//! What templates see: the resource names, labels, the config and the derived Deployment
//! values (replicas, compute resources, probes, config checksum). Secret values are not
//! here: `render` adds them to the context of the two Secret templates only.

use std::collections::BTreeMap;

use deployctl_config::Config;
use serde::Serialize;

use crate::render::{MANAGED_BY, RenderInput, creates_pull_secret, has_config_data};

/// Resource names. The optional ones are `None` when the resource is neither rendered nor
/// referenced.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Names {
    deployment: String,
    service: String,
    ingress: String,
    hpa: String,
    pdb: String,
    network_policy: String,
    pub(crate) configmap: Option<String>,
    pub(crate) secret: Option<String>,
    pub(crate) pvc: Option<String>,
    service_account: Option<String>,
    image_pull_secret: Option<String>,
}

impl Names {
    pub(crate) fn new(config: &Config) -> Self {
        let app = config.app.name.as_str();
        let k = &config.kubernetes;
        let service_account = if k.tenant.is_some() {
            Some(crate::tenant::service_account_name(config))
        } else if k.service_account.create {
            Some(
                k.service_account
                    .name
                    .clone()
                    .unwrap_or_else(|| app.to_owned()),
            )
        } else {
            k.service_account.name.clone()
        };
        let image_pull_secret = match &k.image_pull_secret {
            Some(name) => Some(name.clone()),
            None if creates_pull_secret(config).is_some() => Some(format!("{app}-registry")),
            None => None,
        };
        Self {
            deployment: app.to_owned(),
            service: config.kubernetes_service_name().to_owned(),
            ingress: app.to_owned(),
            hpa: app.to_owned(),
            pdb: app.to_owned(),
            network_policy: app.to_owned(),
            configmap: has_config_data(config).then(|| format!("{app}-config")),
            secret: (!config.secrets.is_empty()).then(|| format!("{app}-secrets")),
            pvc: k.persistence.enabled.then(|| format!("{app}-data")),
            service_account,
            image_pull_secret,
        }
    }
}

/// A label value from arbitrary text: at most 63 of `[A-Za-z0-9._-]`, starting and ending
/// alphanumeric; other characters become `_`.
pub(crate) fn label_value(text: &str) -> String {
    let mapped: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let trimmed = mapped.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    let mut out: String = trimmed.chars().take(63).collect();
    while out.ends_with(|c: char| !c.is_ascii_alphanumeric()) {
        out.pop();
    }
    out
}

pub(crate) fn base_context(input: RenderInput<'_>, names: &Names) -> tera::Context {
    let config = input.config;
    let k = &config.kubernetes;
    let mut selector = BTreeMap::new();
    selector.insert("app.kubernetes.io/name", config.app.name.clone());
    selector.insert("app.kubernetes.io/instance", config.app.name.clone());
    let mut labels = selector.clone();
    let version = label_value(&config.app.version);
    if !version.is_empty() {
        labels.insert("app.kubernetes.io/version", version);
    }
    labels.insert("app.kubernetes.io/managed-by", MANAGED_BY.to_owned());
    let mut config_data = config.env.clone();
    config_data.extend(k.configmap.iter().map(|(k, v)| (k.clone(), v.clone())));
    let secret_keys: Vec<&str> = config.secrets.keys().map(String::as_str).collect();

    let mut ctx = tera::Context::new();
    ctx.insert("app", &config.app);
    ctx.insert("namespace", &k.namespace);
    ctx.insert(
        "image",
        &format!("{}@{}", input.image.reference.name(), input.image.digest),
    );
    ctx.insert("labels", &labels);
    ctx.insert("selector_labels", &selector);
    ctx.insert("names", names);
    ctx.insert("kubernetes", k);
    ctx.insert("config_data", &config_data);
    ctx.insert("secret_keys", &secret_keys);
    ctx.insert("deployment", &deployment_context(config));
    ctx
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct DeploymentContext {
    replicas: Option<i64>,
    resources: crate::compute::ResourceMap,
    probes: BTreeMap<&'static str, ProbeContext>,
    pub(crate) config_checksum: String,
}

#[derive(Debug, Clone, Serialize)]
struct ProbeContext {
    path: String,
    initial_delay_seconds: u32,
    period_seconds: u32,
    timeout_seconds: u32,
    failure_threshold: u32,
}

pub(crate) fn deployment_context(config: &Config) -> DeploymentContext {
    let d = &config.kubernetes.deployment;
    let resources = crate::compute::container_resources(&d.resources);
    let probe = |p: &deployctl_config::Probe| ProbeContext {
        path: p
            .path
            .clone()
            .unwrap_or_else(|| config.app.health_check_path.clone()),
        initial_delay_seconds: p.initial_delay_seconds,
        period_seconds: p.period_seconds,
        timeout_seconds: p.timeout_seconds,
        failure_threshold: p.failure_threshold,
    };
    let mut probes = BTreeMap::new();
    probes.insert("liveness", probe(&d.probes.liveness));
    probes.insert("readiness", probe(&d.probes.readiness));
    DeploymentContext {
        replicas: (!config.kubernetes.hpa.enabled).then_some(d.replicas),
        resources,
        probes,
        config_checksum: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_valid() {
        assert_eq!(label_value("2.3.1"), "2.3.1");
        assert_eq!(label_value("1.0+build.5"), "1.0_build.5");
        assert_eq!(label_value("-v1-"), "v1");
        assert_eq!(label_value("+++"), "");
        let long = "a".repeat(62) + "-b";
        assert_eq!(label_value(&long), "a".repeat(62));
    }
}
