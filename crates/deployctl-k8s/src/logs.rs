//! Pod logs, prefixed by pod: one read per pod, or with `follow` one stream per pod
//! (new pods picked up every second) until Ctrl-C. Reads only.

use std::collections::BTreeSet;
use std::time::Duration;

use deployctl_core::{Cancellation, LogLine, LogQuery, LogSink};
use futures::{AsyncBufReadExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams};

use crate::cluster::Cluster;
use crate::error::{Error, api_err};

impl Cluster {
    /// Reads the app's pod logs into `sink`.
    pub async fn logs(
        &self,
        query: &LogQuery,
        sink: &dyn LogSink,
        cancel: &Cancellation,
    ) -> Result<(), Error> {
        // As for the other targets: logs of an app that is not deployed are an error, not
        // an empty success.
        let deployments: Api<Deployment> = self.api();
        if deployments
            .get_opt(&self.app)
            .await
            .map_err(|e| api_err("get", format!("Deployment/{}", self.app), e))?
            .is_none()
        {
            return Err(Error::Missing(format!(
                "nothing is deployed: there is no Deployment {} in namespace {}",
                self.app, self.namespace
            )));
        }
        let pods: Api<Pod> = self.api();
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let params = LogParams {
            follow: query.follow,
            since_seconds: query.since_seconds.and_then(|s| i64::try_from(s).ok()),
            tail_lines: query.tail.and_then(|t| i64::try_from(t).ok()),
            ..LogParams::default()
        };
        let keep = |line: &str| {
            query
                .filter
                .as_ref()
                .is_none_or(|f| line.contains(f.as_str()))
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel::<LogLine>(256);
        let mut tasks = Vec::new();
        loop {
            for p in self.pods().await? {
                let name = p.metadata.name.unwrap_or_default();
                if !seen.insert(name.clone()) {
                    continue;
                }
                if !query.follow {
                    let text = pods
                        .logs(&name, &params)
                        .await
                        .map_err(|e| api_err("logs", format!("Pod/{name}"), e))?;
                    for l in text.lines().filter(|l| keep(l)) {
                        sink.line(LogLine::new(name.clone(), None, l));
                    }
                    continue;
                }
                let (pods, params, tx) = (pods.clone(), params.clone(), tx.clone());
                tasks.push(tokio::spawn(async move {
                    let Ok(stream) = pods.log_stream(&name, &params).await else {
                        return;
                    };
                    let mut lines = stream.lines();
                    while let Ok(Some(l)) = lines.try_next().await {
                        if tx.send(LogLine::new(name.clone(), None, l)).await.is_err() {
                            return;
                        }
                    }
                }));
            }
            if !query.follow {
                return Ok(());
            }
            // Follow: forward lines; look for new pods every second.
            let until = tokio::time::Instant::now() + Duration::from_secs(1);
            while tokio::time::Instant::now() < until {
                if cancel.is_cancelled() {
                    for t in &tasks {
                        t.abort();
                    }
                    return Ok(());
                }
                if let Ok(Some(l)) =
                    tokio::time::timeout(Duration::from_millis(100), rx.recv()).await
                    && keep(&l.text)
                {
                    sink.line(l);
                }
            }
        }
    }
}
