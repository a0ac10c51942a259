//! The container itself: reading its state, starting a new one in place of the old, waiting
//! for its health path, and undoing a start that failed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::models::{
    ContainerCreateBody, HostConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum,
};
use bollard::query_parameters::{CreateContainerOptionsBuilder, RemoveContainerOptionsBuilder};
use deployctl_core::{Cancellation, Event, EventKind, EventSink, PushedImage, Stage, Verification};

use crate::{
    LABEL_APP, LABEL_IMAGE, LABEL_MANAGED, LABEL_PREVIOUS, LABEL_SETTINGS, LocalError, LocalTarget,
    engine, fnv, http, is_404,
};

/// What the engine has for our container.
pub(crate) struct Existing {
    pub managed: bool,
    pub running: bool,
    pub image: Option<String>,
    pub settings: Option<String>,
    pub previous: Option<String>,
    pub started_at: Option<String>,
    pub status: String,
}

impl LocalTarget {
    pub(crate) fn say(&self, events: &dyn EventSink, stage: Stage, text: String) {
        events.emit(Event::now(stage, EventKind::Message { text }));
    }

    /// Host networking when the engine has no bridge network (e.g. `dockerd --bridge=none`).
    pub(crate) async fn host_network(&self) -> bool {
        self.docker.inspect_network("bridge", None).await.is_err()
    }

    pub(crate) fn settings_fingerprint(&self, host_network: bool) -> String {
        let s = &self.spec;
        let mut parts: Vec<String> = vec![
            s.host_port.to_string(),
            s.container_port.to_string(),
            s.restart.clone(),
            host_network.to_string(),
        ];
        for (k, v) in &s.env {
            parts.push(format!("{k}={v}"));
        }
        for (k, v) in &s.secrets {
            parts.push(format!("{k}={}", v.expose()));
        }
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        fnv(&refs)
    }

    pub(crate) async fn existing(&self) -> Result<Option<Existing>, LocalError> {
        let c = match self
            .docker
            .inspect_container(&self.spec.container, None)
            .await
        {
            Ok(c) => c,
            Err(e) if is_404(&e) => return Ok(None),
            Err(e) => return Err(engine("inspect container", &self.spec.container, &e)),
        };
        let labels = c
            .config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default();
        let state = c.state.as_ref();
        Ok(Some(Existing {
            managed: labels.get(LABEL_APP) == Some(&self.spec.app),
            running: state.and_then(|s| s.running).unwrap_or(false),
            image: labels.get(LABEL_IMAGE).cloned(),
            settings: labels.get(LABEL_SETTINGS).cloned(),
            previous: labels.get(LABEL_PREVIOUS).cloned(),
            started_at: state.and_then(|s| s.started_at.clone()),
            status: state
                .and_then(|s| s.status)
                .map_or_else(|| "unknown".to_owned(), |s| s.to_string()),
        }))
    }

    /// The image reference to run for `image`: the pushed digest when the engine knows it,
    /// else the digest as a local image ID (a build that was not pushed).
    pub(crate) async fn runnable(&self, image: &PushedImage) -> String {
        let by_digest = format!("{}@{}", image.reference.name(), image.digest());
        if self.docker.inspect_image(&by_digest).await.is_ok() {
            by_digest
        } else {
            image.digest().to_string()
        }
    }

    /// After a failed start: removes the new container and, when one was serving before,
    /// starts the previous image again. Says what it did.
    pub(crate) async fn undo(
        &self,
        before: Option<&Existing>,
        events: &dyn EventSink,
        cancel: &Cancellation,
    ) -> String {
        let name = &self.spec.container;
        let removed = self
            .docker
            .remove_container(
                name,
                Some(RemoveContainerOptionsBuilder::new().force(true).build()),
            )
            .await;
        let removed = match removed {
            Ok(()) => format!("the new container {name} was removed"),
            Err(e) if is_404(&e) => format!("the new container {name} is gone"),
            Err(e) => format!("the new container {name} could not be removed: {e}"),
        };
        let Some(old) = before.filter(|b| b.managed && b.running) else {
            return removed;
        };
        let Some(image) = &old.image else {
            return removed;
        };
        let stage = Stage::Apply("local".into());
        match self
            .replace(image, old.previous.as_deref(), events, stage, cancel)
            .await
        {
            Ok(()) => match self.wait_healthy(cancel).await {
                Ok(_) => format!("{removed}; the previous container ({image}) serves again"),
                Err(e) => format!(
                    "{removed}; the previous container ({image}) was started again but is not healthy: {e}"
                ),
            },
            Err(e) => format!(
                "{removed}; the previous container ({image}) could not be started again: {e}"
            ),
        }
    }

