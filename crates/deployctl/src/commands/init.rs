//! `deployctl init`: detect the project and write deploy.yaml and a unified Dockerfile.

use deployctl_scaffold::{InitOptions, ScaffoldError};
use serde_json::json;

use crate::cli::{Cli, InitArgs};
use crate::output::{Failure, Output};

pub fn run(_cli: &Cli, args: &InitArgs, out: &Output) -> i32 {
    match init(args, out) {
        Ok(()) => 0,
        Err(f) => out.fail("init", &f),
    }
}

fn init(args: &InitArgs, out: &Output) -> Result<(), Failure> {
    let project = deployctl_scaffold::detect(&args.dir).map_err(scaffold_failure)?;
    let opts = InitOptions {
        app_name: args.name.clone(),
        port: args.port,
        health_path: args.health_path.clone(),
        region: args.region.clone(),
    };
    let files = deployctl_scaffold::render(&project, &opts).map_err(scaffold_failure)?;
    out.text(format!(
        "detected a {} project in {}",
        project.kind,
        args.dir.display()
    ));
    if args.dry_run {
        for f in &files {
            out.text(format!("--- {} (not written: --dry-run)", f.path.display()));
            out.text(f.contents.trim_end());
        }
        out.result(
            "init",
            json!({
                "project": project.kind.to_string(),
                "dry_run": true,
                "files": files.iter().map(|f| json!({"path": f.path, "contents": f.contents})).collect::<Vec<_>>(),
            }),
        );
        return Ok(());
    }
    let outcomes =
        deployctl_scaffold::write(&args.dir, &files, args.force).map_err(scaffold_failure)?;
    for o in &outcomes {
        out.text(format!("  {o}"));
    }
    out.text("next: review deploy.yaml, then run `deployctl validate` and `deployctl plan`");
    out.result(
        "init",
        json!({
            "project": project.kind.to_string(),
            "dry_run": false,
            "files": outcomes.iter().map(|o| o.to_string()).collect::<Vec<_>>(),
        }),
    );
    Ok(())
}

fn scaffold_failure(err: ScaffoldError) -> Failure {
    Failure::invalid(err.to_string()).caused_by(&err)
}
