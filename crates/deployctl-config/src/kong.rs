//! `kong:`: the Kong gateway in front of the app, configured from the app's OpenAPI spec.
//! The model and its defaults, the shape check of `kong.admin_token` when it is a secret
//! reference (the same `{ aws_secret, key }` / `{ ssm }` forms as `secrets:`), and the rules
//! serde cannot express. What the settings become in Kong lives in `deployctl-kong`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use deployctl_core::{Secret, SecretSource};
use serde::{Deserialize, Serialize};
use serde_yaml::Value;

use crate::load::Diags;
use crate::model::Config;

/// `kong:`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Kong {
    /// The app's OpenAPI 3.0 / 3.1 document (YAML or JSON), relative to deploy.yaml.
    pub openapi: PathBuf,
    /// How Kong is configured.
    #[serde(default)]
    pub mode: KongMode,
    /// The Admin API (`admin-api` mode), e.g. `http://kong-admin.kong.svc:8001`.
    #[serde(default)]
    pub admin_url: Option<String>,
    /// The Admin API token (`Kong-Admin-Token`): a secret — `${VAR}`, or a
    /// `{ aws_secret, key }` / `{ ssm }` reference read before anything changes.
    #[serde(default, with = "opt_secret")]
    pub admin_token: Option<Secret>,
    /// Where `admin_token` is kept when it is a reference (filled by loading).
    #[serde(skip)]
    pub admin_token_source: Option<SecretSource>,
    /// The database Kong runs with (`off` for DB-less); decides the rate-limiting policies
    /// that can work.
    #[serde(default)]
    pub database: KongDatabase,
    /// The `rate-limiting` plugin on the Service.
    #[serde(default)]
    pub rate_limiting: Option<RateLimiting>,
    /// The `cors` plugin on the Service.
    #[serde(default)]
    pub cors: Option<Cors>,
    /// Which authentication plugin guards the routes.
    #[serde(default)]
    pub auth: KongAuth,
    /// The `request-transformer` plugin on the Service.
    #[serde(default)]
    pub request_transformer: Option<RequestTransformer>,
    /// A consumer for the developer (with a key when the auth is key-auth).
    #[serde(default)]
    pub consumer: Option<KongConsumer>,
}

/// `kong.mode:`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum KongMode {
    /// deployctl talks to the Admin API: reads the tagged entities, diffs, upserts.
    #[default]
    AdminApi,
    /// deployctl renders KongPlugin / KongConsumer resources for the Kong Ingress Controller.
    IngressController,
}

/// `kong.database:`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum KongDatabase {
    /// DB-less Kong (or unknown): counters can only be local.
    #[default]
    Off,
    /// Kong on PostgreSQL: the `cluster` policy shares counters between nodes.
    Postgres,
}

/// `kong.auth:`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum KongAuth {
    /// From the spec's `securitySchemes` and `security` (the default).
    #[default]
    FromOpenapi,
    /// `key-auth` on every route, whatever the spec says.
    KeyAuth,
    /// `jwt` on every route.
    Jwt,
    /// `basic-auth` on every route.
    BasicAuth,
    /// No authentication plugin (the spec's schemes are ignored).
    None,
}

/// `kong.rate_limiting:`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct RateLimiting {
    /// Requests per minute.
    pub minute: Option<u32>,
    /// Requests per hour.
    pub hour: Option<u32>,
    /// Where the counters live: `local` (the default) or `cluster` (needs a database).
    pub policy: RateLimitPolicy,
}

impl Default for RateLimiting {
    fn default() -> Self {
        Self {
            minute: Some(60),
            hour: None,
            policy: RateLimitPolicy::Local,
        }
    }
}

/// `kong.rate_limiting.policy:`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum RateLimitPolicy {
    /// Counters in each Kong node's memory.
    #[default]
    Local,
    /// Counters in Kong's database.
    Cluster,
}

impl RateLimitPolicy {
    /// Kong's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            RateLimitPolicy::Local => "local",
            RateLimitPolicy::Cluster => "cluster",
        }
    }
}

