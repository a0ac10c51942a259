//! Naming a request by what it asks for (an AWS operation, a Kubernetes verb and resource, a
//! registry step), and the error answers a service of that kind would send.

use super::http::Head;

/// The protocol family of a request, as far as its faults are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Protocol {
    /// AWS JSON protocol (`X-Amz-Target`): ECR, CloudWatch Logs.
    AwsJson,
    /// AWS query protocol (`Action=` form): IAM, STS.
    AwsQuery,
    /// AWS REST-JSON: Lambda, API Gateway v2.
    AwsRest,
    /// The Kubernetes API.
    Kubernetes,
    /// An OCI distribution registry (`/v2/…`).
    Registry,
    /// Anything else.
    Other,
}

/// A request, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `lambda`, `iam`, `ecr`… (the SigV4 signing name) for AWS; `k8s`; `registry`; `http`.
    pub service: String,
    /// `CreateFunction`; `apply deployments`, `watch deployments`, `get services/proxy`;
    /// `manifest-put`, `blob-upload`; else `METHOD /path`.
    pub operation: String,
    /// The HTTP method.
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query, without `?`.
    pub query: String,
    /// The protocol family.
    pub protocol: Protocol,
}

impl Request {
    /// `service:operation`, e.g. `lambda:CreateFunction`, `k8s:apply deployments`.
    pub fn label(&self) -> String {
        format!("{}:{}", self.service, self.operation)
    }
}

/// Classifies a request from its head and (when small enough to have been read) its body.
pub(crate) fn classify(head: &Head, body: Option<&[u8]>) -> Request {
    let mut parts = head.line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let (path, query) = (path.to_owned(), query.to_owned());
    let mut r = Request {
        service: "http".into(),
        operation: format!("{method} {path}"),
        method,
        path,
        query,
        protocol: Protocol::Other,
    };
    if let Some(service) = head
        .header("authorization")
        .filter(|a| a.starts_with("AWS4-HMAC-SHA256"))
        .and_then(sigv4_service)
    {
        r.service = service;
        if let Some(t) = head.header("x-amz-target") {
            r.protocol = Protocol::AwsJson;
            r.operation = t.rsplit('.').next().unwrap_or(t).to_owned();
        } else if let Some(action) = body
            .and_then(form_action)
            .or_else(|| form_action(r.query.as_bytes()))
        {
            r.protocol = Protocol::AwsQuery;
            r.operation = action;
        } else {
            r.protocol = Protocol::AwsRest;
            if let Some(op) = rest_operation(&r.service, &r.method, &r.path) {
                r.operation = op;
            }
        }
    } else if r.path.starts_with("/v2/") || r.path == "/v2" {
        r.service = "registry".into();
        r.protocol = Protocol::Registry;
        r.operation = registry_operation(&r.method, &r.path);
    } else if r.path.starts_with("/api") || r.path == "/version" {
        r.service = "k8s".into();
        r.protocol = Protocol::Kubernetes;
        r.operation = kube_operation(head, &r.method, &r.path, &r.query);
    }
    r
}

/// The service of a SigV4 `Authorization` header's credential scope.
fn sigv4_service(auth: &str) -> Option<String> {
    let cred = auth.split("Credential=").nth(1)?;
    let scope = cred.split([',', ' ']).next()?;
    // AKID/date/region/service/aws4_request
    scope.split('/').nth(3).map(str::to_owned)
}

fn form_action(body: &[u8]) -> Option<String> {
    String::from_utf8_lossy(body)
        .split('&')
        .find_map(|kv| kv.strip_prefix("Action="))
        .map(str::to_owned)
}

