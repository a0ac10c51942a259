//! The typed `deploy.yaml` model. Every struct rejects unknown keys and fills defaults.
//!
//! Field names are the user's (`lambda.function.memory`, `kubernetes.service.type`, …);
//! `docs/CONFIGURATION.md` documents each one.

use std::collections::BTreeMap;
use std::path::PathBuf;

use deployctl_core::Secret;
use serde::{Deserialize, Serialize};

/// A validated, resolved `deploy.yaml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Config {
    /// The file it was loaded from.
    #[serde(skip)]
    pub file: PathBuf,
    /// Schema version, `"1.0"`.
    #[serde(default = "default_version")]
    pub version: String,
    /// The application.
    pub app: App,
    /// How the image is built.
    #[serde(default)]
    pub build: Build,
    /// Where the image is pushed.
    #[serde(default)]
    pub registry: Option<Registry>,
    /// Plain environment variables for the application (every target).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Secret environment variables: never printed; a Kubernetes Secret, Lambda env.
    #[serde(default, with = "secret_map")]
    pub secrets: BTreeMap<String, Secret>,
    /// The AWS Lambda target.
    #[serde(default)]
    pub lambda: Lambda,
    /// The Kubernetes target.
    #[serde(default)]
    pub kubernetes: Kubernetes,
    /// The local Docker engine target.
    #[serde(default)]
    pub local: Local,
    /// The Kong gateway in front of the app (`kong.rs`).
    #[serde(default)]
    pub kong: Option<crate::kong::Kong>,
    /// Steps around each target's deploy and destroy (`hooks.rs`).
    #[serde(default)]
    pub hooks: crate::hooks::Hooks,
    /// Overlays selected with `--env`; already merged, kept for listing.
    #[serde(default, skip_serializing)]
    pub environments: BTreeMap<String, serde_yaml::Value>,
    /// Secret values left unresolved under `SecretPolicy::Deferred`.
    #[serde(skip)]
    pub(crate) unresolved_secrets: Vec<crate::Diagnostic>,
    /// `secrets:` entries kept in Secrets Manager or Parameter Store (`secret_refs.rs`).
    #[serde(skip)]
    pub(crate) secret_sources: BTreeMap<String, deployctl_core::SecretSource>,
    /// Whether [`Config::set_resolved_secrets`] filled `secret_sources` in.
    #[serde(skip)]
    pub(crate) sources_resolved: bool,
    /// The load's positions, kept when there are references (for the checks after resolving).
    #[serde(skip)]
    pub(crate) positions: Option<crate::secret_refs::SharedPositions>,
}

fn default_version() -> String {
    "1.0".into()
}

/// `app:`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct App {
    /// Name; used for resource names (DNS-1123 label, at most 63 characters).
    pub name: String,
    /// Version; an image tag.
    #[serde(default = "default_app_version")]
    pub version: String,
    /// Port the application listens on.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Health check path.
    #[serde(default = "default_health", alias = "health_path")]
    pub health_check_path: String,
}

fn default_app_version() -> String {
    "latest".into()
}
fn default_port() -> u16 {
    8080
}
fn default_health() -> String {
    "/health".into()
}

/// `build:`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Build {
    /// Build context, relative to the config file's directory (resolved on load).
    pub context: PathBuf,
    /// Dockerfile, relative to the context.
    pub dockerfile: PathBuf,
    /// Build arguments; `{ secret: "${VAR}" }` marks a secret one.
    pub args: BTreeMap<String, BuildArgValue>,
    /// Target stage.
    pub target: Option<String>,
    /// `linux/amd64` or `linux/arm64`.
    pub platform: Option<String>,
    /// Network for `RUN` steps: `default`, `none` or `host` (`docker build --network`).
    pub network: Option<String>,
    /// Image labels.
    pub labels: BTreeMap<String, String>,
    /// Build without cache.
    pub no_cache: bool,
    /// Always pull base images.
    pub pull: bool,
    /// Build cache shared through a registry, for CI runners that start empty.
    pub cache: BuildCache,
}

/// `build.cache:`: `from` images whose inline cache a build may reuse, and `to`, a tag the
/// built image also gets, with the cache's metadata written into it (push it for the next
/// run's `from`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct BuildCache {
    /// Image references (`host/repo:tag`) to take cached layers from.
    pub from: Vec<String>,
    /// The image reference to tag the build with, carrying inline cache metadata.
    pub to: Option<String>,
}

