//! `deployctl build`: build the image once, on the Docker engine, through the pipeline.

use std::collections::BTreeMap;

use deployctl_config::{BuildArgValue, Config};
use deployctl_core::{
    BuildArg, BuildSpec, ImageRef, Pipeline, Platform, RunRequest, Secret, StageOutcome,
};
use deployctl_image::{
    BuilderChoice, DockerBuilder, EngineSocket, default_tags, git_info, oci_labels,
};
use serde_json::json;

use super::load_config;
use crate::cli::{BuildArgs, Cli};
use crate::output::{EventPrinter, Failure, Output};

pub fn run(cli: &Cli, args: &BuildArgs, out: &Output) -> i32 {
    let config = match load_config(cli) {
        Ok(c) => c,
        Err(f) => return out.fail("build", &f),
    };
    let spec = match build_spec(&config, args) {
        Ok(s) => s,
        Err(f) => return out.fail("build", &f),
    };
    let docker = match crate::runtime::docker() {
        Ok(d) => d,
        Err(f) => return out.fail("build", &f),
    };
    let printer = EventPrinter::new(*out);
    let builder = image_builder(docker, &config);
    let report = crate::runtime::block_on(|cancel| async move {
        let pipeline = Pipeline::new(&printer)
            .with_builder(&builder)
            .with_cancellation(cancel);
        pipeline.run(RunRequest::build_only(spec)).await
    });
    let report = match report {
        Ok(r) => r,
        Err(f) => return out.fail("build", &f),
    };
    match &report.build {
        StageOutcome::Done(img) => {
            let tags: Vec<String> = img.tags.iter().map(ToString::to_string).collect();
            out.text(format!("built {} tagged {}", img.id, tags.join(", ")));
            out.result("build", json!({ "image": { "id": img.id, "tags": tags } }));
            0
        }
        _ => match report.errors().first() {
            Some(e) => out.fail("build", &Failure::from_stage(e)),
            None => out.fail("build", &Failure::failed("the build did not run")),
        },
    }
}

/// The image builder on `docker` for every command that builds: BuildKit where the engine
/// supports it, unless `DOCKER_BUILDKIT` says otherwise (Docker's own convention: `0` for the
/// classic builder); its build session on the engine `DOCKER_HOST` names, as `docker` was
/// made from it; `config`'s registry login for pulling `build.cache.from` images.
pub(crate) fn image_builder(docker: bollard::Docker, config: &Config) -> DockerBuilder {
    DockerBuilder::new(docker)
        .with_builder(BuilderChoice::from_docker_buildkit(
            std::env::var("DOCKER_BUILDKIT").ok().as_deref(),
        ))
        .with_session_socket(EngineSocket::from_env())
        .with_registry_credentials(cache_credentials(config))
}

/// The explicit `registry:` login, for the engine to pull `build.cache.from` images with
/// (other credential sources are not consulted for the cache yet).
fn cache_credentials(config: &Config) -> Vec<deployctl_core::RegistryCredentials> {
    let Some(r) = &config.registry else {
        return Vec::new();
    };
    let (Some(user), Some(password)) = (&r.username, &r.password) else {
        return Vec::new();
    };
    let host = r.url.split('/').next().unwrap_or_default();
    vec![deployctl_core::RegistryCredentials::new(
        host,
        user.clone(),
        password.clone(),
        "config",
    )]
}

pub(crate) fn build_spec(config: &Config, args: &BuildArgs) -> Result<BuildSpec, Failure> {
    let b = &config.build;
    let mut spec = BuildSpec::new(&b.context, &b.dockerfile);
    spec.build_args = b
        .args
        .iter()
        .map(|(k, v)| {
            let arg = match v {
                BuildArgValue::Secret { secret } => BuildArg::Secret(Secret::new(secret.expose())),
                BuildArgValue::Plain(p) => BuildArg::Plain(p.clone()),
                _ => BuildArg::Plain(String::new()),
            };
            (k.clone(), arg)
        })
        .collect();
    spec.target.clone_from(&b.target);
    spec.network.clone_from(&b.network);
    spec.platform = b
        .platform
        .clone()
        .or_else(|| {
            config
                .lambda
                .enabled
                .then(|| config.lambda.function.architecture.platform().to_owned())
        })
        .map(Platform);
    spec.no_cache = b.no_cache || args.no_cache;
    spec.pull = b.pull || args.pull;
    let git = git_info(&b.context);
    let mut labels: BTreeMap<String, String> = oci_labels(&config.app.version, git.as_ref());
    labels.extend(b.labels.clone());
    spec.labels = labels;
    let repo_text = config.image_repository();
    let repo = ImageRef::parse(&repo_text).map_err(|e| {
        Failure::invalid(format!("cannot name the image `{repo_text}`"))
            .caused_by(&e)
            .hint("check registry.url, registry.repository and app.name")
    })?;
    spec.tags = default_tags(&repo, &config.app.version, git.as_ref());
    let cache_ref = |path: String, r: &str| {
        ImageRef::parse(r).map_err(|e| {
            Failure::invalid(format!("{path}: `{r}` is not an image reference"))
                .caused_by(&e)
                .hint("write host[:port]/repository:tag")
        })
    };
    for (i, r) in b.cache.from.iter().enumerate() {
        spec.cache_from
            .push(cache_ref(format!("build.cache.from[{i}]"), r)?);
    }
    if let Some(to) = &b.cache.to {
        spec.inline_cache = true;
        spec.tags.push(cache_ref("build.cache.to".to_owned(), to)?);
    }
    for t in &args.tag {
        let tagged = repo
            .clone()
            .with_tag(t)
            .map_err(|e| Failure::invalid(format!("invalid --tag `{t}`")).caused_by(&e))?;
        spec.tags.push(tagged);
    }
    Ok(spec)
}
