//! # deployctl-lambda-emulator — run an image the way AWS Lambda does, on the local engine
//!
//! A Lambda execution environment for container images, enough to prove that an image
//! works in Lambda mode without an AWS account: [`Sandbox::start`] creates a container of the
//! image on the local Docker engine and runs Lambda's init phase — the external extensions
//! of `/opt/extensions` first (each must register), then the image's ENTRYPOINT + CMD (the
//! runtime), with Lambda's environment (`AWS_LAMBDA_RUNTIME_API` and the reserved
//! variables) — and serves, on the host's loopback, the Runtime API
//! (`/2018-06-01/runtime/invocation/next`, `…/{id}/response`, `…/{id}/error`, `…/init/error`)
//! and the Extensions API (`/2020-01-01/extension/register`, `…/event/next`,
//! `…/init/error`, `…/exit/error`). Init ends when the runtime asks for its first
//! invocation and every extension for its next event; it fails on an init error, a process
//! exit, or the init timeout (10 s, as in Lambda). [`Sandbox::invoke`] delivers one event
//! (any JSON: an API Gateway HTTP API v2.0 event for a web app behind the AWS Lambda Web
//! Adapter) and returns what the runtime posted, within the function timeout.
//!
//! This is how the test suite runs the real Lambda Web Adapter (built by `cargo xtask
//! fixtures`) in front of the fixture app. It knows nothing of deploy.yaml, AWS APIs or the
//! other adapters: it needs a Docker client and an image.
//!
//! Not emulated: the read-only root filesystem, memory and CPU limits, freezing between
//! invocations, the Telemetry and Logs APIs, response streaming, credentials. The container
//! runs on the host network (the Runtime API is on the host's loopback), so the app's port
//! must be free on this machine.

mod api;
mod engine;
mod error;
mod output;
mod sandbox;

pub use api::Outcome;
pub use error::EmulatorError;
pub use sandbox::{EXTENSIONS_DIR, FunctionSpec, Invocation, LABEL, Sandbox, invoke_once};