impl Default for Build {
    fn default() -> Self {
        Self {
            context: PathBuf::from("."),
            dockerfile: PathBuf::from("Dockerfile"),
            args: BTreeMap::new(),
            target: None,
            platform: None,
            network: None,
            labels: BTreeMap::new(),
            no_cache: false,
            pull: false,
            cache: BuildCache::default(),
        }
    }
}

/// A build argument value.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum BuildArgValue {
    /// A plain value.
    Plain(String),
    /// `{ secret: "..." }`: never printed.
    Secret {
        /// The value.
        #[serde(with = "secret_string")]
        secret: Secret,
    },
}

/// `registry:`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Registry {
    /// `host[:port][/namespace]`.
    pub url: String,
    /// Explicit repository (default: `<url>/<app.name>`).
    #[serde(default)]
    pub repository: Option<String>,
    /// User name for explicit credentials.
    #[serde(default)]
    pub username: Option<String>,
    /// Password for explicit credentials (a secret; use `${VAR}`).
    #[serde(default, with = "opt_secret")]
    pub password: Option<Secret>,
    /// Which credential source to use.
    #[serde(default)]
    pub credentials: CredentialSource,
    /// Amazon ECR repository settings.
    #[serde(default)]
    pub ecr: EcrSettings,
}

/// Where registry credentials come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum CredentialSource {
    /// Config, then ECR for ECR hosts, then Docker's config.json, then anonymous.
    #[default]
    Auto,
    /// Only `registry.username` / `registry.password`.
    Config,
    /// Only Amazon ECR.
    Ecr,
    /// Only Docker's config.json.
    Docker,
}

/// `registry.ecr:`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct EcrSettings {
    /// Scan images on push.
    pub scan_on_push: bool,
    /// Lifecycle policy: keep the last N images.
    pub keep_images: u32,
}

impl Default for EcrSettings {
    fn default() -> Self {
        Self {
            scan_on_push: true,
            keep_images: 10,
        }
    }
}

/// `lambda:`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
#[derive(Default)]
pub struct Lambda {
    /// Deploy to Lambda.
    pub enabled: bool,
    /// AWS region (default: from the environment / profile).
    pub region: Option<String>,
    /// The function.
    pub function: Function,
    /// Execution role.
    pub iam: Iam,
    /// VPC attachment.
    pub vpc: Option<Vpc>,
    /// EFS mount.
    pub efs: Option<Efs>,
    /// HTTP API in front of the function.
    pub api_gateway: ApiGateway,
    /// Function URL.
    pub function_url: FunctionUrl,
    /// ECR push settings.
    pub ecr: LambdaEcr,
    /// How `secrets:` kept in Secrets Manager / Parameter Store reach the function.
    pub secrets: LambdaSecrets,
}

/// `lambda.secrets:` how secret references reach the function's environment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LambdaSecrets {
    /// The value, read at deploy time (visible to whoever may read the function's
    /// configuration).
    #[default]
    Value,
    /// The reference only: `<NAME>_SECRET_ARN` (the secret's name or ARN) or
    /// `<NAME>_SSM_PARAMETER` (the parameter's name); the app reads the value itself.
    Reference,
}

/// `lambda.function:`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Function {
    /// Function name (default: `app.name`).
    pub name: Option<String>,
    /// Memory in MB, 128–10240.
    pub memory: u32,
    /// Timeout in seconds, 1–900.
    pub timeout: u32,
    /// `x86_64` or `arm64`.
    pub architecture: Architecture,
    /// `/tmp` size in MB, 512–10240.
    pub ephemeral_storage: u32,
    /// Reserved concurrency.
    pub reserved_concurrency: Option<u32>,
    /// Extra environment for the function only.
    pub env: BTreeMap<String, String>,
}

impl Default for Function {
    fn default() -> Self {
        Self {
            name: None,
            memory: 512,
            timeout: 30,
            architecture: Architecture::X86_64,
            ephemeral_storage: 512,
            reserved_concurrency: None,
            env: BTreeMap::new(),
        }
    }
}

/// Lambda CPU architecture.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Architecture {
    /// x86_64 (`linux/amd64` images).
    #[default]
    #[serde(rename = "x86_64")]
    X86_64,
    /// arm64 (`linux/arm64` images).
    #[serde(rename = "arm64")]
    Arm64,
}

