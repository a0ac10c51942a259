//! # deployctl — the binary
//!
//! Parses arguments, wires the library crates together, prints results as text or JSON and
//! maps failures to the documented exit codes (0 ok, 1 deploy failed, 2 invalid input,
//! 3 environment/credentials, 130 interrupted). It holds no deploy logic of its own: config
//! lives in `deployctl-config`, project scaffolding in `deployctl-scaffold`, the pipeline in
//! `deployctl-core`.

mod args;
mod cli;
mod cli_serve;
mod commands;
mod logging;
mod output;
mod runtime;

use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::output::Output;

fn main() -> ExitCode {
    let cli = match parse_args() {
        Ok(cli) => cli,
        Err(code) => return ExitCode::from(code),
    };
    if commands::serve_runner::orphaned() {
        // A job of a `deployctl serve` that has died: nothing of it runs.
        return ExitCode::from(130);
    }
    if cli.version {
        println!("deployctl {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    logging::init(cli.verbose);
    // One TLS crypto provider for every client (AWS SDK and kube): see ADR 0003.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let out = Output::new(cli.output);
    let code = if commands::remote::wanted(&cli) {
        commands::remote::run(&cli, &out)
    } else {
        run(&cli, &out)
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Runs the command here.
fn run(cli: &Cli, out: &Output) -> i32 {
    match &cli.command {
        None => {
            eprintln!(
                "deployctl: no command given. Try `deployctl init`, `deployctl validate` or \
                 `deployctl plan`; `deployctl --help` lists every command."
            );
            2
        }
        Some(Command::Init(args)) => commands::init::run(cli, args, out),
        Some(Command::Validate(args)) => commands::validate::run(cli, args, out),
        Some(Command::Plan(args)) => commands::plan::run(cli, args, out),
        Some(Command::Build(args)) => commands::build::run(cli, args, out),
        Some(Command::Push(args)) => commands::push::run(cli, args, out),
        Some(Command::Deploy(args)) => commands::deploy::run(cli, args, out),
        Some(Command::Status(args)) => commands::ops::status(cli, args, out),
        Some(Command::Logs(args)) => commands::ops::logs(cli, args, out),
        Some(Command::Destroy(args)) => commands::ops::destroy(cli, args, out),
        Some(Command::Rollback(args)) => commands::ops::rollback(cli, args, out),
        Some(Command::Render(args)) => commands::render::run(cli, args, out),
        Some(Command::History(args)) => commands::ops::history(cli, args, out),
        Some(Command::Scale(args)) => commands::ops::scale(cli, args, out),
        Some(Command::Unlock(args)) => commands::ops::unlock(cli, args, out),
        Some(Command::Completions(args)) => completions(&args.shell),
        Some(Command::Run(args)) => commands::run::run(cli, args, out),
        Some(Command::Serve(args)) => commands::serve::run(args, out),
    }
}

/// The command line, with global options accepted anywhere ([`args::normalise`]). `--help`
/// prints to stdout and exits 0; every usage error prints to stderr and exits 2 (invalid
/// input, as every other kind of bad input).
fn parse_args() -> Result<Cli, u8> {
    use argh::FromArgs;
    let raw: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let name = raw.first().map_or("deployctl", |p| {
        std::path::Path::new(p)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("deployctl")
    });
    let rest = args::normalise(raw.get(1..).unwrap_or(&[]));
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    Cli::from_args(&[name], &rest).map_err(|exit| {
        if exit.status.is_ok() {
            output::out_text(&exit.output);
            output::out_text("\n");
            0
        } else {
            output::err_line(exit.output.trim_end());
            output::err_line("  hint: `deployctl --help` lists commands and options; `deployctl <command> --help` a command's");
            2
        }
    })
}

/// Prints the completion script for `shell` (from the argument definitions themselves).
fn completions(shell: &str) -> i32 {
    use argh::ArgsInfo;
    use argh_complete::Generator;
    let info = Cli::get_args_info();
    let script = match shell {
        "bash" => argh_complete::bash::Bash::generate("deployctl", &info),
        "zsh" => argh_complete::zsh::Zsh::generate("deployctl", &info),
        "fish" => argh_complete::fish::Fish::generate("deployctl", &info),
        "nushell" | "nu" => argh_complete::nushell::Nushell::generate("deployctl", &info),
        other => {
            eprintln!(
                "error: no completions for `{other}`\n  hint: use bash, zsh, fish or nushell"
            );
            return 2;
        }
    };
    output::out_text(&script);
    0
}