/// Lambda and API Gateway v2 operations by method and path (the ones deployctl uses).
fn rest_operation(service: &str, method: &str, path: &str) -> Option<String> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let op = match service {
        "lambda" => {
            // Every Lambda path starts with an API date: /2015-03-31/functions/…
            let s = segs.get(1..)?;
            match (method, s) {
                ("GET", ["functions"]) => "ListFunctions".to_owned(),
                ("POST", ["functions"]) => "CreateFunction".to_owned(),
                ("GET", ["functions", _]) => "GetFunction".to_owned(),
                ("DELETE", ["functions", _]) => "DeleteFunction".to_owned(),
                ("GET", ["functions", _, "configuration"]) => "GetFunctionConfiguration".to_owned(),
                ("PUT", ["functions", _, "configuration"]) => {
                    "UpdateFunctionConfiguration".to_owned()
                }
                ("PUT", ["functions", _, "code"]) => "UpdateFunctionCode".to_owned(),
                ("GET", ["functions", _, "versions"]) => "ListVersionsByFunction".to_owned(),
                ("POST", ["functions", _, "versions"]) => "PublishVersion".to_owned(),
                ("GET", ["functions", _, "aliases"]) => "ListAliases".to_owned(),
                ("POST", ["functions", _, "aliases"]) => "CreateAlias".to_owned(),
                ("GET", ["functions", _, "aliases", _]) => "GetAlias".to_owned(),
                ("PUT", ["functions", _, "aliases", _]) => "UpdateAlias".to_owned(),
                ("DELETE", ["functions", _, "aliases", _]) => "DeleteAlias".to_owned(),
                ("GET", ["functions", _, "policy"]) => "GetPolicy".to_owned(),
                ("POST", ["functions", _, "policy"]) => "AddPermission".to_owned(),
                ("DELETE", ["functions", _, "policy", _]) => "RemovePermission".to_owned(),
                ("POST", ["functions", _, "invocations"]) => "Invoke".to_owned(),
                (m, ["functions", _, "url"]) => format!(
                    "{}FunctionUrlConfig",
                    match m {
                        "GET" => "Get",
                        "POST" => "Create",
                        "PUT" => "Update",
                        _ => "Delete",
                    }
                ),
                (m, ["functions", _, "concurrency"]) => format!(
                    "{}FunctionConcurrency",
                    match m {
                        "GET" => "Get",
                        "PUT" => "Put",
                        _ => "Delete",
                    }
                ),
                ("GET", ["tags", ..]) => "ListTags".to_owned(),
                ("POST", ["tags", ..]) => "TagResource".to_owned(),
                ("DELETE", ["tags", ..]) => "UntagResource".to_owned(),
                _ => return None,
            }
        }
        "apigateway" => {
            let singular = |c: &str| match c {
                "integrations" => Some("Integration"),
                "routes" => Some("Route"),
                "stages" => Some("Stage"),
                "deployments" => Some("Deployment"),
                _ => None,
            };
            match (method, segs.as_slice()) {
                ("GET", ["v2", "apis"]) => "GetApis".to_owned(),
                ("POST", ["v2", "apis"]) => "CreateApi".to_owned(),
                ("GET", ["v2", "apis", _]) => "GetApi".to_owned(),
                ("PATCH", ["v2", "apis", _]) => "UpdateApi".to_owned(),
                ("DELETE", ["v2", "apis", _]) => "DeleteApi".to_owned(),
                ("DELETE", ["v2", "apis", _, "cors"]) => "DeleteCorsConfiguration".to_owned(),
                ("GET", ["v2", "apis", _, c]) => format!("Get{}s", singular(c)?),
                ("POST", ["v2", "apis", _, c]) => format!("Create{}", singular(c)?),
                ("GET", ["v2", "apis", _, c, _]) => format!("Get{}", singular(c)?),
                ("PATCH", ["v2", "apis", _, c, _]) => format!("Update{}", singular(c)?),
                ("DELETE", ["v2", "apis", _, c, _]) => format!("Delete{}", singular(c)?),
                ("GET", ["v2", "tags", ..]) => "GetTags".to_owned(),
                ("POST", ["v2", "tags", ..]) => "TagResource".to_owned(),
                ("DELETE", ["v2", "tags", ..]) => "UntagResource".to_owned(),
                _ => return None,
            }
        }
        _ => return None,
    };
    Some(op)
}

/// `ping`, `blob-head`, `blob-get`, `blob-upload` (POST, PATCH and PUT of an upload),
/// `manifest-head`, `manifest-get`, `manifest-put`, `tags-list`.
fn registry_operation(method: &str, path: &str) -> String {
    let p = path.trim_end_matches('/');
    if p == "/v2" {
        return "ping".into();
    }
    if p.contains("/blobs/uploads") {
        return "blob-upload".into();
    }
    let kind = if p.contains("/blobs/") {
        "blob"
    } else if p.contains("/manifests/") {
        "manifest"
    } else if p.ends_with("/tags/list") {
        return "tags-list".into();
    } else {
        return format!("{method} {path}");
    };
    format!("{kind}-{}", method.to_ascii_lowercase())
}

