//! An app directory packed for `deployctl serve`: a `.tar.gz` of what a build would send
//! (the same `.dockerignore` walk as [`BuildContext::collect`]) with the config the client
//! validated as `deploy.yaml` at its root, where the server looks for it.

use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;

use crate::context::BuildContext;
use crate::error::ImageError;

/// The config's name in the archive: the server reads `deploy.yaml` at the archive's root.
pub const UPLOAD_CONFIG: &str = "deploy.yaml";

/// A packed app directory.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PackedApp {
    /// The `.tar.gz` bytes.
    pub archive: Vec<u8>,
    /// Files, directories and links in it (the config included).
    pub entries: usize,
}

/// Packs `app_dir` after its `.dockerignore` (the Dockerfile named by `dockerfile`, relative
/// to `app_dir`, and `.dockerignore` always kept, as a build keeps them) and adds `config` as
/// [`UPLOAD_CONFIG`] at the root, replacing a file of that name in the directory — so the
/// server deploys exactly the config the client read, whatever its local file name.
pub fn pack_app(app_dir: &Path, config: &[u8], dockerfile: &str) -> Result<PackedApp, ImageError> {
    let context = BuildContext::collect(app_dir, dockerfile)?;
    let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
    let is_config = |p: &Path| p == Path::new(UPLOAD_CONFIG);
    context
        .append_to(&mut tar, is_config)
        .map_err(|e| e.into_image_error(app_dir))?;
    let mut header = tar::Header::new_gnu();
    header.set_size(config.len() as u64);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    let io = |source| ImageError::Io {
        path: app_dir.join(UPLOAD_CONFIG),
        source,
    };
    tar.append_data(&mut header, UPLOAD_CONFIG, config)
        .map_err(io)?;
    let archive = tar.into_inner().and_then(GzEncoder::finish).map_err(io)?;
    let entries = context.entries.iter().filter(|p| !is_config(p)).count() + 1;
    Ok(PackedApp { archive, entries })
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn listing(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut body = Vec::new();
            e.read_to_end(&mut body).unwrap();
            out.push((name, body));
        }
        out.sort();
        out
    }

    #[test]
    fn packs_what_a_build_sends_with_the_validated_config_at_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("deploy.yaml"), "name: old\n").unwrap();
        std::fs::write(root.join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(root.join(".dockerignore"), "target\nDockerfile\n*.log\n").unwrap();
        std::fs::create_dir_all(root.join("target/debug")).unwrap();
        std::fs::write(root.join("target/debug/big"), vec![0u8; 4096]).unwrap();
        std::fs::write(root.join("app.log"), "x").unwrap();
        std::fs::create_dir(root.join("src")).unwrap();
        std::fs::write(root.join("src/main.rs"), "fn main() {}\n").unwrap();
        std::os::unix::fs::symlink("main.rs", root.join("src/link.rs")).unwrap();

        let packed = pack_app(root, b"name: new\n", "Dockerfile").unwrap();
        let files = listing(&packed.archive);
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                ".dockerignore",
                "Dockerfile",
                "deploy.yaml",
                "src",
                "src/link.rs",
                "src/main.rs"
            ],
            "ignored files stay home; the Dockerfile is sent although ignored"
        );
        assert_eq!(packed.entries, names.len());
        let config = files.iter().find(|(n, _)| n == "deploy.yaml").unwrap();
        assert_eq!(
            config.1, b"name: new\n",
            "the config the client read, not the file"
        );
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_it() {
        let e = pack_app(Path::new("/nonexistent/app"), b"", "Dockerfile").unwrap_err();
        assert!(e.to_string().contains("/nonexistent/app"), "{e}");
    }
}
