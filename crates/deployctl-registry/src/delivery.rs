//! Where an image goes and how to log in there: the repository a config names, the push
//! destination (with the ECR push-endpoint setting for emulators), the credential sources in
//! the order the config asks for, and the pusher that creates a missing ECR repository first.
//!
//! Every command that pushes (`push`, `deploy`) and every one that resolves a pushed image
//! asks this module, so the policy lives in one place.

use async_trait::async_trait;
use deployctl_config::{Config, CredentialSource as Choice, EcrSettings};
use deployctl_core::{
    BuiltImage, Cancellation, CredentialSource, Event, EventKind, EventSink, ImagePusher, ImageRef,
    PushedImage, RegistryCredentials, Stage, StageError,
};

use crate::{
    Anonymous, ConfigCredentials, DockerConfigCredentials, EcrCredentials, RegistryError,
    ensure_repository,
};

/// Whether pushing for `config` involves Amazon ECR (and so needs AWS).
pub fn uses_ecr(config: &Config) -> bool {
    config.lambda.enabled
        || config.registry_is_ecr()
        || config
            .registry
            .as_ref()
            .is_some_and(|r| r.credentials == Choice::Ecr)
}

/// An AWS account's Amazon ECR, as the caller loaded it.
#[derive(Debug, Clone)]
pub struct EcrAccount {
    /// The ECR client (from the caller's one `SdkConfig`).
    pub client: aws_sdk_ecr::Client,
    /// Account id.
    pub account: String,
    /// Region.
    pub region: String,
}

/// The ECR repository (no tag) a Lambda function's image lives in: the configured registry
/// when it is ECR, else `<account>.dkr.ecr.<region>.amazonaws.com/<app>`.
pub fn lambda_repository(
    config: &Config,
    account: &str,
    region: &str,
) -> Result<String, RegistryError> {
    let default = format!(
        "{account}.dkr.ecr.{region}.amazonaws.com/{}",
        config.app.name
    );
    match &config.registry {
        None => Ok(default),
        Some(r) => {
            if config.registry_is_ecr() {
                Ok(config.image_repository())
            } else {
                Err(RegistryError::Invalid {
                    message: format!(
                        "Lambda runs images only from Amazon ECR, but registry.url is `{}`",
                        r.url
                    ),
                    hint: format!(
                        "remove `registry:` to use {default}, or set registry.url to an ECR registry"
                    ),
                })
            }
        }
    }
}