/// `kong.cors:`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Cors {
    /// Allowed origins (`*` for any).
    pub origins: Vec<String>,
    /// Allowed methods (default: the methods of the spec's operations).
    pub methods: Vec<String>,
    /// Allowed request headers.
    pub headers: Vec<String>,
    /// Headers exposed to the browser.
    pub exposed_headers: Vec<String>,
    /// Whether credentials are allowed.
    pub credentials: bool,
    /// How long a preflight answer may be cached, in seconds.
    pub max_age: Option<u32>,
}

impl Default for Cors {
    fn default() -> Self {
        Self {
            origins: vec!["*".into()],
            methods: Vec::new(),
            headers: Vec::new(),
            exposed_headers: Vec::new(),
            credentials: false,
            max_age: None,
        }
    }
}

/// `kong.request_transformer:`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct RequestTransformer {
    /// Headers added to every upstream request (name → value).
    pub add_headers: BTreeMap<String, String>,
    /// Headers removed from every upstream request.
    pub remove_headers: Vec<String>,
}

/// `kong.consumer:`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct KongConsumer {
    /// The consumer's username.
    pub username: String,
    /// Generate a key-auth key for it (shown once, kept across redeploys).
    #[serde(default = "yes")]
    pub create_key: bool,
}

fn yes() -> bool {
    true
}

