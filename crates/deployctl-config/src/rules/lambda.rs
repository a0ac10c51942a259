//! AWS Lambda's rules and limits.

use std::collections::BTreeMap;

use super::names::is_env_name;
use super::range;
use crate::load::{Diags, did_you_mean};
use crate::model::Config;

/// Lambda's limit on the function's environment: the variables as compact JSON
/// (`{"KEY":"value",…}`), which is the string Lambda measures ("String measured: {…}" in
/// its `InvalidParameterValueException`).
pub(crate) const LAMBDA_ENV_MAX_BYTES: usize = 4096;

/// Keys Lambda reserves and refuses in a function's configuration (AWS Lambda Developer
/// Guide, "Defined runtime environment variables", reserved list).
const RESERVED_ENV: &[&str] = &[
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
    "TZ",
];

/// Lambda's key pattern: `[a-zA-Z]([a-zA-Z0-9_])+`.
fn lambda_env_key(k: &str) -> bool {
    k.len() >= 2
        && k.starts_with(|ch: char| ch.is_ascii_alphabetic())
        && k.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

/// One variable of the function's environment: where it comes from and its size.
struct EnvVar<'a> {
    path: String,
    key: std::borrow::Cow<'a, str>,
    value: &'a str,
    secret: bool,
}

/// The function's environment as the Lambda target builds it: `env`, then
/// `lambda.function.env` over it, then `secrets`, then the variables deployctl adds.
fn environment(c: &Config) -> (Vec<EnvVar<'_>>, BTreeMap<&str, String>) {
    let f = &c.lambda.function;
    let mut vars: Vec<EnvVar<'_>> = Vec::new();
    for (k, v) in &c.env {
        if !f.env.contains_key(k) && !c.secrets.contains_key(k) {
            vars.push(EnvVar {
                path: format!("env.{k}"),
                key: k.into(),
                value: v,
                secret: false,
            });
        }
    }
    for (k, v) in &f.env {
        if !c.secrets.contains_key(k) {
            vars.push(EnvVar {
                path: format!("lambda.function.env.{k}"),
                key: k.into(),
                value: v,
                secret: false,
            });
        }
    }
    let by_reference = c.lambda.secrets == crate::model::LambdaSecrets::Reference;
    for (k, v) in &c.secrets {
        match c.secret_sources.get(k) {
            Some(source) if by_reference => vars.push(EnvVar {
                path: format!("secrets.{k}"),
                key: source.reference_variable(k).into(),
                value: source.id(),
                secret: false,
            }),
            _ => vars.push(EnvVar {
                path: format!("secrets.{k}"),
                key: k.into(),
                value: v.expose(),
                secret: true,
            }),
        }
    }
    let port = c.app.port.to_string();
    let mut added = BTreeMap::new();
    added.insert("PORT", port.clone());
    added.insert("AWS_LWA_PORT", port);
    added.insert(
        "AWS_LWA_READINESS_CHECK_PATH",
        c.app.health_check_path.clone(),
    );
    vars.retain(|v| !added.contains_key(v.key.as_ref()));
    (vars, added)
}

/// Key rules, reserved names and the 4 KB total. Values are never shown; a secret
/// counts toward the size and is shown as `***`.
pub(super) fn environment_limits(c: &Config, d: &mut Diags<'_>) {
    let (vars, added) = environment(c);
    for v in &vars {
        if !is_env_name(&v.key) {
            continue; // reported by the general rule
        }
        if RESERVED_ENV.contains(&v.key.as_ref()) {
            d.key(
                &v.path,
                format!("`{}` is reserved by Lambda and cannot be set", v.key),
                Some("Lambda sets it itself; rename the variable".to_owned()),
            );
        } else if !lambda_env_key(&v.key) {
            d.key(
                &v.path,
                format!("`{}` is not a valid Lambda environment variable name", v.key),
                Some(
                    "Lambda variable names are 2 or more letters, digits and `_`, starting with a letter"
                        .to_owned(),
                ),
            );
        }
    }
    let mut json: BTreeMap<&str, &str> = vars.iter().map(|v| (v.key.as_ref(), v.value)).collect();
    json.extend(added.iter().map(|(k, v)| (*k, v.as_str())));
    let total = serde_json::to_string(&json).map_or(0, |s| s.len());
    if total <= LAMBDA_ENV_MAX_BYTES {
        return;
    }
    let size = |v: &EnvVar<'_>| {
        serde_json::to_string(&v.key).map_or(0, |s| s.len())
            + serde_json::to_string(v.value).map_or(0, |s| s.len())
            + 2
    };
    let mut largest: Vec<&EnvVar<'_>> = vars.iter().collect();
    largest.sort_by_key(|v| std::cmp::Reverse(size(v)));
    let Some(first) = largest.first() else {
        return;
    };
    let listed: Vec<String> = largest
        .iter()
        .take(3)
        .map(|v| {
            if v.secret {
                format!("{}=*** ({} bytes)", v.key, size(v))
            } else {
                format!("{} ({} bytes)", v.key, size(v))
            }
        })
        .collect();
    d.value(
        &first.path,
        format!(
            "the Lambda environment is {total} bytes, above Lambda's {LAMBDA_ENV_MAX_BYTES}-byte limit (largest: {})",
            listed.join(", ")
        ),
        Some(
            "Lambda counts every variable as compact JSON, including PORT, AWS_LWA_PORT and \
             AWS_LWA_READINESS_CHECK_PATH that deployctl adds; move large values out (e.g. to \
             SSM Parameter Store or Secrets Manager, read at startup)"
                .to_owned(),
        ),
    );
}

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

pub(super) fn check(c: &Config, d: &mut Diags<'_>) {
    let l = &c.lambda;
    if l.secrets == crate::model::LambdaSecrets::Reference {
        for k in c
            .secrets
            .keys()
            .filter(|k| !c.secret_sources.contains_key(*k))
        {
            d.value(
                &format!("secrets.{k}"),
                "lambda.secrets is `reference`, but this value is written in deploy.yaml (or an environment variable), so it has no reference to pass",
                Some("keep it in Secrets Manager ({ aws_secret: … }) or Parameter Store ({ ssm: … }), or set lambda.secrets: value".to_owned()),
            );
        }
    }
    if let Some(r) = &c.registry
        && !c.registry_is_ecr()
    {
        d.value(
            "registry.url",
            format!(
                "Lambda runs images only from Amazon ECR, but the images go to `{}`",
                c.image_repository()
            ),
            Some(format!(
                "remove `registry:` to push to the deploying account's ECR (<account>.dkr.ecr.<region>.amazonaws.com/{}), or set registry.url to an ECR registry{}",
                c.app.name,
                if r.url.is_empty() { "" } else { " — Kubernetes can pull from ECR too" }
            )),
        );
    }
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
    environment_limits(c, d);
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
