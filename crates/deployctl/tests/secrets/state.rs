//! The services' state: what the stand-in, moto and the Docker engine hold for the app, searched.

#![allow(clippy::unwrap_used)] // a failure here is a test failure

use crate::*;

/// Every object the stand-in stores, in every namespace: markers only in the `data` of the
/// Secrets `allowed` names (namespace, name, the marker it must hold).
pub(crate) fn audit_standin(
    audit: &mut Audit,
    url: &str,
    phase: &str,
    allowed: &[(&str, &str, &str)],
) {
    let addr = url.trim_start_matches("http://");
    let mut seen: Vec<String> = Vec::new();
    for k in deployctl_kube_standin::KINDS {
        let path = if k.group.is_empty() {
            format!("/api/{}/{}", k.version, k.plural)
        } else {
            format!("/apis/{}/{}/{}", k.group, k.version, k.plural)
        };
        let (status, body) = http_get(addr, &path);
        assert_eq!(
            status,
            200,
            "GET {path}: {}",
            String::from_utf8_lossy(&body)
        );
        let list: Value = serde_json::from_slice(&body).unwrap();
        for item in list["items"].as_array().unwrap() {
            let ns = item["metadata"]["namespace"].as_str().unwrap_or_default();
            let name = item["metadata"]["name"].as_str().unwrap_or_default();
            let place = format!("{phase}: stand-in {} {ns}/{name}", k.kind);
            seen.push(format!("{} {name}", k.kind));
            let mut item = item.clone();
            if let Some((_, _, marker)) = allowed
                .iter()
                .find(|(n, s, _)| k.kind == "Secret" && *n == ns && *s == name)
            {
                let data = item.as_object_mut().unwrap().remove("data");
                let data = serde_json::to_vec(&data).unwrap();
                assert!(
                    audit.holds(marker, &data),
                    "{place}: its data lacks the {marker}"
                );
                seen.push(format!("allowed {name}"));
            }
            audit.check(&place, &serde_json::to_vec(&item).unwrap());
        }
    }
    for (_, name, _) in allowed {
        assert!(
            seen.contains(&format!("allowed {name}")),
            "{phase}: no Secret {name}: {seen:?}"
        );
    }
    for kind in ["Deployment", "ReplicaSet", "Pod", "ConfigMap"] {
        assert!(
            seen.iter().any(|s| s.starts_with(&format!("{kind} "))),
            "{phase}: the stand-in holds no {kind}: {seen:?}"
        );
    }
    assert!(
        seen.iter().any(|s| s.ends_with("-deployctl-history")),
        "{phase}: no history ConfigMap was searched: {seen:?}"
    );
}

/// A JSON body; anything else (an HTML error page) as one string, still searched.
pub(crate) fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or_else(|_| {
        let text = String::from_utf8_lossy(bytes).into_owned();
        eprintln!("not JSON: {}", text.chars().take(200).collect::<String>());
        Value::String(text)
    })
}

/// A moto API call, routed by the service named in the (unchecked) signature.
pub(crate) fn moto(
    endpoint: &str,
    service: &str,
    method: &str,
    path: &str,
    target: &str,
    body: &str,
) -> Vec<u8> {
    let addr = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential=testing/20250101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0"
    );
    let mut headers = vec![
        ("Authorization", auth.as_str()),
        ("Accept", "application/json"),
    ];
    if !target.is_empty() {
        headers.push(("X-Amz-Target", target));
        headers.push(("Content-Type", "application/x-amz-json-1.1"));
    }
    let (status, bytes) = request(addr, method, path, &headers, body);
    // 404 for what is not there, 400 for an ECR repository without a policy.
    assert!(
        (200..500).contains(&status),
        "moto {service} {method} {path} {target}: HTTP {status}: {}",
        String::from_utf8_lossy(&bytes)
    );
    bytes
}

