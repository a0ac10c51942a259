//! The desired Lambda deployment, derived from the validated config.

use std::collections::BTreeMap;

use deployctl_config::{Architecture, Config};
use deployctl_core::Secret;

/// Tag key naming the app a resource belongs to.
pub const TAG_APP: &str = "deployctl:app";
/// Tag key marking a resource as created by deployctl.
pub const TAG_MANAGED_BY: &str = "deployctl:managed-by";
/// Value of [`TAG_MANAGED_BY`].
pub const MANAGED_BY: &str = "deployctl";
/// The alias deploys move.
pub const ALIAS: &str = "live";

const BASIC_EXECUTION: &str = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole";
const VPC_ACCESS: &str = "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole";
const EFS_CLIENT: &str = "arn:aws:iam::aws:policy/AmazonElasticFileSystemClientReadWriteAccess";

/// The trust policy of a role deployctl creates.
pub const LAMBDA_TRUST_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

/// An environment variable value; secret ones print as `***` in plans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvValue {
    /// A plain value.
    Plain(String),
    /// A value from `secrets:`.
    Secret(Secret),
}

impl EnvValue {
    /// The value itself (for the API call only).
    pub fn expose(&self) -> &str {
        match self {
            EnvValue::Plain(v) => v,
            EnvValue::Secret(s) => s.expose(),
        }
    }

    /// The value as it may be shown.
    pub fn shown(&self) -> String {
        match self {
            EnvValue::Plain(v) => v.clone(),
            EnvValue::Secret(_) => "***".into(),
        }
    }
}

/// The execution role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleSpec {
    /// Role name.
    pub name: String,
    /// The role ARN when the config names one by ARN.
    pub arn: Option<String>,
    /// Whether deployctl creates and owns it (false: named in config, used as is).
    pub managed: bool,
    /// Managed policy ARNs to attach (managed roles only).
    pub policies: Vec<String>,
    /// Inline policies (name → JSON document), managed roles only.
    pub inline_policies: BTreeMap<String, serde_json::Value>,
}

/// The HTTP API.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiSpec {
    /// API name.
    pub name: String,
    /// Stage name (`$default`).
    pub stage: String,
    /// CORS, when enabled.
    pub cors: Option<CorsSpec>,
    /// Default route throttling (rate per second, burst).
    pub throttling: Option<(f64, i32)>,
}

/// CORS settings of the HTTP API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsSpec {
    /// Allowed origins.
    pub origins: Vec<String>,
    /// Allowed methods.
    pub methods: Vec<String>,
    /// Allowed headers.
    pub headers: Vec<String>,
    /// Max age in seconds.
    pub max_age: Option<i32>,
}

/// Everything the Lambda target deploys, resolved from the config.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LambdaSpec {
    /// `app.name`, used in tags.
    pub app: String,
    /// Function name.
    pub function_name: String,
    /// AWS region.
    pub region: String,
    /// AWS account id.
    pub account_id: String,
    /// ECR repository URI (no tag) the function's image is referenced from.
    pub image_repository: String,
    /// Memory in MB.
    pub memory: i32,
    /// Timeout in seconds.
    pub timeout: i32,
    /// `x86_64` or `arm64`.
    pub architecture: &'static str,
    /// /tmp size in MB.
    pub ephemeral_storage: i32,
    /// Reserved concurrency.
    pub reserved_concurrency: Option<i32>,
    /// Function environment.
    pub environment: BTreeMap<String, EnvValue>,
    /// Execution role.
    pub role: RoleSpec,
    /// VPC (subnets, security groups).
    pub vpc: Option<(Vec<String>, Vec<String>)>,
    /// EFS (access point ARN, mount path).
    pub efs: Option<(String, String)>,
    /// HTTP API, when enabled.
    pub api: Option<ApiSpec>,
    /// Function URL auth type, when enabled.
    pub function_url: Option<String>,
    /// Log group name.
    pub log_group: String,
    /// Whether the AWS endpoint is an emulator (endpoints then cannot be verified).
    pub emulated: bool,
    /// The path `verify` asks for (`app.health_check_path`).
    pub health_path: String,
}

