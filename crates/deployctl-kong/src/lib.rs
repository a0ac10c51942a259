//! # deployctl-kong — the Kong gateway in front of the app, from its OpenAPI spec
//!
//! Shaped like the Lambda target: [`openapi`] reads the spec (3.0 / 3.1, YAML or JSON),
//! [`desired`] turns it and the `kong:` section into the entities deployctl wants (pure),
//! [`observe`] reads the entities tagged `deployctl:<app>` from the Admin API (reads only),
//! [`diff`] compares (pure: the plan), [`apply`] makes the only mutating calls (PUT upserts
//! by ID, deletes of tagged entities no longer wanted). [`render`] gives the Kong Ingress
//! Controller's resources instead, for `mode: ingress-controller`.
//!
//! ## Boundary
//!
//! Depends on the core and the config model, never on another adapter (the Kubernetes
//! target applies the rendered resources; the binary wires them). It builds no HTTP
//! client: [`AdminApi`] takes one. Nothing untagged is ever changed or deleted; the admin
//! token and consumer keys are [`deployctl_core::Secret`]s and appear in no message.

pub mod admin;
pub mod apply;
pub mod desired;
pub mod diff;
mod error;
pub mod gateway;
pub mod observe;
pub mod openapi;
pub mod render;

pub use admin::{AdminApi, HttpClient};
pub use apply::{Applied, ApplyOptions, apply, destroy};
pub use desired::{Desired, Entity, Kind, desired, tag};
pub use diff::{GatewayPlan, diff};
pub use error::KongError;
pub use gateway::{GatewayOptions, GatewayReport};
pub use observe::{Observed, observe};
pub use openapi::{Spec, load as load_spec};
