//! Values derived from a config that several crates need: written once, here.

use crate::model::Config;

impl Config {
    /// The repository (no tag) the app's images go to: `registry.repository` when it names a
    /// host, else `<registry.url>/<registry.repository or app.name>`; without `registry:`,
    /// the bare app name (an image that stays in the local engine).
    pub fn image_repository(&self) -> String {
        match &self.registry {
            Some(r) => match &r.repository {
                Some(repo)
                    if repo
                        .split('/')
                        .next()
                        .is_some_and(|h| h.contains('.') || h.contains(':')) =>
                {
                    repo.clone()
                }
                Some(repo) => format!("{}/{repo}", r.url.trim_end_matches('/')),
                None => format!("{}/{}", r.url.trim_end_matches('/'), self.app.name),
            },
            None => self.app.name.clone(),
        }
    }

    /// The name of the app's Kubernetes Service (the Kubernetes target renders it; the Kong
    /// gateway routes to it): the one place that decides it.
    pub fn kubernetes_service_name(&self) -> &str {
        &self.app.name
    }

    /// The in-cluster DNS name of the app's Kubernetes Service, `<service>.<namespace>.svc`;
    /// its port is `kubernetes.service.port`.
    pub fn kubernetes_service_host(&self) -> String {
        format!(
            "{}.{}.svc",
            self.kubernetes_service_name(),
            self.kubernetes.namespace
        )
    }

    /// Whether the configured registry is Amazon ECR (`<account>.dkr.ecr.<region>…`).
    pub fn registry_is_ecr(&self) -> bool {
        self.registry.is_some()
            && deployctl_core::ImageRef::parse(&self.image_repository()).is_ok_and(|r| r.is_ecr())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn config(yaml: &str) -> crate::Config {
        let vars = std::collections::BTreeMap::<String, String>::new();
        crate::load_str(
            &format!("version: '1'\napp:\n  name: shop\nlocal:\n  enabled: true\n{yaml}"),
            Path::new("deploy.yaml"),
            &crate::LoadOptions::new(&vars),
        )
        .unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn the_repository_follows_registry_url_and_repository() {
        assert_eq!(config("").image_repository(), "shop");
        assert_eq!(
            config("registry:\n  url: r.example:5000/team/\n").image_repository(),
            "r.example:5000/team/shop"
        );
        assert_eq!(
            config("registry:\n  url: r.example\n  repository: web\n").image_repository(),
            "r.example/web"
        );
        assert_eq!(
            config("registry:\n  url: r.example\n  repository: ghcr.io/o/web\n").image_repository(),
            "ghcr.io/o/web"
        );
        assert!(!config("registry:\n  url: r.example\n").registry_is_ecr());
        assert!(
            config("registry:\n  url: 123456789012.dkr.ecr.eu-west-1.amazonaws.com\n")
                .registry_is_ecr()
        );
    }
}