impl Architecture {
    /// The image platform this architecture runs.
    pub fn platform(self) -> &'static str {
        match self {
            Architecture::X86_64 => "linux/amd64",
            Architecture::Arm64 => "linux/arm64",
        }
    }
}

/// `lambda.iam:`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Iam {
    /// An existing role (name or ARN), used as is and never deleted.
    pub role: Option<String>,
    /// Create and own a role (ignored when `role` is set).
    pub create: bool,
    /// Extra managed policy ARNs to attach.
    pub policies: Vec<String>,
    /// Inline policies: name → policy document (JSON string or map).
    pub inline_policies: BTreeMap<String, serde_json::Value>,
}

impl Default for Iam {
    fn default() -> Self {
        Self {
            role: None,
            create: true,
            policies: Vec::new(),
            inline_policies: BTreeMap::new(),
        }
    }
}

/// `lambda.vpc:`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Vpc {
    /// Subnet IDs.
    pub subnet_ids: Vec<String>,
    /// Security group IDs.
    pub security_group_ids: Vec<String>,
}

/// `lambda.efs:`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Efs {
    /// EFS access point ARN.
    pub access_point_arn: String,
    /// Mount path, under `/mnt/`.
    #[serde(default = "default_efs_mount")]
    pub mount_path: String,
}

fn default_efs_mount() -> String {
    "/mnt/data".into()
}

/// `lambda.api_gateway:`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ApiGateway {
    /// Create an HTTP API.
    pub enabled: bool,
    /// API type: only `HTTP`.
    #[serde(rename = "type")]
    pub kind: String,
    /// CORS.
    pub cors: Cors,
    /// Default route throttling.
    pub throttling: Option<Throttling>,
    /// Stage name.
    pub stage: String,
}

impl Default for ApiGateway {
    fn default() -> Self {
        Self {
            enabled: true,
            kind: "HTTP".into(),
            cors: Cors::default(),
            throttling: None,
            stage: "$default".into(),
        }
    }
}

/// `lambda.api_gateway.cors:`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Cors {
    /// Send CORS headers.
    pub enabled: bool,
    /// Allowed origins.
    pub origins: Vec<String>,
    /// Allowed methods.
    pub methods: Vec<String>,
    /// Allowed headers.
    pub headers: Vec<String>,
    /// Preflight cache, seconds.
    pub max_age: Option<u32>,
}

impl Default for Cors {
    fn default() -> Self {
        Self {
            enabled: false,
            origins: vec!["*".into()],
            methods: vec!["*".into()],
            headers: vec!["*".into()],
            max_age: None,
        }
    }
}

/// `lambda.api_gateway.throttling:`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Throttling {
    /// Steady-state requests per second.
    pub rate_limit: f64,
    /// Burst size.
    pub burst_limit: u32,
}

/// `lambda.function_url:`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct FunctionUrl {
    /// Create a Function URL.
    pub enabled: bool,
    /// `NONE` or `AWS_IAM`.
    pub auth_type: String,
}

impl Default for FunctionUrl {
    fn default() -> Self {
        Self {
            enabled: false,
            auth_type: "NONE".into(),
        }
    }
}

/// `lambda.ecr:`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct LambdaEcr {
    /// Push the image to this registry address instead of the ECR registry host, while ECR
    /// API calls still go to AWS (for emulators). Env `DEPLOYCTL_ECR_PUSH_ENDPOINT` overrides.
    pub push_endpoint: Option<String>,
}

/// `kubernetes:`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Kubernetes {
    /// Deploy to Kubernetes.
    pub enabled: bool,
    /// kubeconfig context (default: the current one).
    pub context: Option<String>,
    /// Namespace.
    pub namespace: String,
    /// Directory of user templates replacing built-in ones of the same name.
    pub templates_dir: Option<PathBuf>,
    /// The Deployment.
    pub deployment: Deployment,
    /// The Service.
    pub service: Service,
    /// Ingress.
    pub ingress: Ingress,
    /// HorizontalPodAutoscaler.
    pub hpa: Hpa,
    /// PersistentVolumeClaim.
    pub persistence: Persistence,
    /// Extra plain env for the ConfigMap (merged over `env`).
    pub configmap: BTreeMap<String, String>,
    /// Image pull secret name (default: created from registry credentials when private).
    pub image_pull_secret: Option<String>,
    /// ServiceAccount.
    pub service_account: ServiceAccount,
    /// NetworkPolicy.
    pub network_policy: NetworkPolicy,
    /// Rollout watch.
    pub rollout: Rollout,
    /// The namespace as a tenant (quota, limits, isolation); see `tenant.rs`.
    pub tenant: Option<crate::tenant::Tenant>,
}

