//! The command tree. Only argument shapes live here; behaviour is in `commands/`.

use std::path::PathBuf;

use argh::{ArgsInfo, FromArgs};

/// Ship one container image to AWS Lambda, Kubernetes and the local Docker engine from one
/// deploy.yaml.
#[derive(FromArgs, ArgsInfo, Debug)]
pub struct Cli {
    /// path to the config file (default: ./deploy.yaml)
    #[argh(option, short = 'c', default = "PathBuf::from(\"deploy.yaml\")")]
    pub config: PathBuf,

    /// environment overlay from the config's `environments:` section, e.g. staging
    #[argh(option, short = 'e')]
    pub env: Option<String>,

    /// kubernetes: the kubeconfig context to use (overrides kubernetes.context; default: the
    /// kubeconfig's current context)
    #[argh(option)]
    pub context: Option<String>,

    /// output format: text (default) or json (newline-delimited JSON events and a result)
    #[argh(option, short = 'o', default = "OutputFormat::Text")]
    pub output: OutputFormat,

    /// how long deploy, rollback, scale and destroy wait for another run's lock on the same
    /// app and target before failing (30s, 5m; default 5m; 0: fail at once)
    #[argh(option, default = "Seconds(300)")]
    pub lock_timeout: Seconds,

    /// more log output (-v: debug, -vv: trace); RUST_LOG overrides
    #[argh(switch, short = 'v')]
    pub verbose: u8,

    /// print the version and exit
    #[argh(switch)]
    pub version: bool,

    /// run deploy, status, logs and destroy on a `deployctl serve` at this URL instead of
    /// here (e.g. http://127.0.0.1:8787); env DEPLOYCTL_SERVER
    #[argh(option)]
    pub server: Option<String>,

    /// with --server: the project the app belongs to; env DEPLOYCTL_PROJECT
    #[argh(option)]
    pub project: Option<String>,

    /// with --server: the API token (`deployctl serve token create`); env DEPLOYCTL_TOKEN,
    /// which keeps it out of the process list
    #[argh(option)]
    pub token: Option<String>,

    #[argh(subcommand)]
    pub command: Option<Command>,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Text,
    Json,
}

impl argh::FromArgValue for OutputFormat {
    fn from_arg_value(value: &str) -> Result<Self, String> {
        match value {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("unknown output format `{other}`: use text or json")),
        }
    }
}

/// A duration on the command line: `30s`, `10m`, `2h`, `1d` or plain seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds(pub u64);

impl argh::FromArgValue for Seconds {
    fn from_arg_value(value: &str) -> Result<Self, String> {
        let s = value.trim();
        let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
        let n: u64 = num
            .parse()
            .map_err(|_| format!("`{s}` is not a duration: use e.g. 30s, 10m, 2h or 1d"))?;
        let mult = match unit {
            "" | "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => {
                return Err(format!(
                    "`{s}` has an unknown unit `{unit}`: use s, m, h or d"
                ));
            }
        };
        Ok(Self(n.saturating_mul(mult)))
    }
}

/// `deploy --verify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyChoice {
    Auto,
    Invoke,
}

impl argh::FromArgValue for VerifyChoice {
    fn from_arg_value(value: &str) -> Result<Self, String> {
        match value {
            "auto" => Ok(Self::Auto),
            "invoke" => Ok(Self::Invoke),
            other => Err(format!(
                "unknown verification `{other}`: use auto or invoke"
            )),
        }
    }
}

#[derive(FromArgs, ArgsInfo, Debug)]
#[argh(subcommand)]
pub enum Command {
    Init(InitArgs),
    Validate(ValidateArgs),
    Plan(PlanArgs),
    Build(BuildArgs),
    Push(PushArgs),
    Deploy(DeployArgs),
    Status(StatusArgs),
    Logs(LogsArgs),
    Destroy(DestroyArgs),
    Rollback(RollbackArgs),
    Render(RenderArgs),
    History(HistoryArgs),
    Scale(ScaleArgs),
    Unlock(UnlockArgs),
    Completions(CompletionsArgs),
    Run(RunArgs),
    Serve(crate::cli_serve::ServeArgs),
}