/// `VERB plural[/subresource]`: `apply deployments`, `watch deployments`, `list pods`,
/// `get services/proxy`, `create namespaces`; `discovery` for `/api`, `/apis/…` without
/// a resource, and `/version`.
fn kube_operation(head: &Head, method: &str, path: &str, query: &str) -> String {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let rest: &[&str] = match segs.as_slice() {
        ["api", _version, rest @ ..] => rest,
        ["apis", _group, _version, rest @ ..] => rest,
        _ => &[],
    };
    if rest.is_empty() {
        return "discovery".into();
    }
    let (plural, name, sub) = if rest[0] == "namespaces" && rest.len() >= 3 {
        (rest[2], rest.get(3), rest.get(4))
    } else {
        (rest[0], rest.get(1), rest.get(2))
    };
    let watch = query
        .split('&')
        .any(|kv| kv == "watch=true" || kv == "watch=1");
    let verb = match method {
        "GET" if watch => "watch",
        "GET" if name.is_none() => "list",
        "GET" => "get",
        "PATCH"
            if head
                .header("content-type")
                .is_some_and(|c| c.contains("apply-patch")) =>
        {
            "apply"
        }
        "PATCH" => "patch",
        "POST" => "create",
        "PUT" => "update",
        "DELETE" if name.is_none() => "deletecollection",
        "DELETE" => "delete",
        other => other,
    };
    match sub {
        Some(s) => format!("{verb} {plural}/{s}"),
        None => format!("{verb} {plural}"),
    }
}

/// A canned answer: status, headers, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canned {
    /// HTTP status.
    pub status: u16,
    /// Extra header fields (`content-length` and `connection` are added).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

impl Canned {
    /// The response bytes; `close` adds `connection: close`.
    pub(crate) fn bytes(&self, close: bool) -> Vec<u8> {
        let mut out = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (k, v) in &self.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str(&format!("content-length: {}\r\n", self.body.len()));
        if close {
            out.push_str("connection: close\r\n");
        }
        out.push_str("x-deployctl-fault: injected\r\n\r\n");
        out.push_str(&self.body);
        out.into_bytes()
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Injected",
    }
}

fn h(k: &str, v: &str) -> (String, String) {
    (k.to_owned(), v.to_owned())
}

/// The throttling answer a service of `r`'s kind sends: AWS `ThrottlingException` (JSON),
/// `Throttling` (query), `TooManyRequestsException` with `Retry-After` (REST), a Kubernetes
/// 429 `Status` with `Retry-After`, a registry `TOOMANYREQUESTS`.
pub(crate) fn throttle(r: &Request) -> Canned {
    match r.protocol {
        Protocol::AwsJson => Canned {
            status: 400,
            headers: vec![
                h("content-type", "application/x-amz-json-1.1"),
                h("x-amzn-errortype", "ThrottlingException"),
            ],
            body: r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.into(),
        },
        Protocol::AwsQuery => Canned {
            status: 400,
            headers: vec![h("content-type", "text/xml")],
            body: "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>00000000-fault</RequestId></ErrorResponse>".into(),
        },
        Protocol::AwsRest => Canned {
            status: 429,
            headers: vec![
                h("content-type", "application/json"),
                h("x-amzn-errortype", "TooManyRequestsException"),
                h("retry-after", "1"),
            ],
            body: r#"{"Type":"User","message":"Rate exceeded","Reason":"CallerRateLimitExceeded"}"#
                .into(),
        },
        Protocol::Kubernetes => Canned {
            status: 429,
            headers: vec![h("content-type", "application/json"), h("retry-after", "1")],
            body: r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Too many requests, please try again later.","reason":"TooManyRequests","details":{"retryAfterSeconds":1},"code":429}"#.into(),
        },
        Protocol::Registry => Canned {
            status: 429,
            headers: vec![h("content-type", "application/json"), h("retry-after", "1")],
            body: r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"too many requests"}]}"#.into(),
        },
        Protocol::Other => Canned {
            status: 429,
            headers: vec![h("content-type", "text/plain"), h("retry-after", "1")],
            body: "too many requests".into(),
        },
    }
}