impl LambdaSpec {
    /// The desired deployment for `config` in `account_id`/`region`, its image kept in
    /// `image_repository` (`<account>.dkr.ecr.<region>.amazonaws.com/<name>`).
    pub fn from_config(
        config: &Config,
        account_id: &str,
        region: &str,
        image_repository: &str,
    ) -> Self {
        let l = &config.lambda;
        let function_name = config.function_name().to_owned();
        let mut environment: BTreeMap<String, EnvValue> = BTreeMap::new();
        for (k, v) in config.env.iter().chain(&l.function.env) {
            environment.insert(k.clone(), EnvValue::Plain(v.clone()));
        }
        let by_reference = l.secrets == deployctl_config::LambdaSecrets::Reference;
        for (k, v) in &config.secrets {
            match config.secret_sources().get(k) {
                // `lambda.secrets: reference`: the app reads the value; the reference is
                // no secret.
                Some(source) if by_reference => {
                    environment.insert(
                        source.reference_variable(k),
                        EnvValue::Plain(source.id().to_owned()),
                    );
                }
                _ => {
                    environment.insert(k.clone(), EnvValue::Secret(v.clone()));
                }
            }
        }
        let port = config.app.port.to_string();
        environment.insert("PORT".into(), EnvValue::Plain(port.clone()));
        environment.insert("AWS_LWA_PORT".into(), EnvValue::Plain(port));
        environment.insert(
            "AWS_LWA_READINESS_CHECK_PATH".into(),
            EnvValue::Plain(config.app.health_check_path.clone()),
        );

        let role = match &l.iam.role {
            Some(r) if r.starts_with("arn:") => RoleSpec {
                name: r.rsplit('/').next().unwrap_or(r).to_owned(),
                arn: Some(r.clone()),
                managed: false,
                policies: Vec::new(),
                inline_policies: BTreeMap::new(),
            },
            Some(r) => RoleSpec {
                name: r.clone(),
                arn: None,
                managed: false,
                policies: Vec::new(),
                inline_policies: BTreeMap::new(),
            },
            None => {
                let mut policies = vec![BASIC_EXECUTION.to_owned()];
                if l.vpc.is_some() {
                    policies.push(VPC_ACCESS.to_owned());
                }
                if l.efs.is_some() {
                    policies.push(EFS_CLIENT.to_owned());
                }
                for p in &l.iam.policies {
                    let arn = if p.starts_with("arn:") {
                        p.clone()
                    } else {
                        format!("arn:aws:iam::aws:policy/{p}")
                    };
                    if !policies.contains(&arn) {
                        policies.push(arn);
                    }
                }
                RoleSpec {
                    name: role_name(&function_name),
                    arn: None,
                    managed: true,
                    policies,
                    inline_policies: l.iam.inline_policies.clone(),
                }
            }
        };

        let api = l.api_gateway.enabled.then(|| ApiSpec {
            name: function_name.clone(),
            stage: l.api_gateway.stage.clone(),
            cors: l.api_gateway.cors.enabled.then(|| CorsSpec {
                origins: l.api_gateway.cors.origins.clone(),
                methods: l.api_gateway.cors.methods.clone(),
                headers: l.api_gateway.cors.headers.clone(),
                max_age: l.api_gateway.cors.max_age.map(clamp_i32),
            }),
            throttling: l
                .api_gateway
                .throttling
                .as_ref()
                .map(|t| (t.rate_limit, clamp_i32(t.burst_limit))),
        });

        Self {
            app: config.app.name.clone(),
            log_group: format!("/aws/lambda/{function_name}"),
            function_name,
            region: region.to_owned(),
            account_id: account_id.to_owned(),
            image_repository: image_repository.to_owned(),
            memory: clamp_i32(l.function.memory),
            timeout: clamp_i32(l.function.timeout),
            architecture: match l.function.architecture {
                Architecture::Arm64 => "arm64",
                _ => "x86_64",
            },
            ephemeral_storage: clamp_i32(l.function.ephemeral_storage),
            reserved_concurrency: l.function.reserved_concurrency.map(clamp_i32),
            environment,
            role,
            vpc: l
                .vpc
                .as_ref()
                .map(|v| (v.subnet_ids.clone(), v.security_group_ids.clone())),
            efs: l
                .efs
                .as_ref()
                .map(|e| (e.access_point_arn.clone(), e.mount_path.clone())),
            api,
            function_url: l
                .function_url
                .enabled
                .then(|| l.function_url.auth_type.clone()),
            emulated: false,
            health_path: config.app.health_check_path.clone(),
        }
    }

    /// Marks the AWS endpoint as an emulator: an invoke that cannot run the image is then
    /// reported as not verifiable (with what the emulator said) instead of failing.
    #[must_use]
    pub fn emulated(mut self, emulated: bool) -> Self {
        self.emulated = emulated;
        self
    }

    /// The role ARN (known from config, or the conventional one in this account).
    pub fn role_arn(&self) -> String {
        self.role
            .arn
            .clone()
            .unwrap_or_else(|| format!("arn:aws:iam::{}:role/{}", self.account_id, self.role.name))
    }

    /// The function ARN.
    pub fn function_arn(&self) -> String {
        format!(
            "arn:aws:lambda:{}:{}:function:{}",
            self.region, self.account_id, self.function_name
        )
    }

    /// The alias ARN the API invokes.
    pub fn alias_arn(&self) -> String {
        format!("{}:{ALIAS}", self.function_arn())
    }

    /// The tags every created resource carries.
    pub fn tags(&self) -> [(&'static str, String); 2] {
        [
            (TAG_APP, self.app.clone()),
            (TAG_MANAGED_BY, MANAGED_BY.to_owned()),
        ]
    }
}

/// The name of the role deployctl creates for `function`.
pub fn role_name(function: &str) -> String {
    // IAM role names are at most 64 characters.
    let mut name = format!("{function}-deployctl");
    name.truncate(64);
    name
}

fn clamp_i32(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// Which part of the deployment a run converges: `deploy lambda --update` is the function,
/// `--create-api` the HTTP API and function URL; both, or neither, is everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LambdaScope {
    /// Role, function, version, alias, log group, HTTP API, function URL.
    #[default]
    All,
    /// Role, function, version, alias and log group; the API and URL are left as they are.
    Function,
    /// The HTTP API and function URL, in front of the alias already deployed.
    Api,
}

impl LambdaScope {
    /// The scope for the `--update` / `--create-api` flags.
    pub fn from_flags(update: bool, create_api: bool) -> Self {
        match (update, create_api) {
            (true, false) => Self::Function,
            (false, true) => Self::Api,
            _ => Self::All,
        }
    }

    /// Whether the run converges the role, function, version, alias and log group.
    pub(crate) fn converges_function(self) -> bool {
        self != Self::Api
    }

    /// Whether the run converges the HTTP API and function URL.
    pub(crate) fn converges_api(self) -> bool {
        self != Self::Function
    }
}