    pub(crate) async fn replace(
        &self,
        image: &str,
        previous: Option<&str>,
        events: &dyn EventSink,
        stage: Stage,
        cancel: &Cancellation,
    ) -> Result<(), LocalError> {
        let s = &self.spec;
        let host_network = self.host_network().await;
        if cancel.is_cancelled() {
            return Err(LocalError::Cancelled("replacing the container".into()));
        }
        match self
            .docker
            .remove_container(
                &s.container,
                Some(RemoveContainerOptionsBuilder::new().force(true).build()),
            )
            .await
        {
            Ok(()) => self.say(
                events,
                stage.clone(),
                format!("removed the old container {}", s.container),
            ),
            Err(e) if is_404(&e) => {}
            Err(e) => return Err(engine("remove container", &s.container, &e)),
        }
        let mut env: Vec<String> = s.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        env.extend(s.secrets.iter().map(|(k, v)| format!("{k}={}", v.expose())));
        let port_key = format!("{}/tcp", s.container_port);
        let mut labels = HashMap::from([
            (LABEL_APP.to_owned(), s.app.clone()),
            (LABEL_MANAGED.to_owned(), "deployctl".to_owned()),
            (LABEL_IMAGE.to_owned(), image.to_owned()),
            (
                LABEL_SETTINGS.to_owned(),
                self.settings_fingerprint(host_network),
            ),
        ]);
        if let Some(p) = previous {
            labels.insert(LABEL_PREVIOUS.to_owned(), p.to_owned());
        }
        let mut host = HostConfig {
            restart_policy: Some(RestartPolicy {
                name: Some(match s.restart.as_str() {
                    "no" => RestartPolicyNameEnum::NO,
                    "always" => RestartPolicyNameEnum::ALWAYS,
                    "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
                    _ => RestartPolicyNameEnum::UNLESS_STOPPED,
                }),
                maximum_retry_count: None,
            }),
            ..HostConfig::default()
        };
        if host_network {
            host.network_mode = Some("host".into());
            env.push(format!("PORT={}", s.host_port));
        } else {
            host.port_bindings = Some(HashMap::from([(
                port_key.clone(),
                Some(vec![PortBinding {
                    host_ip: Some("127.0.0.1".into()),
                    host_port: Some(s.host_port.to_string()),
                }]),
            )]));
        }
        let body = ContainerCreateBody {
            image: Some(image.to_owned()),
            env: Some(env),
            labels: Some(labels),
            exposed_ports: (!host_network).then(|| vec![port_key]),
            host_config: Some(host),
            ..ContainerCreateBody::default()
        };
        self.docker
            .create_container(
                Some(
                    CreateContainerOptionsBuilder::new()
                        .name(&s.container)
                        .build(),
                ),
                body,
            )
            .await
            .map_err(|e| engine("create container", &s.container, &e))?;
        self.docker
            .start_container(&s.container, None)
            .await
            .map_err(|e| engine("start container", &s.container, &e))?;
        self.say(
            events,
            stage,
            format!(
                "started {} from {image} on {} ({})",
                s.container,
                s.url(),
                if host_network {
                    "host network"
                } else {
                    "published port"
                }
            ),
        );
        Ok(())
    }

    /// GETs the health path until it answers 2xx/3xx or the deadline passes.
    pub(crate) async fn wait_healthy(
        &self,
        cancel: &Cancellation,
    ) -> Result<Verification, LocalError> {
        let url = format!("{}{}", self.spec.url(), self.spec.health_path);
        let start = Instant::now();
        let mut last = String::from("no answer yet");
        while start.elapsed() < self.spec.health_timeout {
            if cancel.is_cancelled() {
                return Err(LocalError::Cancelled("the health check".into()));
            }
            let t = Instant::now();
            match http::get(
                self.spec.host_port,
                &self.spec.health_path,
                Duration::from_secs(2),
            )
            .await
            {
                Ok(status) if (200..400).contains(&status) => {
                    return Ok(Verification::Healthy {
                        url,
                        method: "http".to_owned(),
                        status,
                        latency_ms: u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX),
                    });
                }
                Ok(status) => last = format!("HTTP {status}"),
                Err(e) => {
                    // A container that exited will never answer: say so now, with its state.
                    if let Ok(Some(c)) = self.existing().await
                        && !c.running
                        && c.status != "created"
                    {
                        return Err(LocalError::Unhealthy {
                            url,
                            seconds: start.elapsed().as_secs(),
                            last: format!("the container is {} ({e})", c.status),
                        });
                    }
                    last = e;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(LocalError::Unhealthy {
            url,
            seconds: self.spec.health_timeout.as_secs(),
            last,
        })
    }
}