impl Default for Kubernetes {
    fn default() -> Self {
        Self {
            enabled: false,
            context: None,
            namespace: "default".into(),
            templates_dir: None,
            deployment: Deployment::default(),
            service: Service::default(),
            ingress: Ingress::default(),
            hpa: Hpa::default(),
            persistence: Persistence::default(),
            configmap: BTreeMap::new(),
            image_pull_secret: None,
            service_account: ServiceAccount::default(),
            network_policy: NetworkPolicy::default(),
            rollout: Rollout::default(),
            tenant: None,
        }
    }
}

/// `kubernetes.deployment:`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Deployment {
    /// Replicas.
    pub replicas: i64,
    /// Resource requests and limits.
    pub resources: Resources,
    /// Probes.
    pub probes: Probes,
    /// Rolling update strategy.
    pub strategy: Strategy,
    /// Mount the root filesystem read-only.
    pub read_only_root_filesystem: bool,
    /// Revisions kept for rollback.
    pub revision_history: u32,
}

impl Default for Deployment {
    fn default() -> Self {
        Self {
            replicas: 1,
            resources: Resources::default(),
            probes: Probes::default(),
            strategy: Strategy::default(),
            read_only_root_filesystem: false,
            revision_history: 10,
        }
    }
}

/// `resources:`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Resources {
    /// Requests.
    pub requests: ResourceAmounts,
    /// Limits.
    pub limits: ResourceAmounts,
}

/// CPU and memory quantities.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ResourceAmounts {
    /// CPU, e.g. `250m`.
    pub cpu: Option<String>,
    /// Memory, e.g. `256Mi`.
    pub memory: Option<String>,
}

/// `probes:`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Probes {
    /// Liveness probe.
    pub liveness: Probe,
    /// Readiness probe.
    pub readiness: Probe,
}

/// One HTTP probe.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Probe {
    /// Path (default: `app.health_check_path`).
    pub path: Option<String>,
    /// Seconds before the first probe.
    pub initial_delay_seconds: u32,
    /// Seconds between probes.
    pub period_seconds: u32,
    /// Probe timeout.
    pub timeout_seconds: u32,
    /// Failures before acting.
    pub failure_threshold: u32,
}

impl Default for Probe {
    fn default() -> Self {
        Self {
            path: None,
            initial_delay_seconds: 5,
            period_seconds: 10,
            timeout_seconds: 2,
            failure_threshold: 3,
        }
    }
}

/// `strategy:` rolling update bounds: integers or percentages.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Strategy {
    /// Max surge.
    pub max_surge: IntOrPercent,
    /// Max unavailable.
    pub max_unavailable: IntOrPercent,
}

impl Default for Strategy {
    fn default() -> Self {
        Self {
            max_surge: IntOrPercent::Text("25%".into()),
            max_unavailable: IntOrPercent::Int(0),
        }
    }
}

/// An integer or a percentage string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum IntOrPercent {
    /// A count.
    Int(i64),
    /// A percentage, `"25%"`.
    Text(String),
}

/// `kubernetes.service:`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Service {
    /// `ClusterIP`, `NodePort` or `LoadBalancer`.
    #[serde(rename = "type")]
    pub kind: ServiceType,
    /// Service port.
    pub port: u16,
    /// Node port, 30000–32767 (NodePort only).
    pub node_port: Option<u32>,
}

impl Default for Service {
    fn default() -> Self {
        Self {
            kind: ServiceType::ClusterIP,
            port: 80,
            node_port: None,
        }
    }
}

/// Kubernetes Service type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ServiceType {
    /// Cluster-internal.
    #[default]
    ClusterIP,
    /// A port on every node.
    NodePort,
    /// A cloud load balancer.
    LoadBalancer,
}

/// `kubernetes.ingress:`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Ingress {
    /// Create an Ingress.
    pub enabled: bool,
    /// Ingress class.
    pub class: Option<String>,
    /// Hosts and their paths.
    pub hosts: Vec<IngressHost>,
    /// TLS.
    pub tls: Vec<IngressTls>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
}

