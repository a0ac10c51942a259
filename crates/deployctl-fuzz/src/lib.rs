//! # deployctl-fuzz — fuzz targets for the parsers that read user input
//!
//! One libFuzzer target per parser, each a one-line driver in `fuzz_targets/` over a
//! property in this library:
//!
//! | target | property module | what it feeds |
//! |---|---|---|
//! | `config` | [`config`] | any text as `deploy.yaml` through load, overlay, interpolation and validation |
//! | `dockerignore` | [`dockerignore`] | a `.dockerignore` and paths to match against it |
//! | `image_ref` | [`image_ref`] | any text as an image reference or digest |
//! | `k8s_filters` | [`k8s_filters`] | any string or JSON value through the `q` and `yaml` template filters |
//! | `unpack` | [`unpack`] | any bytes as an uploaded app directory (`deployctl serve`'s tar unpacker) |
//!
//! A property panics when it does not hold; libFuzzer's `-timeout` makes a slow input a
//! failure too. Run them with `cargo xtask fuzz [--time 60s] [TARGET...]`
//! (`docs/DEVELOPING.md`).
//!
//! ## One property, two drivers
//!
//! Every input that ever failed is kept under `fixtures/fuzz/<target>/`, and an ordinary
//! `cargo test` of the crate that owns the code replays it (`tests/fuzz_regressions.rs`
//! there) without libFuzzer. Those tests include the property module and [`replay`] from
//! here by `#[path]`, so the property checked is the same source. Hence the invariant: **a
//! property module takes the code under test from `super::`** (this root, or the test that
//! includes it, brings it into scope) and otherwise uses only `std`, `serde_json` and
//! `serde_yaml`.
//!
//! ## Three parsers compiled from their source files
//!
//! The `.dockerignore` matcher and the template filters are pure functions in crates that
//! also hold a Docker client (`bollard`) and a Kubernetes client (`kube`, `k8s-openapi`);
//! the upload unpacker lives in the server crate (axum, sqlx).
//! Building those with sanitizer instrumentation took over 45 minutes on a loaded 2-core
//! machine, so their source files (`deployctl-image/src/dockerignore.rs`,
//! `deployctl-k8s/src/yaml.rs`, `deployctl-server/src/unpack.rs`) are compiled here as modules
//! instead: the same code, without the clients. Architecture invariant: **those files use
//! nothing of their crate but `std`, `serde_json`, `tera`, `tar` and `flate2`** (a `crate::` path in them breaks this build, which
//! `cargo xtask test` runs). The regression tests replay the saved inputs through the real
//! crates' APIs.
//!
//! ## Boundary
//!
//! Outside the root workspace (its own `[workspace]`, in the root's `exclude`), so
//! `cargo test --workspace` never builds libFuzzer; it needs the `RUSTC_BOOTSTRAP=1` that
//! `cargo xtask fuzz` sets for `-Zsanitizer` on the stable toolchain.

#![forbid(unsafe_code)]

pub mod config;
pub mod dockerignore;
pub mod image_ref;
pub mod k8s_filters;
pub mod replay;
pub mod unpack;

/// `deployctl-image/src/dockerignore.rs`, compiled here (see the crate docs).
#[path = "../../deployctl-image/src/dockerignore.rs"]
#[allow(missing_docs, dead_code)]
mod image_dockerignore;

/// `deployctl-k8s/src/yaml.rs`, compiled here (see the crate docs).
#[path = "../../deployctl-k8s/src/yaml.rs"]
#[allow(missing_docs, dead_code)]
mod k8s_yaml;

/// `deployctl-server/src/unpack.rs`, compiled here (see the crate docs).
#[path = "../../deployctl-server/src/unpack.rs"]
#[allow(missing_docs, dead_code)]
mod server_unpack;

// The code under test, where the property modules find it (`super::`).
use deployctl_config::{Config, ConfigError, LoadOptions, load_str};
use deployctl_core::{Digest, ImageRef};
use image_dockerignore::DockerIgnore;
use k8s_yaml::{q_filter, yaml_filter};
use server_unpack::{UploadLimits, resolve_inside, unpack_gz, unpack_tar};
