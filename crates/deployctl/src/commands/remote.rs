//! `deployctl --server URL …`: `deploy`, `status`, `logs` and `destroy` run on a
//! `deployctl serve`, through its API ([`deployctl_server::client`]), with the same output
//! and exit codes as when they run here.
//!
//! `deploy` validates the config here first (bad input: exit 2 and nothing sent), packs the
//! config's directory after `.dockerignore`, posts it and prints the deployment's event
//! stream as local progress; Ctrl-C cancels the remote deployment and waits for it to stop.

use std::path::{Path, PathBuf};

use deployctl_core::{ErrorKind, Event, EventSink, LogLine, Secret};
use deployctl_server::client::{Client, Frame, LogsRequest};
use serde_json::{Value, json};

use crate::cli::{Cli, Command, DeployArgs, DestroyArgs, LogsArgs, StatusArgs};
use crate::output::{EventPrinter, Failure, Output};

/// The server URL when `--server` is not given.
pub const SERVER_VAR: &str = "DEPLOYCTL_SERVER";
/// The project when `--project` is not given.
pub const PROJECT_VAR: &str = "DEPLOYCTL_PROJECT";
/// The token when `--token` is not given.
pub const TOKEN_VAR: &str = "DEPLOYCTL_TOKEN";

/// Whether this run goes to a server: deploy, status, logs and destroy when `--server` or
/// `DEPLOYCTL_SERVER` names one; any other command only with `--server` given, to be
/// refused (with the variable exported, `validate` or `plan` still run here). `serve`
/// itself never does.
pub fn wanted(cli: &Cli) -> bool {
    match &cli.command {
        Some(Command::Serve(_)) => false,
        Some(Command::Deploy(_) | Command::Status(_) | Command::Logs(_) | Command::Destroy(_)) => {
            server_url(cli).is_some()
        }
        _ => cli.server.is_some(),
    }
}

fn server_url(cli: &Cli) -> Option<String> {
    cli.server
        .clone()
        .or_else(|| std::env::var(SERVER_VAR).ok().filter(|v| !v.is_empty()))
}

/// Runs the command on the server; the exit code.
pub fn run(cli: &Cli, out: &Output) -> i32 {
    let Some(command) = &cli.command else {
        let f = Failure::invalid("no command given")
            .hint("with --server: deploy, status, logs or destroy");
        return out.fail("deployctl", &f);
    };
    let name = command.name();
    let result = match command {
        Command::Deploy(args) => deploy(cli, args, out),
        Command::Status(args) => status(cli, args, out),
        Command::Logs(args) => logs(cli, args, out),
        Command::Destroy(args) => destroy(cli, args, out),
        _ => {
            let f = Failure::invalid(format!("`{name}` does not run on a server (--server)")).hint(
                "deploy, status, logs and destroy run on a server; run the others without --server",
            );
            return out.fail(name, &f);
        }
    };
    match result {
        Ok(code) => code,
        Err(f) => out.fail(name, &f),
    }
}

/// Options given that the server cannot honour: refused rather than ignored.
fn refuse(command: &str, given: &[(&str, bool)]) -> Result<(), Failure> {
    let named: Vec<&str> = given
        .iter()
        .filter(|(_, on)| *on)
        .map(|(n, _)| *n)
        .collect();
    if named.is_empty() {
        return Ok(());
    }
    Err(Failure::invalid(format!(
        "`{command}` on a server (--server) does not take {}",
        named.join(", ")
    ))
    .hint("leave them out, or run the command here without --server"))
}

/// The client, the project and the app (the config's name), from the options and the
/// config: all checked before anything is sent.
struct Remote {
    client: Client,
    project: String,
    app: String,
}

/// The config, checked as the local command checks it before it touches anything (the
/// server resolves secrets where it runs), and the server to send it to.
fn connect(cli: &Cli, target: Option<&str>) -> Result<(deployctl_config::Config, Remote), Failure> {
    let config = super::load_config_without_secrets(cli)?;
    if target.is_some() {
        super::targets::chosen(&config, target)?;
    }
    let remote = remote(cli, &config)?;
    Ok((config, remote))
}

fn remote(cli: &Cli, config: &deployctl_config::Config) -> Result<Remote, Failure> {
    let url = server_url(cli).unwrap_or_default();
    let project = cli
        .project
        .clone()
        .or_else(|| std::env::var(PROJECT_VAR).ok())
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            Failure::invalid("--server needs the project the app belongs to")
                .hint(format!("pass --project <name> or set {PROJECT_VAR}"))
        })?;
    let token = cli
        .token
        .clone()
        .or_else(|| std::env::var(TOKEN_VAR).ok())
        .unwrap_or_default();
    let http = crate::runtime::https_client()?;
    let client = Client::new(http, &url, Secret::new(token)).map_err(|e| {
        Failure::invalid(e.to_string()).hint(format!(
            "set {TOKEN_VAR} (or --token) to a token of `deployctl serve token create --project {project} --role deploy`"
        ))
    })?;
    Ok(Remote {
        client,
        project,
        app: config.app.name.clone(),
    })
}