mod opt_secret {
    use deployctl_core::Secret;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(s: &Option<Secret>, ser: S) -> Result<S::Ok, S::Error> {
        s.serialize(ser)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Secret>, D::Error> {
        Option::<String>::deserialize(de).map(|o| o.map(Secret::new))
    }
}

/// The field path of the token, a secret position.
pub(crate) const TOKEN_PATH: &str = "kong.admin_token";

/// Takes a `{ aws_secret, key }` / `{ ssm }` reference out of `kong.admin_token` (leaving
/// an empty placeholder for the typed model) and checks its shape as `secrets:` entries are.
pub(crate) fn extract_token_ref(root: &mut Value, d: &mut Diags<'_>) -> Option<SecretSource> {
    let kong = root.get_mut("kong")?.as_mapping_mut()?;
    let token = kong.get_mut("admin_token")?;
    let Value::Mapping(m) = token else {
        return None;
    };
    let source = crate::secret_refs::check(TOKEN_PATH, m, d);
    *token = Value::String(String::new());
    source
}

/// The token's value as text, for scrubbing (a plain `${VAR}` value).
pub(crate) fn token_value(root: &Value) -> Option<String> {
    root.get("kong")?
        .get("admin_token")?
        .as_str()
        .map(str::to_owned)
}

/// `kong:` rules: the mode's required settings, amounts, names.
pub(crate) fn check(c: &Config, d: &mut Diags<'_>) {
    let Some(k) = &c.kong else { return };
    let spec = k.openapi.to_string_lossy();
    let ext = k
        .openapi
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if spec.trim().is_empty() {
        d.value(
            "kong.openapi",
            "must not be empty",
            Some("the path of the app's OpenAPI document, e.g. openapi.yaml".to_owned()),
        );
    } else if !matches!(ext.as_deref(), Some("yaml" | "yml" | "json")) {
        d.value(
            "kong.openapi",
            format!("`{spec}` is not a YAML or JSON file"),
            Some("name an OpenAPI 3.0 or 3.1 document ending in .yaml, .yml or .json".to_owned()),
        );
    }
    if !c.kubernetes.enabled {
        d.value(
            "kong",
            "the gateway fronts the app's Kubernetes Service, but `kubernetes.enabled` is false",
            Some("set `kubernetes.enabled: true`, or remove `kong:`".to_owned()),
        );
    }
    match k.mode {
        KongMode::AdminApi => match k.admin_url.as_deref() {
            None => d.value(
                "kong.admin_url",
                "`mode: admin-api` needs the Admin API's address",
                Some("e.g. admin_url: http://kong-admin.kong.svc:8001".to_owned()),
            ),
            Some(u)
                if !(u.starts_with("http://") || u.starts_with("https://")) || u.contains(' ') =>
            {
                d.value(
                    "kong.admin_url",
                    format!("`{u}` is not an http:// or https:// URL"),
                    Some("e.g. admin_url: http://kong-admin.kong.svc:8001".to_owned()),
                )
            }
            Some(_) => {}
        },
        KongMode::IngressController => {
            if k.admin_url.is_some() {
                d.value(
                    "kong.admin_url",
                    "`mode: ingress-controller` does not use the Admin API",
                    Some("remove admin_url, or use `mode: admin-api`".to_owned()),
                );
            }
        }
    }
    if let Some(r) = &k.rate_limiting {
        if r.minute.is_none() && r.hour.is_none() {
            d.value(
                "kong.rate_limiting",
                "a limit needs `minute` or `hour`",
                Some("e.g. rate_limiting: { minute: 60 }".to_owned()),
            );
        }
        for (name, v) in [("minute", r.minute), ("hour", r.hour)] {
            if v == Some(0) {
                d.value(
                    &format!("kong.rate_limiting.{name}"),
                    "0 requests would refuse every call",
                    Some("use a positive number, or remove the limit".to_owned()),
                );
            }
        }
        if let (Some(m), Some(h)) = (r.minute, r.hour)
            && m > h
        {
            d.value(
                "kong.rate_limiting.hour",
                format!("{h} per hour is below {m} per minute"),
                Some("Kong refuses a larger limit for a smaller period".to_owned()),
            );
        }
        if r.policy == RateLimitPolicy::Cluster && k.database == KongDatabase::Off {
            d.value(
                "kong.rate_limiting.policy",
                "`cluster` keeps counters in Kong's database, and `kong.database` is `off`",
                Some("use `policy: local`, or declare `kong.database: postgres`".to_owned()),
            );
        }
    }
    if let Some(cors) = &k.cors {
        if cors.origins.is_empty() {
            d.value(
                "kong.cors.origins",
                "must name at least one origin",
                Some("e.g. origins: [\"https://app.example.com\"] (or \"*\")".to_owned()),
            );
        }
        for (i, m) in cors.methods.iter().enumerate() {
            if !crate::kong::HTTP_METHODS.contains(&m.to_ascii_uppercase().as_str()) {
                d.value(
                    &format!("kong.cors.methods[{i}]"),
                    format!("`{m}` is not an HTTP method"),
                    Some(format!("one of {}", HTTP_METHODS.join(", "))),
                );
            }
        }
    }
    if let Some(t) = &k.request_transformer {
        for name in t.add_headers.keys().chain(t.remove_headers.iter()) {
            if !header_name(name) {
                d.value(
                    "kong.request_transformer",
                    format!("`{name}` is not an HTTP header name"),
                    Some("letters, digits and !#$%&'*+-.^_`|~".to_owned()),
                );
            }
        }
    }
    if let Some(cons) = &k.consumer {
        if cons.username.trim().is_empty() {
            d.value(
                "kong.consumer.username",
                "must not be empty",
                Some("e.g. username: my-team".to_owned()),
            );
        }
        if cons.create_key && matches!(k.auth, KongAuth::Jwt | KongAuth::BasicAuth) {
            d.value(
                "kong.consumer.create_key",
                "a generated key is a key-auth credential, and `kong.auth` is not key-auth",
                Some(
                    "set `create_key: false`, or use `auth: key-auth` / `from-openapi`".to_owned(),
                ),
            );
        }
    }
}

/// The methods an OpenAPI path item can hold (and Kong routes and CORS accept).
pub const HTTP_METHODS: &[&str] = &[
    "GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE",
];

fn header_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    use crate::{LoadOptions, load_str};

    const BASE: &str = "version: \"1.0\"\napp: { name: shop }\nkubernetes: { enabled: true }\n";

