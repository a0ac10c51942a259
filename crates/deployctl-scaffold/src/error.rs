//! What can go wrong scaffolding a project.

use std::path::PathBuf;

/// A scaffolding failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScaffoldError {
    /// Nothing recognisable in the directory.
    #[error(
        "no supported project found in {dir}: looked for {looked_for}; \
         run `deployctl init` in the project's root, or write deploy.yaml and a Dockerfile by hand"
    )]
    Unrecognised {
        /// The directory.
        dir: PathBuf,
        /// The files looked for, comma separated.
        looked_for: String,
    },
    /// A manifest exists but cannot be parsed.
    #[error("cannot parse {file}: {reason}; fix the file and run `deployctl init` again")]
    Manifest {
        /// The manifest.
        file: PathBuf,
        /// Why.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("cannot {action} {path}")]
    Io {
        /// `read` or `write`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Files exist and `--force` was not given; nothing was written.
    #[error(
        "{} already exist{}: {}; nothing was written (use --force to overwrite)",
        if files.len() == 1 { "a file" } else { "files" },
        if files.len() == 1 { "s" } else { "" },
        files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    Exists {
        /// The files that exist.
        files: Vec<PathBuf>,
    },
    /// A template failed to render (a bug in deployctl).
    #[error("cannot render {template}: {reason}")]
    Template {
        /// Template name.
        template: String,
        /// Why.
        reason: String,
    },
}