/// Where an image goes and how to log in there.
pub struct Delivery {
    /// The reference pushed (repository and version tag).
    pub destination: ImageRef,
    /// Credential sources in the order they are asked.
    pub sources: Vec<Box<dyn CredentialSource>>,
    /// The ECR repository to ensure before pushing: client and repository name.
    pub ecr: Option<(aws_sdk_ecr::Client, String)>,
    /// The registry address ECR images are pushed to and read from instead of ECR's own
    /// (an emulator's registry), when set.
    pub push_endpoint: Option<String>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("destination", &self.destination)
            .field(
                "sources",
                &self.sources.iter().map(|s| s.name()).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// The push destination and credential sources for `config`.
///
/// `ecr`: the account's ECR when AWS is configured. `push_endpoint`: a registry address that
/// receives ECR pushes instead (an emulator's registry: `DEPLOYCTL_ECR_PUSH_ENDPOINT` or
/// `lambda.ecr.push_endpoint`); ECR API calls still go to AWS.
pub fn delivery(
    config: &Config,
    ecr: Option<&EcrAccount>,
    push_endpoint: Option<&str>,
) -> Result<Delivery, RegistryError> {
    let repo = match ecr {
        Some(a) if config.lambda.enabled => lambda_repository(config, &a.account, &a.region)?,
        _ if config.registry.is_none() => {
            return Err(RegistryError::Invalid {
                message: "nothing to push to: deploy.yaml has no registry".into(),
                hint: "add `registry: { url: host[:port] }`, or enable lambda to push to Amazon ECR; a deploy to the local target alone needs no registry".into(),
            });
        }
        _ => config.image_repository(),
    };
    let canonical = ImageRef::parse(&format!("{repo}:{}", config.app.version)).map_err(|e| {
        RegistryError::Invalid {
            message: format!("cannot name the image `{repo}`: {e}"),
            hint: "registry.url is host[:port][/namespace]; app.name and app.version make the rest"
                .into(),
        }
    })?;
    let endpoint = push_endpoint
        .map(|v| v.trim().trim_end_matches('/').to_owned())
        .filter(|v| !v.is_empty() && canonical.is_ecr());
    let destination = match &endpoint {
        Some(host) => ImageRef::parse(&format!(
            "{host}/{}:{}",
            canonical.repository, config.app.version
        ))
        .map_err(|e| RegistryError::Invalid {
            message: format!("the ECR push endpoint `{host}` is not a registry address: {e}"),
            hint: "use host:port, e.g. 127.0.0.1:5000".into(),
        })?,
        None => canonical.clone(),
    };

    let choice = config
        .registry
        .as_ref()
        .map_or(Choice::Auto, |r| r.credentials);
    let explicit = config
        .registry
        .as_ref()
        .and_then(|r| match (&r.username, &r.password) {
            (Some(u), Some(p)) => Some(Box::new(ConfigCredentials::new(
                &destination.registry,
                u.clone(),
                p.clone(),
            )) as Box<dyn CredentialSource>),
            _ => None,
        });
    let ecr_account = ecr.filter(|_| canonical.is_ecr());
    let ecr_source: Option<Box<dyn CredentialSource>> = ecr_account.map(|a| {
        let client = EcrCredentials::new(a.client.clone());
        match &endpoint {
            Some(host) => Box::new(EcrViaEndpoint {
                ecr: client,
                ecr_registry: canonical.registry.clone(),
                endpoint: host.clone(),
            }) as Box<dyn CredentialSource>,
            None => Box::new(client),
        }
    });
    let docker: Box<dyn CredentialSource> = Box::new(DockerConfigCredentials::from_env());
    let sources = match choice {
        Choice::Config => vec![explicit.ok_or_else(|| RegistryError::Invalid {
            message: "registry.credentials is `config` but registry.username/password are not set".into(),
            hint: "set both, or use `credentials: auto`".into(),
        })?],
        Choice::Docker => vec![docker],
        Choice::Ecr => vec![ecr_source.ok_or_else(|| RegistryError::Invalid {
            message: "registry.credentials is `ecr` but the registry is not Amazon ECR".into(),
            hint: "use an <account>.dkr.ecr.<region>.amazonaws.com registry, or `credentials: auto`".into(),
        })?],
        _ => explicit
            .into_iter()
            .chain(ecr_source)
            .chain([docker, Box::new(Anonymous) as Box<dyn CredentialSource>])
            .collect(),
    };
    Ok(Delivery {
        destination,
        sources,
        ecr: ecr_account.map(|a| (a.client.clone(), canonical.repository.clone())),
        push_endpoint: endpoint,
    })
}

/// ECR credentials handed to a different push address (the push-endpoint setting): the
/// token is fetched for the ECR registry and used for `endpoint`.
#[derive(Debug)]
pub struct EcrViaEndpoint {
    ecr: EcrCredentials,
    ecr_registry: String,
    endpoint: String,
}

#[async_trait]
impl CredentialSource for EcrViaEndpoint {
    fn name(&self) -> &str {
        "ecr (push endpoint)"
    }

    async fn credentials(&self, registry: &str) -> Result<Option<RegistryCredentials>, StageError> {
        // The endpoint, and the ECR registry it stands for (an image looked up by its ECR name).
        if registry != self.endpoint && registry != self.ecr_registry {
            return Ok(None);
        }
        let token = self.ecr.token(&self.ecr_registry).await?;
        Ok(Some(RegistryCredentials::new(
            registry,
            token.username,
            token.password,
            format!("amazon ecr token for {}", self.ecr_registry),
        )))
    }
}

/// An [`ImagePusher`] that first creates the ECR repository if it is missing (after the
/// build succeeded, so a failed build creates nothing), then pushes with `inner`.
pub struct EnsuringPusher<'a> {
    inner: &'a dyn ImagePusher,
    ecr: Option<(aws_sdk_ecr::Client, String)>,
    push_endpoint: Option<String>,
    app: String,
    settings: EcrSettings,
    /// `build.cache.to`: the built image's cache tag, pushed after the image.
    cache_to: Option<ImageRef>,
}

impl<'a> EnsuringPusher<'a> {
    /// Pushes with `inner`, ensuring `delivery`'s ECR repository (if any) for `config` first.
    pub fn new(inner: &'a dyn ImagePusher, delivery: &Delivery, config: &Config) -> Self {
        Self {
            inner,
            ecr: delivery.ecr.clone(),
            push_endpoint: delivery.push_endpoint.clone(),
            app: config.app.name.clone(),
            settings: config
                .registry
                .as_ref()
                .map(|r| r.ecr.clone())
                .unwrap_or_default(),
            // Validation has checked that it parses.
            cache_to: config
                .build
                .cache
                .to
                .as_deref()
                .and_then(|r| ImageRef::parse(r).ok()),
        }
    }