impl Command {
    /// The subcommand's name, as its argh definition spells it.
    pub fn name(&self) -> &'static str {
        use argh::SubCommand;
        match self {
            Command::Init(_) => <InitArgs as SubCommand>::COMMAND.name,
            Command::Validate(_) => <ValidateArgs as SubCommand>::COMMAND.name,
            Command::Plan(_) => <PlanArgs as SubCommand>::COMMAND.name,
            Command::Build(_) => <BuildArgs as SubCommand>::COMMAND.name,
            Command::Push(_) => <PushArgs as SubCommand>::COMMAND.name,
            Command::Deploy(_) => <DeployArgs as SubCommand>::COMMAND.name,
            Command::Status(_) => <StatusArgs as SubCommand>::COMMAND.name,
            Command::Logs(_) => <LogsArgs as SubCommand>::COMMAND.name,
            Command::Destroy(_) => <DestroyArgs as SubCommand>::COMMAND.name,
            Command::Rollback(_) => <RollbackArgs as SubCommand>::COMMAND.name,
            Command::Render(_) => <RenderArgs as SubCommand>::COMMAND.name,
            Command::History(_) => <HistoryArgs as SubCommand>::COMMAND.name,
            Command::Scale(_) => <ScaleArgs as SubCommand>::COMMAND.name,
            Command::Unlock(_) => <UnlockArgs as SubCommand>::COMMAND.name,
            Command::Completions(_) => <CompletionsArgs as SubCommand>::COMMAND.name,
            Command::Run(_) => <RunArgs as SubCommand>::COMMAND.name,
            Command::Serve(_) => <crate::cli_serve::ServeArgs as SubCommand>::COMMAND.name,
        }
    }
}

/// Detect the project in a directory and write a commented deploy.yaml and a unified
/// Dockerfile (runs on Lambda and Kubernetes through the AWS Lambda Web Adapter).
#[derive(FromArgs, ArgsInfo, Debug)]
#[argh(subcommand, name = "init")]
pub struct InitArgs {
    /// project directory (default: the current directory)
    #[argh(positional, default = "PathBuf::from(\".\")")]
    pub dir: PathBuf,

    /// overwrite files that already exist
    #[argh(switch)]
    pub force: bool,

    /// application name (default: from the project manifest)
    #[argh(option)]
    pub name: Option<String>,

    /// port the application listens on (default: 8080)
    #[argh(option, default = "8080")]
    pub port: u16,

    /// health check path (default: /health)
    #[argh(option, default = "String::from(\"/health\")")]
    pub health_path: String,

    /// AWS region for the Lambda section (default: us-east-1)
    #[argh(option, default = "String::from(\"us-east-1\")")]
    pub region: String,

    /// print what would be written; write nothing
    #[argh(switch)]
    pub dry_run: bool,
}

/// Check the config: report every problem with file, line:column, field path and a hint.
#[derive(FromArgs, ArgsInfo, Debug)]
#[argh(subcommand, name = "validate")]
pub struct ValidateArgs {
    /// print the resolved config (secrets shown as ***)
    #[argh(switch)]
    pub print: bool,
}

/// Show what a deploy would do for every enabled target; changes nothing.
#[derive(FromArgs, ArgsInfo, Debug)]
#[argh(subcommand, name = "plan")]
pub struct PlanArgs {
    /// accepted for symmetry with `deploy --dry-run`: plan never changes anything
    #[argh(switch)]
    pub dry_run: bool,

    /// every service of the deployctl-workspace.yaml found from the current directory up,
    /// in waves of their dependencies
    #[argh(switch)]
    pub workspace: bool,

    /// with --workspace: only these services (comma-separated) and what they depend on
    #[argh(option)]
    pub only: Option<String>,

    /// with --workspace: how many services run at once within a wave (default 4)
    #[argh(option, default = "4")]
    pub jobs: usize,
}

/// Build the image on the Docker engine (DOCKER_HOST or the default socket).
#[derive(FromArgs, ArgsInfo, Debug)]
#[argh(subcommand, name = "build")]
pub struct BuildArgs {
    /// build without the cache
    #[argh(switch)]
    pub no_cache: bool,

    /// always pull newer base images
    #[argh(switch)]
    pub pull: bool,

    /// an extra tag for the image (repeatable)
    #[argh(option, short = 't')]
    pub tag: Vec<String>,
}

/// Build the image (the engine's cache makes a rebuild cheap) and push it to the registry;
/// prints the digest deploys use.
#[derive(FromArgs, ArgsInfo, Debug)]
#[argh(subcommand, name = "push")]
pub struct PushArgs {
    /// build without the cache
    #[argh(switch)]
    pub no_cache: bool,
}

/// Build once, push once, deploy the digest to a target (lambda, k8s, local) or all.
#[derive(FromArgs, ArgsInfo, Debug)]
#[argh(subcommand, name = "deploy")]
pub struct DeployArgs {
    /// target: lambda, k8s, local or all (default: all enabled targets)
    #[argh(positional)]
    pub target: Option<String>,