/// A failure of the API client: its kind decides the exit code; the server's message,
/// hint and config diagnostics are shown as the local command shows its own.
fn api_failure(what: &str, e: &deployctl_server::Error) -> Failure {
    match e {
        deployctl_server::Error::Api {
            status,
            message,
            hint,
            diagnostics,
            retry_after,
            ..
        } => {
            let mut f = Failure::new(e.kind(), format!("{what}: {message} (HTTP {status})"));
            f.diagnostics.clone_from(diagnostics);
            f.hint = match (status, retry_after) {
                (429, Some(s)) => Some(format!("the project's queue is full: try again in {s} s")),
                (401, _) => Some(format!(
                    "the token is missing, expired or revoked: set {TOKEN_VAR} to a valid one"
                )),
                _ => hint.clone(),
            };
            f
        }
        deployctl_server::Error::Unreachable { url, .. } => {
            Failure::new(e.kind(), format!("{what}: cannot reach the server"))
                .caused_by(e)
                .hint(format!(
                    "is `deployctl serve` running at {url}? check --server / {SERVER_VAR}"
                ))
        }
        _ => Failure::new(e.kind(), format!("{what}: {e}")).caused_by(e),
    }
}

/// The config's directory and the Dockerfile's path in it: what an upload packs.
fn app_dir(cli: &Cli, config: &deployctl_config::Config) -> Result<(PathBuf, String), Failure> {
    let file = std::fs::canonicalize(&cli.config).map_err(|e| {
        Failure::invalid(format!("cannot read {}", cli.config.display())).caused_by(&e)
    })?;
    let dir = file
        .parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_owned);
    let context = std::fs::canonicalize(&config.build.context)
        .unwrap_or_else(|_| config.build.context.clone());
    let Ok(in_dir) = context.strip_prefix(&dir) else {
        return Err(Failure::invalid(format!(
            "build.context {} is outside the config's directory {}",
            context.display(),
            dir.display()
        ))
        .hint("a server gets the config's directory only: move deploy.yaml to the top of what the build needs"));
    };
    let dockerfile = in_dir.join(&config.build.dockerfile);
    Ok((dir, dockerfile.to_string_lossy().into_owned()))
}

fn deploy(cli: &Cli, args: &DeployArgs, out: &Output) -> Result<i32, Failure> {
    refuse(
        "deploy",
        &[
            ("--dry-run", args.dry_run),
            ("--all", args.all),
            ("--build", args.build),
            ("--push", args.push),
            ("--update", args.update),
            ("--create-api", args.create_api),
            ("--apply", args.apply),
            ("--image", args.image.is_some()),
            ("--no-cache", args.no_cache),
            ("--no-verify", args.no_verify),
            ("--rotate-key", args.rotate_key),
            ("--skip-hooks", args.skip_hooks),
            ("--verify", args.verify != crate::cli::VerifyChoice::Auto),
            ("--verify-timeout", args.verify_timeout.is_some()),
            ("--force-conflicts", args.force_conflicts),
            ("--no-rollback", args.no_rollback),
            ("--server-dry-run", args.server_dry_run),
            ("--workspace", args.workspace),
            ("--only", args.only.is_some()),
        ],
    )?;
    let (config, remote) = connect(cli, args.target.as_deref())?;
    let (dir, dockerfile) = app_dir(cli, &config)?;
    let text = std::fs::read(&cli.config).map_err(|e| {
        Failure::invalid(format!("cannot read {}", cli.config.display())).caused_by(&e)
    })?;
    let packed = deployctl_image::pack_app(&dir, &text, &dockerfile)
        .map_err(|e| Failure::invalid(format!("cannot pack {}", dir.display())).caused_by(&e))?;
    out.text(format!(
        "uploading {} ({} entries, {:.1} MB) to {}",
        dir.display(),
        packed.entries,
        packed.archive.len() as f64 / 1e6,
        remote.client.base()
    ));
    let printer = EventPrinter::new(*out);
    let end = crate::runtime::block_on(|cancel| async move {
        let accepted = remote
            .client
            .deploy_upload(
                &remote.project,
                &remote.app,
                packed.archive,
                args.target.as_deref(),
                cli.env.as_deref(),
            )
            .await
            .map_err(|e| api_failure("the server refused the deployment", &e))?;
        let id = accepted["id"].as_str().unwrap_or_default().to_owned();
        out.text(format!(
            "deployment {id} of {}/{} {}",
            remote.project,
            remote.app,
            accepted["status"].as_str().unwrap_or("queued")
        ));
        follow(&remote.client, &id, &printer, &cancel).await
    })??;
    finish("deploy", out, &end)
}