    /// Pushes the build's cache tag (`build.cache.to`) after the image, so the next run's
    /// `cache.from` finds it. Only to the destination's registry, with its credentials; it
    /// never fails the push — what happened is said in an event.
    async fn push_cache_tag(
        &self,
        image: &BuiltImage,
        destination: &ImageRef,
        credentials: Option<&RegistryCredentials>,
        events: &dyn EventSink,
        cancel: &Cancellation,
    ) {
        let Some(to) = &self.cache_to else { return };
        let say = |text: String| {
            events.emit(Event::now(Stage::Push, EventKind::Message { text }));
        };
        if to.registry != destination.registry {
            say(format!(
                "build.cache.to {}: not pushed, it is on another registry than {} (push it with docker push)",
                to.name(),
                destination.registry
            ));
            return;
        }
        match self
            .inner
            .push(image, to, credentials, &deployctl_core::NullSink, cancel)
            .await
        {
            Ok(p) => say(format!(
                "build cache tag pushed: {}:{} ({})",
                to.name(),
                to.tag.as_deref().unwrap_or("latest"),
                p.digest()
            )),
            Err(e) => say(format!(
                "build.cache.to {}: not pushed: {} (the image itself is pushed)",
                to.name(),
                e.message
            )),
        }
    }
}

impl std::fmt::Debug for EnsuringPusher<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnsuringPusher")
            .field("ecr", &self.ecr.as_ref().map(|(_, n)| n))
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl ImagePusher for EnsuringPusher<'_> {
    async fn resolve(
        &self,
        reference: &ImageRef,
        credentials: Option<&RegistryCredentials>,
    ) -> Result<PushedImage, StageError> {
        // With a push endpoint, ECR images live at that address: look there, and report the
        // image under the ECR name the function references.
        match &self.push_endpoint {
            Some(endpoint) if reference.is_ecr() => {
                let mut at = reference.clone();
                at.registry.clone_from(endpoint);
                // The ECR token is what the endpoint accepts (as for a push).
                let creds = credentials.map(|c| {
                    RegistryCredentials::new(
                        endpoint.clone(),
                        c.username.clone(),
                        c.password.clone(),
                        c.source.clone(),
                    )
                });
                let found = self.inner.resolve(&at, creds.as_ref()).await?;
                Ok(PushedImage::new(
                    reference.clone(),
                    found.digest().clone(),
                    found.media_type,
                ))
            }
            _ => self.inner.resolve(reference, credentials).await,
        }
    }

    async fn push(
        &self,
        image: &BuiltImage,
        destination: &ImageRef,
        credentials: Option<&RegistryCredentials>,
        events: &dyn EventSink,
        cancel: &Cancellation,
    ) -> Result<PushedImage, StageError> {
        if let Some((client, name)) = &self.ecr {
            let repo = ensure_repository(
                client,
                name,
                &self.app,
                self.settings.scan_on_push,
                self.settings.keep_images,
            )
            .await?;
            if repo.created {
                events.emit(Event::now(
                    Stage::Push,
                    EventKind::Message {
                        text: format!("created ECR repository {}", repo.uri),
                    },
                ));
            }
        }
        let pushed = self
            .inner
            .push(image, destination, credentials, events, cancel)
            .await?;
        self.push_cache_tag(image, destination, credentials, events, cancel)
            .await;
        Ok(pushed)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::{delivery, lambda_repository};

    struct Vars(BTreeMap<String, String>);
    impl deployctl_config::VarLookup for Vars {
        fn get(&self, name: &str) -> Option<String> {
            self.0.get(name).cloned()
        }
    }

    fn config(yaml: &str) -> deployctl_config::Config {
        let vars = Vars(BTreeMap::from([("PW".to_owned(), "pw-1".to_owned())]));
        deployctl_config::load_str(
            &format!("version: '1'\napp:\n  name: shop\n  version: '1.2'\n{yaml}"),
            Path::new("deploy.yaml"),
            &deployctl_config::LoadOptions::new(&vars),
        )
        .unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn names(d: &super::Delivery) -> Vec<&str> {
        d.sources.iter().map(|s| s.name()).collect()
    }

    #[test]
    fn without_a_registry_there_is_nothing_to_push_to() {
        let err = delivery(&config(""), None, None).unwrap_err();
        assert!(err.to_string().contains("no registry"), "{err}");
    }

    #[test]
    fn auto_asks_config_then_docker_then_anonymous() {
        let d = delivery(
            &config("registry:\n  url: r.example:5000\n  username: ci\n  password: ${PW}\n"),
            None,
            None,
        )
        .unwrap();
        assert_eq!(d.destination.to_string(), "r.example:5000/shop:1.2");
        assert_eq!(names(&d), ["config", "docker config", "anonymous"]);
        assert!(d.ecr.is_none());
    }

    #[test]
    fn an_explicit_choice_is_the_only_source_and_must_be_usable() {
        let d = delivery(
            &config("registry:\n  url: r.example\n  credentials: docker\n"),
            None,
            None,
        )
        .unwrap();
        assert_eq!(names(&d), ["docker config"]);
        let err = delivery(
            &config("registry:\n  url: r.example\n  credentials: config\n"),
            None,
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("username/password"), "{err}");
    }

    #[test]
    fn lambda_defaults_to_the_accounts_ecr() {
        // A non-ECR registry with Lambda is refused by validation (a config golden).
        let c = config("lambda:\n  enabled: true\n  region: us-east-1\n");
        assert_eq!(
            lambda_repository(&c, "123456789012", "us-east-1").unwrap(),
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/shop"
        );
    }
}
