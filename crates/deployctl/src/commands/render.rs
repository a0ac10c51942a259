//! `deployctl render k8s`: the Kubernetes manifests, to stdout or one file per resource.

use serde_json::json;

use super::deploy::given_image;
use super::load_config;
use crate::cli::{Cli, RenderArgs};
use crate::output::{Failure, Output};

pub fn run(cli: &Cli, args: &RenderArgs, out: &Output) -> i32 {
    match render(cli, args, out) {
        Ok(code) => code,
        Err(f) => out.fail("render", &f),
    }
}

fn render(cli: &Cli, args: &RenderArgs, out: &Output) -> Result<i32, Failure> {
    if !matches!(args.target.as_str(), "k8s" | "kubernetes") {
        return Err(Failure::invalid(format!("cannot render `{}`", args.target))
            .hint("`deployctl render k8s` renders the Kubernetes manifests; Lambda has none"));
    }
    let config = load_config(cli)?;
    let Some(reference) = args.image.as_deref() else {
        return Err(
            Failure::invalid("render needs the image digest the manifests pin")
                .hint("pass --image <repository>@sha256:…, as printed by `deployctl push`"),
        );
    };
    let image = given_image(reference)?;
    // The Secret carries the values: references are read once the input is known good.
    let config = if config.secret_sources().is_empty() {
        config
    } else {
        crate::runtime::block_on(|_| super::secrets::resolved(&config, None))??
    };
    // `kong.mode: ingress-controller`: the Kong Ingress Controller's resources too.
    let extra = super::gateway::ingress_resources(&config)?;
    let input = deployctl_k8s::RenderInput::new(&config, &image);
    let input = match &extra {
        Some(extra) => input.with_extra(extra),
        None => input,
    };
    let mut manifests = deployctl_k8s::render(input)
        .map_err(|e| Failure::invalid("cannot render the Kubernetes manifests").caused_by(&e))?;
    match &args.out {
        Some(dir) => {
            // A value generated once (the consumer's key) keeps what was written before.
            deployctl_k8s::keep_generated_in_dir(&mut manifests, dir);
            let files = deployctl_k8s::write_dir(&manifests, dir).map_err(|e| {
                Failure::failed(format!("cannot write manifests to {}", dir.display()))
                    .caused_by(&e)
            })?;
            for f in &files {
                out.text(format!("wrote {}", f.display()));
            }
            out.result(
                "render",
                json!({ "files": files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>() }),
            );
        }
        None if out.is_json() => out.result(
            "render",
            json!({ "manifests": manifests.iter().map(|m| json!({
                "kind": m.kind, "name": m.name, "api_version": m.api_version, "yaml": m.yaml,
            })).collect::<Vec<_>>() }),
        ),
        None => crate::output::out_text(&deployctl_k8s::to_multi_document(&manifests)),
    }
    Ok(0)
}