    /// show what would change per resource; build, push and change nothing
    #[argh(switch)]
    pub dry_run: bool,

    /// every stage: build, push, deploy (the default when no stage flag is given)
    #[argh(switch)]
    pub all: bool,

    /// build the image (alone: only build)
    #[argh(switch)]
    pub build: bool,

    /// build and push the image (alone: only build and push)
    #[argh(switch)]
    pub push: bool,

    /// lambda: deploy the function (role, function, version, alias) and leave the API as it
    /// is; without --build/--push, the image already pushed for app.version
    #[argh(switch)]
    pub update: bool,

    /// lambda: set up the HTTP API and function URL in front of the deployed alias; without
    /// --update, the function is left as it is
    #[argh(switch)]
    pub create_api: bool,

    /// kubernetes: apply the manifests; without --build/--push, the image already pushed for
    /// app.version
    #[argh(switch)]
    pub apply: bool,

    /// deploy this already pushed image (repository@sha256:…) instead of building
    #[argh(option)]
    pub image: Option<String>,

    /// build without the layer cache
    #[argh(switch)]
    pub no_cache: bool,

    /// skip the health check of the deployed endpoints
    #[argh(switch)]
    pub no_verify: bool,

    /// kong: replace the consumer's key (a new one is shown once)
    #[argh(switch)]
    pub rotate_key: bool,

    /// run none of deploy.yaml's hooks (pre_deploy, post_deploy)
    #[argh(switch)]
    pub skip_hooks: bool,

    /// lambda: how to check the health path: auto (HTTP on the API endpoint and function URL
    /// when they answer, else an invoke of the live alias; the default) or invoke
    #[argh(option, default = "VerifyChoice::Auto")]
    pub verify: VerifyChoice,

    /// how long the health check of each target may keep trying (30s, 2m; default: 60s for
    /// Lambda and Kubernetes, 30s for local)
    #[argh(option)]
    pub verify_timeout: Option<Seconds>,

    /// kubernetes: take over fields another field manager owns
    #[argh(switch)]
    pub force_conflicts: bool,

    /// kubernetes: do not roll back automatically when the rollout fails
    #[argh(switch)]
    pub no_rollback: bool,

    /// kubernetes: with --dry-run, also send every manifest as a server-side dry run
    #[argh(switch)]
    pub server_dry_run: bool,

    /// every service of the deployctl-workspace.yaml found from the current directory up,
    /// in waves of their dependencies
    #[argh(switch)]
    pub workspace: bool,

    /// with --workspace: only these services (comma-separated) and what they depend on
    #[argh(option)]
    pub only: Option<String>,

    /// with --workspace: how many services run at once within a wave (default 4)
    #[argh(option, default = "4")]
    pub jobs: usize,

    /// with --workspace: how many image builds run at once across the services (default 2)
    #[argh(option, default = "2")]
    pub build_jobs: usize,
}

/// Show what is deployed: versions, image digests, resources, endpoints.
#[derive(FromArgs, ArgsInfo, Debug)]
#[argh(subcommand, name = "status")]
pub struct StatusArgs {
    /// target: lambda, k8s, local or all (default: all enabled targets)
    #[argh(positional)]
    pub target: Option<String>,

    /// every service of the deployctl-workspace.yaml found from the current directory up
    #[argh(switch)]
    pub workspace: bool,

    /// with --workspace: only these services (comma-separated) and what they depend on
    #[argh(option)]
    pub only: Option<String>,
}

/// Print a target's logs.
#[derive(FromArgs, ArgsInfo, Debug)]
#[argh(subcommand, name = "logs")]
pub struct LogsArgs {
    /// target: lambda, k8s or local
    #[argh(positional)]
    pub target: Option<String>,

    /// keep printing new lines until Ctrl-C
    #[argh(switch, short = 'f')]
    pub follow: bool,

    /// only lines newer than this (30s, 10m, 2h, 1d)
    #[argh(option)]
    pub since: Option<Seconds>,

    /// only lines containing this text
    #[argh(option)]
    pub filter: Option<String>,

    /// only the last N lines
    #[argh(option)]
    pub tail: Option<u64>,
}

/// Delete everything deployctl created for the app on a target (nothing else).
#[derive(FromArgs, ArgsInfo, Debug)]
#[argh(subcommand, name = "destroy")]
pub struct DestroyArgs {
    /// target: lambda, k8s, local or all (default: all enabled targets)
    #[argh(positional)]
    pub target: Option<String>,

    /// list what would be deleted; delete nothing
    #[argh(switch)]
    pub dry_run: bool,