/// A server error `status` (500, 502, 503, 504) as a service of `r`'s kind sends it.
pub(crate) fn server_error(r: &Request, status: u16) -> Canned {
    let aws_code = if status == 503 {
        "ServiceUnavailable"
    } else {
        "InternalFailure"
    };
    match r.protocol {
        Protocol::AwsJson => Canned {
            status,
            headers: vec![
                h("content-type", "application/x-amz-json-1.1"),
                h("x-amzn-errortype", aws_code),
            ],
            body: format!(r#"{{"__type":"{aws_code}","message":"injected fault"}}"#),
        },
        Protocol::AwsQuery => Canned {
            status,
            headers: vec![h("content-type", "text/xml")],
            body: format!(
                "<ErrorResponse><Error><Type>Receiver</Type><Code>{aws_code}</Code><Message>injected fault</Message></Error><RequestId>00000000-fault</RequestId></ErrorResponse>"
            ),
        },
        Protocol::AwsRest => {
            let code = if r.service == "lambda" {
                "ServiceException"
            } else {
                aws_code
            };
            Canned {
                status,
                headers: vec![
                    h("content-type", "application/json"),
                    h("x-amzn-errortype", code),
                ],
                body: r#"{"Type":"Service","message":"injected fault"}"#.into(),
            }
        }
        Protocol::Kubernetes => Canned {
            status,
            headers: vec![h("content-type", "application/json")],
            body: format!(
                r#"{{"kind":"Status","apiVersion":"v1","metadata":{{}},"status":"Failure","message":"injected fault","reason":"{}","code":{status}}}"#,
                if status == 503 {
                    "ServiceUnavailable"
                } else {
                    "InternalError"
                }
            ),
        },
        Protocol::Registry => Canned {
            status,
            headers: vec![h("content-type", "application/json")],
            body: r#"{"errors":[{"code":"UNKNOWN","message":"injected fault"}]}"#.into(),
        },
        Protocol::Other => Canned {
            status,
            headers: vec![h("content-type", "text/plain")],
            body: "injected fault".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Head {
        let mut headers = Vec::new();
        let mut lines = text.lines();
        let line = lines.next().unwrap_or_default().to_owned();
        for l in lines {
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
        Head {
            line,
            headers,
            raw: Vec::new(),
        }
    }

    const SIG: &str = "authorization: AWS4-HMAC-SHA256 Credential=testing/20250101/us-east-1/SVC/aws4_request, SignedHeaders=host, Signature=00";

    fn aws(line: &str, service: &str, extra: &str) -> Head {
        head(&format!("{line}\n{}\n{extra}", SIG.replace("SVC", service)))
    }

    #[test]
    fn aws_requests_are_named_by_their_operation() {
        let ecr = aws(
            "POST / HTTP/1.1",
            "ecr",
            "x-amz-target: AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken",
        );
        assert_eq!(classify(&ecr, None).label(), "ecr:GetAuthorizationToken");
        let iam = aws("POST / HTTP/1.1", "iam", "");
        let r = classify(&iam, Some(b"Action=CreateRole&Version=2010-05-08"));
        assert_eq!(
            (r.label(), r.protocol),
            ("iam:CreateRole".into(), Protocol::AwsQuery)
        );
        for (line, op) in [
            ("POST /2015-03-31/functions HTTP/1.1", "CreateFunction"),
            ("GET /2015-03-31/functions/f HTTP/1.1", "GetFunction"),
            (
                "PUT /2015-03-31/functions/f/code HTTP/1.1",
                "UpdateFunctionCode",
            ),
            (
                "POST /2015-03-31/functions/f/versions HTTP/1.1",
                "PublishVersion",
            ),
            (
                "PUT /2015-03-31/functions/f/aliases/live HTTP/1.1",
                "UpdateAlias",
            ),
            (
                "POST /2015-03-31/functions/f/policy HTTP/1.1",
                "AddPermission",
            ),
            (
                "GET /2021-10-31/functions/f/url?Qualifier=live HTTP/1.1",
                "GetFunctionUrlConfig",
            ),
        ] {
            assert_eq!(
                classify(&aws(line, "lambda", ""), None).operation,
                op,
                "{line}"
            );
        }
        for (line, op) in [
            ("GET /v2/apis HTTP/1.1", "GetApis"),
            ("POST /v2/apis HTTP/1.1", "CreateApi"),
            (
                "POST /v2/apis/abc/integrations HTTP/1.1",
                "CreateIntegration",
            ),
            ("PATCH /v2/apis/abc/routes/r1 HTTP/1.1", "UpdateRoute"),
            ("GET /v2/apis/abc/stages HTTP/1.1", "GetStages"),
        ] {
            let r = classify(&aws(line, "apigateway", ""), None);
            assert_eq!(r.operation, op, "{line}");
            assert_eq!(r.protocol, Protocol::AwsRest);
        }
    }

    #[test]
    fn kubernetes_requests_are_named_by_verb_and_resource() {
        for (text, op) in [
            (
                "GET /api/v1/namespaces/ns/pods?labelSelector=a HTTP/1.1",
                "list pods",
            ),
            (
                "GET /apis/apps/v1/namespaces/ns/deployments?watch=true&fieldSelector=x HTTP/1.1",
                "watch deployments",
            ),
            (
                "PATCH /apis/apps/v1/namespaces/ns/deployments/web?fieldManager=deployctl HTTP/1.1\ncontent-type: application/apply-patch+yaml",
                "apply deployments",
            ),
            (
                "PATCH /api/v1/namespaces/ns/configmaps/h HTTP/1.1\ncontent-type: application/merge-patch+json",
                "patch configmaps",
            ),
            (
                "GET /api/v1/namespaces/ns/services/web:80/proxy/health HTTP/1.1",
                "get services/proxy",
            ),
            ("POST /api/v1/namespaces HTTP/1.1", "create namespaces"),
            ("GET /api/v1/namespaces/ns HTTP/1.1", "get namespaces"),
            (
                "DELETE /api/v1/namespaces/ns/secrets/s HTTP/1.1",
                "delete secrets",
            ),
            ("GET /apis HTTP/1.1", "discovery"),
            ("GET /version HTTP/1.1", "discovery"),
        ] {
            let r = classify(&head(text), None);
            assert_eq!(
                (r.service.as_str(), r.operation.as_str()),
                ("k8s", op),
                "{text}"
            );
        }
    }

    #[test]
    fn registry_requests_are_named_by_step() {
        for (line, op) in [
            ("GET /v2/ HTTP/1.1", "ping"),
            ("HEAD /v2/app/blobs/sha256:ab HTTP/1.1", "blob-head"),
            ("POST /v2/app/blobs/uploads/ HTTP/1.1", "blob-upload"),
            (
                "PUT /v2/app/blobs/uploads/u-1?digest=sha256:ab HTTP/1.1",
                "blob-upload",
            ),
            ("PUT /v2/app/manifests/1.0 HTTP/1.1", "manifest-put"),
            ("GET /v2/app/manifests/sha256:ab HTTP/1.1", "manifest-get"),
        ] {
            assert_eq!(
                classify(&head(line), None).label(),
                format!("registry:{op}")
            );
        }
    }

    #[test]
    fn throttling_answers_use_each_protocols_error_shape() {
        let lambda = classify(
            &aws("POST /2015-03-31/functions HTTP/1.1", "lambda", ""),
            None,
        );
        let t = throttle(&lambda);
        assert_eq!(t.status, 429);
        assert!(
            t.headers
                .contains(&h("x-amzn-errortype", "TooManyRequestsException"))
        );
        assert!(t.headers.iter().any(|(k, _)| k == "retry-after"));
        let logs = classify(
            &aws(
                "POST / HTTP/1.1",
                "logs",
                "x-amz-target: Logs_20140328.CreateLogGroup",
            ),
            None,
        );
        assert!(throttle(&logs).body.contains("ThrottlingException"));
        let bytes = String::from_utf8(server_error(&lambda, 503).bytes(true)).unwrap_or_default();
        assert!(
            bytes.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{bytes}"
        );
        assert!(bytes.contains("connection: close\r\n"), "{bytes}");
    }
}