/// Prints deployment `id`'s events until its result; Ctrl-C cancels it on the server and
/// keeps following until it has stopped.
async fn follow(
    client: &Client,
    id: &str,
    printer: &EventPrinter,
    cancel: &deployctl_core::Cancellation,
) -> Result<Value, Failure> {
    let following = client.follow(id, |frame| {
        if let Frame::Event(v) = frame {
            match Event::from_json(&v) {
                Some(e) => printer.emit(e),
                None => tracing::debug!(event = %v, "an event this client does not know"),
            }
        }
    });
    tokio::pin!(following);
    let ended = tokio::select! {
        r = &mut following => r,
        () = cancel.cancelled() => {
            if let Err(e) = client.cancel(id).await {
                crate::output::err_line(format_args!("cannot cancel deployment {id}: {e}"));
            }
            following.await
        }
    };
    ended.map_err(|e| api_failure(&format!("following deployment {id}"), &e))
}

/// The end of a remote job, as the local command ends: its summary, then exit 0 or the
/// failure the job's own result names (its exit code, message, causes and hint).
fn finish(command: &str, out: &Output, end: &Value) -> Result<i32, Failure> {
    let deployment = &end["deployment"];
    let result = &deployment["result"];
    if let Ok(rows) =
        serde_json::from_value::<Vec<super::deploy::SummaryRow>>(result["targets"].clone())
    {
        super::deploy::print_summary(out, &rows);
    }
    if end["ok"].as_bool() == Some(true) {
        let mut data = result.clone();
        if let Value::Object(o) = &mut data {
            o.retain(|k, _| !matches!(k.as_str(), "schema_version" | "type" | "command" | "ok"));
            o.insert("deployment".into(), json!(deployment["id"]));
        }
        out.result(command, data);
        return Ok(0);
    }
    let status = end["status"].as_str().unwrap_or("failed");
    let kind = match status {
        "cancelled" => ErrorKind::Cancelled,
        "interrupted" => {
            return Err(Failure::failed(format!(
                "deployment {}: the server stopped while it ran",
                deployment["id"].as_str().unwrap_or("?")
            ))
            .hint("deploy again: a re-run converges from what was done"));
        }
        _ => result["exit_code"]
            .as_i64()
            .map_or(ErrorKind::Failed, ErrorKind::from_exit_code),
    };
    let error = &result["error"];
    let message = error["message"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| deployment["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("the deployment ended {status}"));
    let mut f = Failure::new(
        kind,
        format!(
            "deployment {}: {message}",
            deployment["id"].as_str().unwrap_or("?")
        ),
    );
    f.causes = strings(&error["causes"]);
    f.hint = error["hint"].as_str().map(str::to_owned);
    f.diagnostics = serde_json::from_value(error["diagnostics"].clone()).unwrap_or_default();
    Err(f)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn status(cli: &Cli, args: &StatusArgs, out: &Output) -> Result<i32, Failure> {
    refuse(
        "status",
        &[
            ("--workspace", args.workspace),
            ("--only", args.only.is_some()),
        ],
    )?;
    let (_, remote) = connect(cli, args.target.as_deref())?;
    let status = crate::runtime::block_on(|_cancel| async move {
        remote
            .client
            .app_status(&remote.project, &remote.app)
            .await
            .map_err(|e| api_failure("reading the app's status", &e))
    })??;
    let mut targets: Vec<deployctl_core::TargetStatus> =
        serde_json::from_value(status["targets"].clone()).map_err(|e| {
            Failure::failed(format!("the server's status answer cannot be read: {e}"))
        })?;
    if let Some(t) = &args.target {
        let t = if t == "kubernetes" { "k8s" } else { t.as_str() };
        targets.retain(|s| s.target == t);
    }
    super::ops::print_status(out, &targets, &status["gateway"]);
    out.result(
        "status",
        json!({ "targets": targets, "gateway": status["gateway"], "read_at_ms": status["read_at_ms"] }),
    );
    Ok(0)
}

fn logs(cli: &Cli, args: &LogsArgs, out: &Output) -> Result<i32, Failure> {
    refuse(
        "logs",
        &[("--tail with --follow", args.tail.is_some() && args.follow)],
    )?;
    let (_, remote) = connect(cli, args.target.as_deref())?;
    let request = LogsRequest::new()
        .target(args.target.clone())
        .follow(args.follow)
        .since_seconds(args.since.map(|s| s.0).filter(|s| *s > 0));
    let filter = args.filter.clone();
    let tail = args.tail;
    let mut kept: Vec<LogLine> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    let mut printed = 0u64;
    let (kept_to, failed_to, printed_to) = (&mut kept, &mut failed, &mut printed);
    let (remote, request, filter) = (&remote, &request, &filter);
    crate::runtime::block_on(|cancel| async move {
        let reading = remote
            .client
            .logs(&remote.project, &remote.app, request, |v| {
                if let Some(err) = v["error"].as_str() {
                    failed_to.push(format!("{}: {err}", v["target"].as_str().unwrap_or("?")));
                    return;
                }
                let text = v["line"].as_str().unwrap_or_default();
                if filter.as_deref().is_some_and(|f| !text.contains(f)) {
                    return;
                }
                let line = LogLine::new(
                    v["source"].as_str().unwrap_or_default(),
                    v["at_ms"].as_u64(),
                    text,
                );
                if tail.is_some() {
                    kept_to.push(line);
                } else {
                    *printed_to += 1;
                    super::ops::print_log_line(out, &line);
                }
            });
        tokio::select! {
            r = reading => r.map_err(|e| api_failure("reading the app's logs", &e)),
            () = cancel.cancelled() => Ok(()),
        }
    })??;
    if let Some(n) = tail {
        for line in last_per_source(kept, n) {
            printed += 1;
            super::ops::print_log_line(out, &line);
        }
    }
    if let Some(first) = failed.first() {
        return Err(Failure::failed(format!("reading logs failed: {first}")));
    }
    if printed == 0 && !out.is_json() {
        crate::output::err_line("no log lines");
    }
    Ok(0)
}

/// The last `n` lines of each source, in their order.
fn last_per_source(lines: Vec<LogLine>, n: u64) -> Vec<LogLine> {
    let mut seen: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    let mut keep = vec![false; lines.len()];
    for (i, l) in lines.iter().enumerate().rev() {
        let c = seen.entry(l.source.clone()).or_default();
        if *c < n {
            *c += 1;
            keep[i] = true;
        }
    }
    lines
        .into_iter()
        .zip(keep)
        .filter_map(|(l, k)| k.then_some(l))
        .collect()
}

fn destroy(cli: &Cli, args: &DestroyArgs, out: &Output) -> Result<i32, Failure> {
    refuse(
        "destroy",
        &[
            (
                "a target (a server destroys the app on every target)",
                args.target.is_some(),
            ),
            ("--dry-run", args.dry_run),
            ("--purge-images", args.purge_images),
            ("--tenant", args.tenant),
            ("--skip-hooks", args.skip_hooks),
            ("--workspace", args.workspace),
            ("--only", args.only.is_some()),
        ],
    )?;
    let (config, remote) = connect(cli, None)?;
    let printer = EventPrinter::new(*out);
    let end = crate::runtime::block_on(|cancel| async move {
        let accepted = remote
            .client
            .destroy(&remote.project, &remote.app)
            .await
            .map_err(|e| api_failure("the server refused to destroy the app", &e))?;
        let id = accepted["id"].as_str().unwrap_or_default().to_owned();
        out.text(format!(
            "deployment {id}: destroying {}/{}",
            remote.project, remote.app
        ));
        follow(&remote.client, &id, &printer, &cancel).await
    })??;
    let code = finish("destroy", out, &end)?;
    out.text(format!("{}: destroyed on every target", config.app.name));
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines_of_each_source_in_order() {
        let l = |s: &str, t: &str| LogLine::new(s, None, t);
        let lines = vec![
            l("a", "1"),
            l("b", "1"),
            l("a", "2"),
            l("a", "3"),
            l("b", "2"),
        ];
        let kept: Vec<(String, String)> = last_per_source(lines, 2)
            .into_iter()
            .map(|l| (l.source, l.text))
            .collect();
        let want: Vec<(String, String)> = [("b", "1"), ("a", "2"), ("a", "3"), ("b", "2")]
            .iter()
            .map(|(s, t)| ((*s).to_owned(), (*t).to_owned()))
            .collect();
        assert_eq!(kept, want);
    }

    #[test]
    fn options_the_server_cannot_honour_are_refused_by_name() {
        assert!(refuse("deploy", &[("--dry-run", false)]).is_ok());
        let f = refuse(
            "deploy",
            &[("--dry-run", true), ("--image", true), ("--all", false)],
        )
        .unwrap_err();
        assert_eq!(f.kind, ErrorKind::InvalidInput);
        assert!(f.message.contains("--dry-run, --image"), "{}", f.message);
    }
}
