//! Reading what is deployed now. Every call here is a read (Get/List/Describe). Reads that
//! do not depend on each other run at once: the role, the function (then its alias,
//! versions and concurrency, then the alias' policy and URL), the HTTP API and the log group.

use std::collections::BTreeMap;

use aws_sdk_lambda::types::FunctionConfiguration;

use crate::clients::AwsClients;
use crate::error::AwsError;
use crate::spec::{ALIAS, CorsSpec, LambdaSpec, MANAGED_BY, TAG_APP, TAG_MANAGED_BY};

/// Sid of the permission that lets the HTTP API invoke the alias.
pub(crate) const API_PERMISSION_SID: &str = "deployctl-apigateway";
/// Sid of the permission that lets anyone invoke a `NONE`-auth function URL.
pub(crate) const URL_PERMISSION_SID: &str = "deployctl-function-url";

#[derive(Debug, Clone, Default)]
pub(crate) struct Observed {
    pub role: Option<RoleState>,
    pub function: Option<FunctionState>,
    pub concurrency: Option<i32>,
    pub alias: Option<AliasState>,
    /// Published versions (numeric), oldest first, with their fingerprints.
    pub versions: Vec<(u64, String)>,
    pub api: Option<ApiState>,
    /// Other HTTP APIs with the same name and this app's tags, which concurrent deploys of
    /// an older deployctl could create: never used, deleted by the next deploy or destroy.
    pub extra_apis: Vec<String>,
    /// Statement id → source ARN (or principal) of the alias' resource policy.
    pub permissions: BTreeMap<String, String>,
    pub url: Option<(String, String)>,
    /// Log group exists; `Some(true)` when it carries deployctl's tag.
    pub log_group: Option<bool>,
}