/// One ingress host.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct IngressHost {
    /// Host name.
    pub host: String,
    /// Paths (default: `/` Prefix).
    #[serde(default = "default_paths")]
    pub paths: Vec<IngressPath>,
}

fn default_paths() -> Vec<IngressPath> {
    vec![IngressPath {
        path: "/".into(),
        path_type: "Prefix".into(),
    }]
}

/// One ingress path.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct IngressPath {
    /// Path.
    pub path: String,
    /// `Prefix`, `Exact` or `ImplementationSpecific`.
    #[serde(default = "default_path_type")]
    pub path_type: String,
}

fn default_path_type() -> String {
    "Prefix".into()
}

/// One ingress TLS entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct IngressTls {
    /// Hosts covered.
    pub hosts: Vec<String>,
    /// Secret holding the certificate.
    pub secret_name: String,
}

/// `kubernetes.hpa:`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Hpa {
    /// Create an autoscaler.
    pub enabled: bool,
    /// Minimum replicas.
    pub min_replicas: u32,
    /// Maximum replicas.
    pub max_replicas: u32,
    /// Target CPU utilisation, percent.
    pub cpu_target_percent: Option<u32>,
    /// Target memory utilisation, percent.
    pub memory_target_percent: Option<u32>,
}

impl Default for Hpa {
    fn default() -> Self {
        Self {
            enabled: false,
            min_replicas: 1,
            max_replicas: 5,
            cpu_target_percent: Some(80),
            memory_target_percent: None,
        }
    }
}

/// `kubernetes.persistence:`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Persistence {
    /// Create and mount a PVC.
    pub enabled: bool,
    /// Size, e.g. `1Gi`.
    pub size: String,
    /// Storage class (default: the cluster's).
    pub storage_class: Option<String>,
    /// Mount path.
    pub mount_path: String,
    /// `ReadWriteOnce`, `ReadWriteMany`, `ReadOnlyMany` or `ReadWriteOncePod`.
    pub access_mode: String,
}

impl Default for Persistence {
    fn default() -> Self {
        Self {
            enabled: false,
            size: "1Gi".into(),
            storage_class: None,
            mount_path: "/data".into(),
            access_mode: "ReadWriteOnce".into(),
        }
    }
}

/// `kubernetes.service_account:`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ServiceAccount {
    /// Create one for the app.
    pub create: bool,
    /// Name (default: `app.name` when created).
    pub name: Option<String>,
    /// Annotations (e.g. IAM role bindings).
    pub annotations: BTreeMap<String, String>,
}

/// `kubernetes.network_policy:`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct NetworkPolicy {
    /// Create a NetworkPolicy restricting ingress to the app port.
    pub enabled: bool,
    /// Namespaces (by name) allowed in.
    pub allow_namespaces: Vec<String>,
    /// Pod labels allowed in.
    pub allow_pod_labels: BTreeMap<String, String>,
}

/// `kubernetes.rollout:`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Rollout {
    /// Deadline for a rollout, seconds.
    pub timeout_seconds: u32,
    /// Roll back automatically when a rollout fails.
    pub auto_rollback: bool,
}

impl Default for Rollout {
    fn default() -> Self {
        Self {
            timeout_seconds: 600,
            auto_rollback: true,
        }
    }
}

/// `local:`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Local {
    /// Run on the local Docker engine. Default: on when no other target is enabled.
    pub enabled: Option<bool>,
    /// Host port (default: `app.port`).
    pub port: Option<u16>,
    /// `no`, `on-failure`, `always` or `unless-stopped`.
    pub restart: String,
}

impl Default for Local {
    fn default() -> Self {
        Self {
            enabled: None,
            port: None,
            restart: "unless-stopped".into(),
        }
    }
}

mod secret_string {
    use deployctl_core::Secret;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(s: &Secret, ser: S) -> Result<S::Ok, S::Error> {
        s.serialize(ser)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Secret, D::Error> {
        String::deserialize(de).map(Secret::new)
    }
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

mod secret_map {
    use std::collections::BTreeMap;

    use deployctl_core::Secret;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(
        m: &BTreeMap<String, Secret>,
        ser: S,
    ) -> Result<S::Ok, S::Error> {
        m.serialize(ser)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        de: D,
    ) -> Result<BTreeMap<String, Secret>, D::Error> {
        BTreeMap::<String, String>::deserialize(de)
            .map(|m| m.into_iter().map(|(k, v)| (k, Secret::new(v))).collect())
    }
}
