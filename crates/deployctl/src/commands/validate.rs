//! `deployctl validate`: load the config and report every problem, or a one-line summary.

use serde_json::json;

use super::load_config;
use crate::cli::{Cli, ValidateArgs};
use crate::output::Output;

pub fn run(cli: &Cli, args: &ValidateArgs, out: &Output) -> i32 {
    let config = match load_config(cli) {
        Ok(c) => c,
        Err(f) => return out.fail("validate", &f),
    };
    // The gateway's OpenAPI spec is part of the input (`kong.openapi`).
    if let Err(f) = super::gateway::check(&config) {
        return out.fail("validate", &f);
    }
    let targets: Vec<String> = config
        .enabled_targets()
        .iter()
        .map(|t| t.to_string())
        .collect();
    out.text(format!(
        "{} is valid: app {} {}; targets: {}",
        cli.config.display(),
        config.app.name,
        config.app.version,
        if targets.is_empty() {
            "none".to_owned()
        } else {
            targets.join(", ")
        }
    ));
    let printed = args.print.then(|| config.to_redacted_yaml());
    if let Some(yaml) = &printed {
        out.text("---");
        out.text(yaml.trim_end());
    }
    out.result(
        "validate",
        json!({
            "file": cli.config.display().to_string(),
            "app": { "name": config.app.name, "version": config.app.version },
            "targets": targets,
            "resolved": printed,
        }),
    );
    0
}