    fn load(kong: &str, vars: &[(&str, &str)]) -> Result<crate::Config, crate::ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let src = format!("{BASE}{kong}");
        load_str(
            &src,
            Path::new("/app/deploy.yaml"),
            &LoadOptions::new(&vars),
        )
    }

    fn messages(e: crate::ConfigError) -> Vec<String> {
        match e {
            crate::ConfigError::Invalid { diagnostics, .. } => diagnostics
                .into_iter()
                .map(|d| {
                    format!(
                        "{}:{} {}: {}",
                        d.line.unwrap_or(0),
                        d.column.unwrap_or(0),
                        d.path,
                        d.message
                    )
                })
                .collect(),
            other => vec![other.to_string()],
        }
    }

    #[test]
    fn defaults_and_a_token_from_the_environment() {
        let c = load(
            "kong:\n  openapi: api/openapi.yaml\n  admin_url: http://127.0.0.1:8001\n  admin_token: ${KONG_TOKEN}\n  rate_limiting: {}\n",
            &[("KONG_TOKEN", "s3cr3t-token")],
        )
        .expect("valid");
        let k = c.kong.as_ref().expect("kong");
        assert_eq!(k.mode, super::KongMode::AdminApi);
        assert_eq!(k.auth, super::KongAuth::FromOpenapi);
        assert_eq!(k.openapi, Path::new("/app/api/openapi.yaml"));
        assert_eq!(
            k.admin_token.as_ref().map(|s| s.expose().to_owned()),
            Some("s3cr3t-token".into())
        );
        let rl = k.rate_limiting.as_ref().expect("rate limiting");
        assert_eq!(
            (rl.minute, rl.policy),
            (Some(60), super::RateLimitPolicy::Local)
        );
        assert!(!c.to_redacted_yaml().contains("s3cr3t-token"));
        assert!(!format!("{c:?}").contains("s3cr3t-token"));
        assert!(
            c.secret_values()
                .iter()
                .any(|s| s.expose() == "s3cr3t-token")
        );
    }

    #[test]
    fn a_token_kept_in_ssm_is_a_reference() {
        let c = load(
            "kong:\n  openapi: openapi.json\n  admin_url: https://kong:8444\n  admin_token: { ssm: /platform/kong/token }\n",
            &[],
        )
        .expect("valid");
        let k = c.kong.as_ref().expect("kong");
        assert_eq!(
            k.admin_token_source,
            Some(deployctl_core::SecretSource::Ssm {
                name: "/platform/kong/token".into()
            })
        );
    }

    #[test]
    fn every_problem_with_its_position() {
        let e = load(
            "kong:\n  openapi: api.txt\n  mode: admin-api\n  auth: oauth\n  rate_limiting: { minute: 100, hour: 10, policy: cluster }\n  admin_token: { ssm: aws/x, key: y }\n",
            &[],
        )
        .expect_err("invalid");
        let m = messages(e);
        let all = m.join("\n");
        assert!(all.contains("7:9 kong.auth: `oauth`"), "{all}");
        assert!(all.contains("9:35 kong.admin_token.key:"), "{all}");
    }

    #[test]
    fn rules_name_the_field() {
        let e = load(
            "kong:\n  openapi: api.txt\n  rate_limiting: { minute: 100, hour: 10, policy: cluster }\n  consumer: { username: \"\" }\n",
            &[],
        )
        .expect_err("invalid");
        let all = messages(e).join("\n");
        for want in [
            "5:12 kong.openapi: `api.txt` is not a YAML or JSON file",
            "kong.admin_url: `mode: admin-api` needs",
            "kong.rate_limiting.hour: 10 per hour is below 100 per minute",
            "kong.rate_limiting.policy: `cluster`",
            "kong.consumer.username: must not be empty",
        ] {
            assert!(all.contains(want), "missing {want:?} in\n{all}");
        }
    }

    #[test]
    fn the_gateway_needs_kubernetes() {
        let src = "version: \"1.0\"\napp: { name: shop }\nkong:\n  openapi: o.yaml\n  mode: ingress-controller\n";
        let vars: HashMap<String, String> = HashMap::new();
        let e = load_str(src, Path::new("/a/deploy.yaml"), &LoadOptions::new(&vars))
            .expect_err("invalid");
        let all = messages(e).join("\n");
        assert!(all.contains("kubernetes.enabled"), "{all}");
    }
}
