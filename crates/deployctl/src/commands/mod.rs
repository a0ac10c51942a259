//! One module per command. Each returns the process exit code.

pub mod aws;
pub mod build;
pub mod build_slots;
pub mod call_timeout;
pub mod deploy;
pub mod gateway;
pub mod hooks;
pub mod init;
pub mod kube_retry;
pub mod ops;
pub mod plan;
pub mod push;
pub mod remote;
pub mod render;
pub mod run;
pub mod secrets;
pub mod serve;
pub mod serve_runner;
pub mod stats;
pub mod targets;
pub mod validate;
pub mod workspace;

use deployctl_config::{Config, ConfigError, LoadOptions, ProcessEnv};

use crate::cli::Cli;
use crate::output::Failure;

/// Loads and validates the config named by `--config`, with the `--env` overlay; every
/// secret must resolve (commands that deploy, render or plan use the values).
pub fn load_config(cli: &Cli) -> Result<Config, Failure> {
    load(cli, LoadOptions::new(&ProcessEnv))
}

/// As [`load_config`], for commands that never use a secret's value (`status`, `logs`,
/// `history`, `rollback`, `scale`, `destroy`): a secret whose variable is unset does not stop
/// them. Every other rule still applies.
pub fn load_config_without_secrets(cli: &Cli) -> Result<Config, Failure> {
    load(cli, LoadOptions::new(&ProcessEnv).with_deferred_secrets())
}

fn load(cli: &Cli, opts: LoadOptions<'_>) -> Result<Config, Failure> {
    let opts = opts.with_environment(cli.env.as_deref());
    let workspace = service_of_workspace(&cli.config)?;
    let opts = match &workspace {
        Some(ws) => opts.with_defaults(&ws.defaults),
        None => opts,
    };
    let mut config =
        deployctl_config::load(&cli.config, &opts).map_err(|e| config_failure(&cli.config, &e))?;
    if let Some(context) = &cli.context {
        config.kubernetes.context = Some(context.clone());
    }
    Ok(config)
}

/// The workspace whose service `config` is, when a `deployctl-workspace.yaml` above it lists
/// its directory: the service then inherits the workspace's `defaults:`.
fn service_of_workspace(
    config: &std::path::Path,
) -> Result<Option<deployctl_config::Workspace>, Failure> {
    let Ok(config) = std::fs::canonicalize(config) else {
        return Ok(None);
    };
    let Some(file) = config.parent().and_then(deployctl_config::find_workspace) else {
        return Ok(None);
    };
    let ws = deployctl_config::load_workspace(&file).map_err(|e| config_failure(&file, &e))?;
    let listed = ws
        .services
        .values()
        .any(|s| std::fs::canonicalize(&s.config_file).is_ok_and(|c| c == config));
    Ok(listed.then_some(ws))
}

/// Maps a config error to what the user sees; always exit code 2.
pub fn config_failure(path: &std::path::Path, err: &ConfigError) -> Failure {
    match err {
        ConfigError::Invalid { diagnostics, .. } => {
            let n = diagnostics.len();
            let mut f = Failure::invalid(format!(
                "{} is invalid ({n} problem{})",
                path.display(),
                if n == 1 { "" } else { "s" }
            ))
            .hint("fix the fields above, then run `deployctl validate` again");
            f.diagnostics.clone_from(diagnostics);
            f
        }
        ConfigError::Read { .. } => Failure::invalid(format!("cannot read {}", path.display()))
            .caused_by(err)
            .hint(
                "run `deployctl init` to create one, or pass --config <path> to name another file",
            ),
        other => Failure::invalid(format!("cannot load {}", path.display())).caused_by(other),
    }
}