    /// lambda: also delete the ECR repository and its images (only if deployctl created it)
    #[argh(switch)]
    pub purge_images: bool,

    /// k8s: also remove the tenant (kubernetes.tenant) and its namespace; refused while another deployctl app lives there
    #[argh(switch)]
    pub tenant: bool,

    /// run none of deploy.yaml's pre_destroy hooks
    #[argh(switch)]
    pub skip_hooks: bool,

    /// every service of the deployctl-workspace.yaml found from the current directory up
    #[argh(switch)]
    pub workspace: bool,

    /// with --workspace: only these services (comma-separated) and what they depend on
    #[argh(option)]
    pub only: Option<String>,
}

/// Move a target back to the previous version (or --to a given one).
#[derive(FromArgs, ArgsInfo, Debug)]
#[argh(subcommand, name = "rollback")]
pub struct RollbackArgs {
    /// target: lambda or k8s
    #[argh(positional)]
    pub target: String,

    /// the version to go back to, a number as `history` lists it (default: the one before
    /// the live one)
    #[argh(option)]
    pub to: Option<u64>,
}

/// Render the Kubernetes manifests (multi-document YAML on stdout, or --out DIR).
#[derive(FromArgs, ArgsInfo, Debug)]
#[argh(subcommand, name = "render")]
pub struct RenderArgs {
    /// what to render: k8s
    #[argh(positional)]
    pub target: String,

    /// write one file per resource into this directory (for GitOps)
    #[argh(option)]
    pub out: Option<PathBuf>,

    /// the pushed image the manifests pin (repository@sha256:…)
    #[argh(option)]
    pub image: Option<String>,
}

/// List the recorded versions of a target (what `rollback --to` accepts); with --stats,
/// the recorded deploys' frequency, success rate and p50/p95 durations.
#[derive(FromArgs, ArgsInfo, Debug)]
#[argh(subcommand, name = "history")]
pub struct HistoryArgs {
    /// target: lambda, k8s, local or all (default: all enabled targets)
    #[argh(positional)]
    pub target: Option<String>,

    /// per service and target: deploys, success rate, deploys per day, p50/p95 of the
    /// total and of each stage
    #[argh(switch)]
    pub stats: bool,

    /// with --stats: every service of the deployctl-workspace.yaml found from the current
    /// directory up
    #[argh(switch)]
    pub workspace: bool,

    /// with --workspace: only these services (comma-separated) and what they depend on
    #[argh(option)]
    pub only: Option<String>,
}

/// Set the number of replicas of the Kubernetes Deployment (until the next deploy).
#[derive(FromArgs, ArgsInfo, Debug)]
#[argh(subcommand, name = "scale")]
pub struct ScaleArgs {
    /// target: k8s
    #[argh(positional)]
    pub target: String,

    /// replicas
    #[argh(positional)]
    pub replicas: i32,
}

/// Break a target's deploy lock, left by a run that died (its lease also expires by itself).
#[derive(FromArgs, ArgsInfo, Debug)]
#[argh(subcommand, name = "unlock")]
pub struct UnlockArgs {
    /// target: lambda, k8s, local or all (default: all enabled targets)
    #[argh(positional)]
    pub target: Option<String>,
}

/// Print a shell completion script: bash, zsh, fish or nushell.
#[derive(FromArgs, ArgsInfo, Debug)]
#[argh(subcommand, name = "completions")]
pub struct CompletionsArgs {
    /// the shell: bash, zsh, fish or nushell
    #[argh(positional)]
    pub shell: String,
}

/// Run the image the way AWS Lambda does, on the local Docker engine (like `sam local
/// invoke`): its /opt/extensions (the AWS Lambda Web Adapter) and entrypoint with the
/// function's settings from deploy.yaml, one event delivered, the response printed.
#[derive(FromArgs, ArgsInfo, Debug)]
#[argh(subcommand, name = "run")]
pub struct RunArgs {
    /// run as a Lambda function (the one mode today)
    #[argh(switch)]
    pub lambda: bool,

    /// the event to deliver, a JSON file (default: an API Gateway HTTP API v2.0 event for
    /// GET of --path)
    #[argh(option)]
    pub event: Option<PathBuf>,

    /// the path of the default event (default: app.health_check_path)
    #[argh(option)]
    pub path: Option<String>,

    /// run this image (a reference or ID on the engine) instead of building
    #[argh(option)]
    pub image: Option<String>,

    /// the port the app listens on, PORT and AWS_LWA_PORT (default: app.port); the sandbox
    /// uses the host network, so it must be free here
    #[argh(option)]
    pub port: Option<u16>,
}