#[derive(Debug, Clone)]
pub(crate) struct RoleState {
    pub arn: String,
    pub managed: bool,
    pub trusts_lambda: bool,
    pub policies: Vec<String>,
    pub inline: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FunctionState {
    pub managed: bool,
    pub image_uri: Option<String>,
    pub memory: Option<i32>,
    pub timeout: Option<i32>,
    pub architecture: Option<String>,
    pub ephemeral_storage: Option<i32>,
    pub environment: BTreeMap<String, String>,
    pub role: Option<String>,
    pub vpc: Option<(Vec<String>, Vec<String>)>,
    pub efs: Option<(String, String)>,
    pub revision_id: Option<String>,
    pub state: Option<String>,
    pub last_update_status: Option<String>,
    pub last_modified: Option<String>,
    pub fingerprint: String,
}

#[derive(Debug, Clone)]
pub(crate) struct AliasState {
    pub version: String,
    pub revision_id: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct ApiState {
    pub id: String,
    pub endpoint: Option<String>,
    pub cors: Option<CorsSpec>,
    /// (integration id, integration uri, payload format version)
    pub integration: Option<(String, String, String)>,
    /// (route id, target)
    pub route: Option<(String, String)>,
    /// (auto deploy, throttling)
    pub stage: Option<(bool, Option<(f64, i32)>)>,
}

impl ApiState {
    /// The ARN pattern the API invokes the function with.
    pub fn source_arn(&self, spec: &LambdaSpec) -> String {
        format!(
            "arn:aws:execute-api:{}:{}:{}/*",
            spec.region, spec.account_id, self.id
        )
    }
}

fn is_managed<'a>(mut tags: impl Iterator<Item = (&'a String, &'a String)>) -> bool {
    tags.any(|(k, v)| k == TAG_MANAGED_BY && v == MANAGED_BY)
}

fn not_found(e: &AwsError) -> bool {
    matches!(
        e.code(),
        Some("ResourceNotFoundException" | "NoSuchEntity" | "NotFoundException")
    )
}

/// Reads everything the spec names.
pub(crate) async fn observe(c: &AwsClients, spec: &LambdaSpec) -> Result<Observed, AwsError> {
    let name = spec.function_name.as_str();
    let function = async {
        let Some(function) = read_function(c, name).await? else {
            return Ok::<_, AwsError>(Observed::default());
        };
        let alias_side = async {
            let alias = read_alias(c, name).await?;
            if alias.is_none() {
                return Ok((None, BTreeMap::new(), None));
            }
            let (permissions, url) =
                tokio::try_join!(read_permissions(c, name), read_url(c, name))?;
            Ok((alias, permissions, url))
        };
        let (concurrency, versions, (alias, permissions, url)) = tokio::try_join!(
            read_concurrency(c, name),
            read_versions(c, name),
            alias_side
        )?;
        Ok(Observed {
            function: Some(function),
            concurrency,
            alias,
            versions,
            permissions,
            url,
            ..Observed::default()
        })
    };
    let (role, function, (api, extra_apis), log_group) = tokio::try_join!(
        read_role(c, &spec.role.name),
        function,
        find_apis(c, spec),
        read_log_group(c, &spec.log_group),
    )?;
    Ok(Observed {
        role,
        api,
        extra_apis,
        log_group,
        ..function
    })
}

pub(crate) async fn read_role(c: &AwsClients, name: &str) -> Result<Option<RoleState>, AwsError> {
    let got = match c.iam.get_role().role_name(name).send().await {
        Ok(o) => o,
        Err(e) => {
            let e = AwsError::sdk("iam", "GetRole", name, e);
            return if not_found(&e) { Ok(None) } else { Err(e) };
        }
    };
    let Some(role) = got.role() else {
        return Ok(None);
    };
    let trust = role
        .assume_role_policy_document()
        .map(percent_decode)
        .unwrap_or_default();
    let managed = role
        .tags()
        .iter()
        .any(|t| t.key() == TAG_MANAGED_BY && t.value() == MANAGED_BY);
    let mut state = RoleState {
        arn: role.arn().to_owned(),
        managed,
        trusts_lambda: trusts_lambda(&trust),
        policies: Vec::new(),
        inline: BTreeMap::new(),
    };
    if managed {
        let attached = async {
            c.iam
                .list_attached_role_policies()
                .role_name(name)
                .send()
                .await
                .map_err(|e| AwsError::sdk("iam", "ListAttachedRolePolicies", name, e))
        };
        let inline = async {
            let names = c
                .iam
                .list_role_policies()
                .role_name(name)
                .send()
                .await
                .map_err(|e| AwsError::sdk("iam", "ListRolePolicies", name, e))?;
            futures::future::try_join_all(names.policy_names().iter().map(|policy| async move {
                let doc = c
                    .iam
                    .get_role_policy()
                    .role_name(name)
                    .policy_name(policy)
                    .send()
                    .await
                    .map_err(|e| AwsError::sdk("iam", "GetRolePolicy", name, e))?;
                let value = serde_json::from_str(&percent_decode(doc.policy_document()))
                    .unwrap_or(serde_json::Value::Null);
                Ok::<_, AwsError>((policy.clone(), value))
            }))
            .await
        };
        let (attached, inline) = tokio::try_join!(attached, inline)?;
        state.policies = attached
            .attached_policies()
            .iter()
            .filter_map(|p| p.policy_arn().map(str::to_owned))
            .collect();
        state.inline = inline.into_iter().collect();
    }
    Ok(Some(state))
}

/// Whether a trust policy lets Lambda assume the role.
fn trusts_lambda(doc: &str) -> bool {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(doc) else {
        return false;
    };
    let statements = match &v["Statement"] {
        serde_json::Value::Array(a) => a.clone(),
        s @ serde_json::Value::Object(_) => vec![s.clone()],
        _ => Vec::new(),
    };
    statements.iter().any(|s| {
        let allow = s["Effect"] == "Allow";
        let action = match &s["Action"] {
            serde_json::Value::String(a) => a == "sts:AssumeRole" || a == "sts:*" || a == "*",
            serde_json::Value::Array(a) => a
                .iter()
                .any(|a| a == "sts:AssumeRole" || a == "sts:*" || a == "*"),
            _ => false,
        };
        let service = &s["Principal"]["Service"];
        let lambda = match service {
            serde_json::Value::String(p) => p == "lambda.amazonaws.com",
            serde_json::Value::Array(a) => a.iter().any(|p| p == "lambda.amazonaws.com"),
            _ => false,
        };
        allow && action && lambda
    })
}

/// IAM returns policy documents URL-encoded.
pub(crate) fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_owned();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(hex) = std::str::from_utf8(&bytes[i + 1..i + 3])
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A comparable summary of a function version's code and configuration.
pub(crate) fn fingerprint(f: &FunctionConfiguration) -> String {
    let env: BTreeMap<&str, &str> = f
        .environment()
        .and_then(|e| e.variables())
        .map(|v| v.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect())
        .unwrap_or_default();
    let vpc = f.vpc_config().map(|v| {
        let mut s = v.subnet_ids().to_vec();
        let mut g = v.security_group_ids().to_vec();
        s.sort();
        g.sort();
        (s, g)
    });
    let fs: Vec<(&str, &str)> = f
        .file_system_configs()
        .iter()
        .map(|c| (c.arn(), c.local_mount_path()))
        .collect();
    serde_json::json!({
        "code": f.code_sha256(),
        "memory": f.memory_size(),
        "timeout": f.timeout(),
        "arch": f.architectures().iter().map(|a| a.as_str()).collect::<Vec<_>>(),
        "tmp": f.ephemeral_storage().map(|e| e.size()),
        "env": env,
        "vpc": vpc,
        "fs": fs,
        "role": f.role(),
    })
    .to_string()
}

pub(crate) async fn read_function(
    c: &AwsClients,
    name: &str,
) -> Result<Option<FunctionState>, AwsError> {
    let got = match c.lambda.get_function().function_name(name).send().await {
        Ok(o) => o,
        Err(e) => {
            let e = AwsError::sdk("lambda", "GetFunction", name, e);
            return if not_found(&e) { Ok(None) } else { Err(e) };
        }
    };
    let Some(conf) = got.configuration() else {
        return Ok(None);
    };
    let managed = got.tags().is_some_and(|t| is_managed(t.iter()));
    let vpc = conf
        .vpc_config()
        .filter(|v| !v.subnet_ids().is_empty() || !v.security_group_ids().is_empty())
        .map(|v| {
            let mut s = v.subnet_ids().to_vec();
            let mut g = v.security_group_ids().to_vec();
            s.sort();
            g.sort();
            (s, g)
        });
    Ok(Some(FunctionState {
        managed,
        image_uri: got.code().and_then(|c| c.image_uri()).map(str::to_owned),
        memory: conf.memory_size(),
        timeout: conf.timeout(),
        architecture: conf.architectures().first().map(|a| a.as_str().to_owned()),
        ephemeral_storage: conf.ephemeral_storage().map(|e| e.size()),
        environment: conf
            .environment()
            .and_then(|e| e.variables())
            .map(|v| v.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
        role: conf.role().map(str::to_owned),
        vpc,
        efs: conf
            .file_system_configs()
            .first()
            .map(|f| (f.arn().to_owned(), f.local_mount_path().to_owned())),
        revision_id: conf.revision_id().map(str::to_owned),
        state: conf.state().map(|s| s.as_str().to_owned()),
        last_update_status: conf.last_update_status().map(|s| s.as_str().to_owned()),
        last_modified: conf.last_modified().map(str::to_owned),
        fingerprint: fingerprint(conf),
    }))
}

async fn read_concurrency(c: &AwsClients, name: &str) -> Result<Option<i32>, AwsError> {
    let got = c
        .lambda
        .get_function_concurrency()
        .function_name(name)
        .send()
        .await
        .map_err(|e| AwsError::sdk("lambda", "GetFunctionConcurrency", name, e))?;
    Ok(got.reserved_concurrent_executions())
}

pub(crate) async fn read_alias(c: &AwsClients, name: &str) -> Result<Option<AliasState>, AwsError> {
    match c
        .lambda
        .get_alias()
        .function_name(name)
        .name(ALIAS)
        .send()
        .await
    {
        Ok(a) => Ok(a.function_version().map(|v| AliasState {
            version: v.to_owned(),
            revision_id: a.revision_id().map(str::to_owned),
        })),
        Err(e) => {
            let e = AwsError::sdk("lambda", "GetAlias", format!("{name}:{ALIAS}"), e);
            if not_found(&e) { Ok(None) } else { Err(e) }
        }
    }
}

/// Published versions with fingerprints, oldest first; `$LATEST` excluded.
pub(crate) async fn read_versions(
    c: &AwsClients,
    name: &str,
) -> Result<Vec<(u64, String)>, AwsError> {
    let mut out = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let page = c
            .lambda
            .list_versions_by_function()
            .function_name(name)
            .set_marker(marker.clone())
            .send()
            .await
            .map_err(|e| AwsError::sdk("lambda", "ListVersionsByFunction", name, e))?;
        for v in page.versions() {
            if let Some(n) = v.version().and_then(|n| n.parse::<u64>().ok()) {
                out.push((n, fingerprint(v)));
            }
        }
        match page.next_marker() {
            Some(m) if !m.is_empty() => marker = Some(m.to_owned()),
            _ => break,
        }
    }
    out.sort_by_key(|(n, _)| *n);
    Ok(out)
}

async fn read_permissions(
    c: &AwsClients,
    name: &str,
) -> Result<BTreeMap<String, String>, AwsError> {
    let policy = match c
        .lambda
        .get_policy()
        .function_name(name)
        .qualifier(ALIAS)
        .send()
        .await
    {
        Ok(p) => p.policy().unwrap_or_default().to_owned(),
        Err(e) => {
            let e = AwsError::sdk("lambda", "GetPolicy", format!("{name}:{ALIAS}"), e);
            return if not_found(&e) {
                Ok(BTreeMap::new())
            } else {
                Err(e)
            };
        }
    };
    let v: serde_json::Value = serde_json::from_str(&policy).unwrap_or_default();
    let mut out = BTreeMap::new();
    if let Some(statements) = v["Statement"].as_array() {
        for s in statements {
            if let Some(sid) = s["Sid"].as_str() {
                let source = s["Condition"]["ArnLike"]["AWS:SourceArn"]
                    .as_str()
                    .unwrap_or("*");
                // The same id twice (an older deployctl's races): matches no wanted
                // statement, so the next deploy replaces them with one.
                let value = if out.contains_key(sid) {
                    "(duplicate statements)"
                } else {
                    source
                };
                out.insert(sid.to_owned(), value.to_owned());
            }
        }
    }
    Ok(out)
}

async fn read_url(c: &AwsClients, name: &str) -> Result<Option<(String, String)>, AwsError> {
    match c
        .lambda
        .get_function_url_config()
        .function_name(name)
        .qualifier(ALIAS)
        .send()
        .await
    {
        Ok(u) => Ok(Some((
            u.function_url().to_owned(),
            u.auth_type().as_str().to_owned(),
        ))),
        Err(e) => {
            let e = AwsError::sdk("lambda", "GetFunctionUrlConfig", name, e);
            if not_found(&e) { Ok(None) } else { Err(e) }
        }
    }
}

/// The deployctl-tagged HTTP API of this app, if any.
pub(crate) async fn find_api(
    c: &AwsClients,
    spec: &LambdaSpec,
) -> Result<Option<ApiState>, AwsError> {
    Ok(find_apis(c, spec).await?.0)
}

/// The name of the app's HTTP API.
pub(crate) fn api_name(spec: &LambdaSpec) -> &str {
    spec.api
        .as_ref()
        .map_or(spec.function_name.as_str(), |a| a.name.as_str())
}

/// The app's HTTP API and the ids of any others with its name and tags. API names are not
/// unique, so there can be several: the one used is one integrated with the alias, the
/// oldest of those (then the lowest id), the same on every read.
pub(crate) async fn find_apis(
    c: &AwsClients,
    spec: &LambdaSpec,
) -> Result<(Option<ApiState>, Vec<String>), AwsError> {
    let name = api_name(spec);
    let mut token: Option<String> = None;
    let mut found = Vec::new();
    loop {
        let page = c
            .apigateway
            .get_apis()
            .set_next_token(token.clone())
            .send()
            .await
            .map_err(|e| AwsError::sdk("apigateway", "GetApis", name, e))?;
        for api in page.items() {
            let ours = api.tags().is_some_and(|t| {
                is_managed(t.iter()) && t.get(TAG_APP).is_some_and(|a| a == &spec.app)
            });
            if ours && api.name() == Some(name) {
                found.push(api.clone());
            }
        }
        match page.next_token() {
            Some(t) if !t.is_empty() && Some(t) != token.as_deref() => token = Some(t.to_owned()),
            _ => break,
        }
    }
    found.sort_by(|a, b| {
        let created = |x: &aws_sdk_apigatewayv2::types::Api| {
            x.created_date().map(|d| (d.secs(), d.subsec_nanos()))
        };
        created(a)
            .cmp(&created(b))
            .then_with(|| a.api_id().cmp(&b.api_id()))
    });
    if found.len() > 1 {
        // Prefer one already wired to the alias: the endpoint clients know.
        let alias = spec.alias_arn();
        let wired = futures::future::try_join_all(found.iter().map(|a| {
            let id = a.api_id().unwrap_or_default().to_owned();
            let alias = &alias;
            async move {
                let got = c
                    .apigateway
                    .get_integrations()
                    .api_id(&id)
                    .send()
                    .await
                    .map_err(|e| AwsError::sdk("apigateway", "GetIntegrations", &id, e))?;
                Ok::<_, AwsError>(
                    got.items()
                        .iter()
                        .any(|i| i.integration_uri() == Some(alias.as_str())),
                )
            }
        }))
        .await?;
        let mut ranked: Vec<_> = wired.into_iter().zip(found).collect();
        ranked.sort_by_key(|(wired, _)| !*wired); // stable: oldest first among equals
        found = ranked.into_iter().map(|(_, a)| a).collect();
    }
    let mut found = found.into_iter();
    let Some(api) = found.next() else {
        return Ok((None, Vec::new()));
    };
    let extra = found
        .filter_map(|a| a.api_id().map(str::to_owned))
        .collect();
    let id = api.api_id().unwrap_or_default().to_owned();
    let cors = api.cors_configuration().map(|c| CorsSpec {
        origins: c.allow_origins().to_vec(),
        methods: c.allow_methods().to_vec(),
        headers: c.allow_headers().to_vec(),
        max_age: c.max_age(),
    });
    let (integrations, routes, stages) = tokio::try_join!(
        async {
            c.apigateway
                .get_integrations()
                .api_id(&id)
                .send()
                .await
                .map_err(|e| AwsError::sdk("apigateway", "GetIntegrations", &id, e))
        },
        async {
            c.apigateway
                .get_routes()
                .api_id(&id)
                .send()
                .await
                .map_err(|e| AwsError::sdk("apigateway", "GetRoutes", &id, e))
        },
        async {
            c.apigateway
                .get_stages()
                .api_id(&id)
                .send()
                .await
                .map_err(|e| AwsError::sdk("apigateway", "GetStages", &id, e))
        },
    )?;
    let integration = integrations.items().first().map(|i| {
        (
            i.integration_id().unwrap_or_default().to_owned(),
            i.integration_uri().unwrap_or_default().to_owned(),
            i.payload_format_version().unwrap_or_default().to_owned(),
        )
    });
    let route = routes
        .items()
        .iter()
        .find(|r| r.route_key() == Some("$default"))
        .map(|r| {
            (
                r.route_id().unwrap_or_default().to_owned(),
                r.target().unwrap_or_default().to_owned(),
            )
        });
    let wanted_stage = spec.api.as_ref().map_or("$default", |a| a.stage.as_str());
    let stage = stages
        .items()
        .iter()
        .find(|s| s.stage_name() == Some(wanted_stage))
        .map(|s| {
            let throttling = s.default_route_settings().and_then(|r| {
                match (r.throttling_rate_limit(), r.throttling_burst_limit()) {
                    (Some(rate), Some(burst)) if rate > 0.0 || burst > 0 => Some((rate, burst)),
                    _ => None,
                }
            });
            (s.auto_deploy().unwrap_or(false), throttling)
        });
    Ok((
        Some(ApiState {
            id,
            endpoint: api.api_endpoint().map(str::to_owned),
            cors,
            integration,
            route,
            stage,
        }),
        extra,
    ))
}

async fn read_log_group(c: &AwsClients, name: &str) -> Result<Option<bool>, AwsError> {
    let got = c
        .logs
        .describe_log_groups()
        .log_group_name_prefix(name)
        .send()
        .await
        .map_err(|e| AwsError::sdk("logs", "DescribeLogGroups", name, e))?;
    if !got
        .log_groups()
        .iter()
        .any(|g| g.log_group_name() == Some(name))
    {
        return Ok(None);
    }
    #[allow(deprecated)] // ListTagsForResource needs the ARN; this is the name-based read
    let tags = c
        .logs
        .list_tags_log_group()
        .log_group_name(name)
        .send()
        .await
        .map_err(|e| AwsError::sdk("logs", "ListTagsLogGroup", name, e))?;
    Ok(Some(tags.tags().is_some_and(|t| is_managed(t.iter()))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_policy_checks() {
        assert!(trusts_lambda(crate::spec::LAMBDA_TRUST_POLICY));
        assert!(trusts_lambda(
            r#"{"Statement":{"Effect":"Allow","Principal":{"Service":["ec2.amazonaws.com","lambda.amazonaws.com"]},"Action":["sts:AssumeRole"]}}"#
        ));
        assert!(!trusts_lambda(
            r#"{"Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#
        ));
        assert!(!trusts_lambda(
            r#"{"Statement":[{"Effect":"Deny","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#
        ));
        assert!(!trusts_lambda("not json"));
    }

    #[test]
    fn decodes_url_encoded_documents() {
        assert_eq!(percent_decode("%7B%22a%22%3A%201%7D"), r#"{"a": 1}"#);
        assert_eq!(percent_decode("plain"), "plain");
        assert_eq!(percent_decode("bad%zz%"), "bad%zz%");
        assert_eq!(percent_decode("%é%"), "%é%");
    }
}