/// What moto holds for the app `function` (and every IAM role and policy, HTTP API, ECR
/// repository and log group of the account): markers only in the function's environment
/// (`Environment` of the function and of its versions). Returns whether that held the
/// secret.
pub(crate) fn audit_moto(audit: &mut Audit, endpoint: &str, phase: &str, function: &str) -> bool {
    let call =
        |service: &str, method: &str, path: &str| moto(endpoint, service, method, path, "", "");
    let json_call = |service: &str, target: &str, body: &str| {
        moto(endpoint, service, "POST", "/", target, body)
    };
    let mut env_holds = false;
    let mut strip_env = |audit: &Audit, v: &mut Value| {
        if let Some(env) = v.as_object_mut().and_then(|o| o.remove("Environment")) {
            env_holds |= audit.holds("secrets: value", &serde_json::to_vec(&env).unwrap());
        }
    };
    let mut bodies: Vec<(String, Vec<u8>)> = Vec::new();

    // Lambda: every function (ours without its environment), versions, aliases, policy, URL.
    let mut list = json(&call("lambda", "GET", "/2015-03-31/functions/"));
    for f in list
        .get_mut("Functions")
        .and_then(Value::as_array_mut)
        .unwrap()
    {
        if f["FunctionName"] == function {
            strip_env(audit, f);
        }
    }
    bodies.push((
        "lambda ListFunctions".into(),
        serde_json::to_vec(&list).unwrap(),
    ));
    let fn_path = format!("/2015-03-31/functions/{function}");
    let mut get = json(&call("lambda", "GET", &fn_path));
    if let Some(c) = get.get_mut("Configuration") {
        strip_env(audit, c);
    }
    bodies.push((
        "lambda GetFunction".into(),
        serde_json::to_vec(&get).unwrap(),
    ));
    let mut versions = json(&call("lambda", "GET", &format!("{fn_path}/versions")));
    let versions_list = versions.get_mut("Versions").and_then(Value::as_array_mut);
    for v in versions_list.into_iter().flatten() {
        strip_env(audit, v);
    }
    bodies.push((
        "lambda ListVersionsByFunction".into(),
        serde_json::to_vec(&versions).unwrap(),
    ));
    for (what, path) in [
        ("lambda ListAliases", format!("{fn_path}/aliases")),
        ("lambda GetPolicy", format!("{fn_path}/policy")),
        (
            "lambda GetFunctionUrlConfig",
            format!("/2021-10-31/functions/{function}/url"),
        ),
        (
            "lambda ListTags",
            format!("/2017-03-31/tags/arn:aws:lambda:us-east-1:123456789012:function:{function}"),
        ),
    ] {
        bodies.push((what.into(), call("lambda", "GET", &path)));
    }

    // API Gateway: every HTTP API; ours with its integrations, routes and stages.
    let apis = call("apigateway", "GET", "/v2/apis");
    let list: Value = serde_json::from_slice(&apis).unwrap();
    for api in list["items"].as_array().into_iter().flatten() {
        if api["name"] == function {
            let id = api["apiId"].as_str().unwrap();
            for part in ["integrations", "routes", "stages"] {
                let path = format!("/v2/apis/{id}/{part}");
                bodies.push((
                    format!("apigateway GET {path}"),
                    call("apigateway", "GET", &path),
                ));
            }
        }
    }
    bodies.push(("apigateway GetApis".into(), apis));

    // IAM: roles (trust and inline policies, tags), users, groups, customer policies.
    bodies.push((
        "iam GetAccountAuthorizationDetails".into(),
        call(
            "iam",
            "GET",
            "/?Action=GetAccountAuthorizationDetails&Version=2010-05-08&Filter.member.1=Role&Filter.member.2=User&Filter.member.3=Group&Filter.member.4=LocalManagedPolicy",
        ),
    ));

    // ECR: repositories, their tags, images and policies.
    let ecr = "AmazonEC2ContainerRegistry_V20150921";
    let repos = json_call("ecr", &format!("{ecr}.DescribeRepositories"), "{}");
    let list: Value = serde_json::from_slice(&repos).unwrap();
    for r in list["repositories"].as_array().into_iter().flatten() {
        if r["repositoryName"] == function {
            let arn = r["repositoryArn"].as_str().unwrap();
            let name = serde_json::json!({ "repositoryName": function }).to_string();
            for (op, body) in [
                (
                    "ListTagsForResource",
                    serde_json::json!({ "resourceArn": arn }).to_string(),
                ),
                ("DescribeImages", name.clone()),
                ("GetLifecyclePolicy", name.clone()),
                ("GetRepositoryPolicy", name.clone()),
            ] {
                bodies.push((
                    format!("ecr {op}"),
                    json_call("ecr", &format!("{ecr}.{op}"), &body),
                ));
            }
        }
    }
    bodies.push(("ecr DescribeRepositories".into(), repos));

    // CloudWatch Logs: log groups and the app's tags.
    bodies.push((
        "logs DescribeLogGroups".into(),
        json_call("logs", "Logs_20140328.DescribeLogGroups", "{}"),
    ));
    let group =
        serde_json::json!({ "logGroupName": format!("/aws/lambda/{function}") }).to_string();
    bodies.push((
        "logs ListTagsLogGroup".into(),
        json_call("logs", "Logs_20140328.ListTagsLogGroup", &group),
    ));

    for (what, bytes) in bodies {
        audit.check(&format!("{phase}: moto {what}"), &bytes);
    }
    env_holds
}

/// The local container and its image as the engine reports them: markers only in the
/// container's `Config.Env`. Returns whether that held the secret.
pub(crate) fn audit_docker(audit: &mut Audit, host: &str, phase: &str, app: &str) -> bool {
    let (status, body) = docker_get(host, &format!("/containers/deployctl-{app}/json"));
    assert_eq!(status, 200, "{phase}: inspect the local container");
    let mut c: Value = serde_json::from_slice(&body).unwrap();
    let env = c["Config"]
        .as_object_mut()
        .unwrap()
        .remove("Env")
        .unwrap_or_default();
    let holds = audit.holds("secrets: value", &serde_json::to_vec(&env).unwrap());
    audit.check(
        &format!("{phase}: docker inspect deployctl-{app}"),
        &serde_json::to_vec(&c).unwrap(),
    );
    let image = c["Image"].as_str().unwrap().to_owned();
    for path in [
        format!("/images/{image}/json"),
        format!("/images/{image}/history"),
    ] {
        let (status, body) = docker_get(host, &path);
        assert_eq!(status, 200, "{phase}: GET {path}");
        audit.check(&format!("{phase}: docker GET {path}"), &body);
    }
    holds
}

/// While app `name` (Lambda and Kubernetes) is deployed: in the stand-in only its Secret
/// `<name>-secrets` holds the `secrets:` value (and must), and moto's Lambda environment must
/// hold it, or the search there is blind.
pub(crate) fn audit_deployed(
    audit: &mut Audit,
    endpoint: &str,
    standin_url: &str,
    phase: &str,
    name: &str,
) {
    audit_standin(
        audit,
        standin_url,
        phase,
        &[(name, &format!("{name}-secrets"), "secrets: value")],
    );
    assert!(
        audit_moto(audit, endpoint, "moto while deployed", name),
        "moto's Lambda environment lacks the secret: the moto search is blind"
    );
}
