//! # deployctl-core — the pipeline core
//!
//! This crate holds what every other part of deployctl agrees on, and nothing else:
//!
//! * **domain types**: [`ImageRef`], [`Digest`], [`BuildSpec`], [`BuiltImage`],
//!   [`PushedImage`], [`Secret`] and where one is kept ([`SecretSource`]), [`Plan`] and its
//!   [`ResourceChange`]s;
//! * **adapter traits**: [`ImageBuilder`], [`CredentialSource`], [`ImagePusher`],
//!   [`Target`] (plan, apply, verify, status, logs, destroy, rollback) and
//!   [`SecretResolver`]. They are object safe so the binary can hold `Box<dyn Target>`;
//! * the **event stream** ([`Event`], [`EventSink`]) that the CLI renders as progress or
//!   newline-delimited JSON and that an embedding program can consume;
//! * the **orchestration** ([`Pipeline`]): build → push → for every target, in parallel,
//!   plan → apply → verify; with dry-run (plan only) and cooperative cancellation
//!   ([`Cancellation`]);
//! * **hooks** ([`Hooks`]): steps before and after a target's deploy and before its
//!   destroy — local commands behind [`HookRunner`], tasks in the target through
//!   [`Target::run_task`] — with the ordering rules the pipeline carries out;
//! * **deployment metrics** ([`deploy_stats`]): per service and target, frequency,
//!   success rate and p50/p95 durations of [`DeployRecord`]s, computed without IO;
//! * **deploy locks** ([`DeployLock`], [`locked`]): one deploy of an app per target at a
//!   time, with waiting, lease renewal and release decided here and the atomic operations
//!   done by each target over its own service.
//!
//! ## Boundary
//!
//! The core does no IO: no filesystem, no network, no processes, no async runtime. It knows
//! nothing of AWS, Kubernetes, Docker or YAML. Adapters (`deployctl-image`,
//! `deployctl-registry`, `deployctl-aws`, `deployctl-k8s`) implement its traits; the
//! `deployctl` binary wires them together. Time is read only to stamp events.

mod cancel;
mod error;
mod event;
mod hooks;
mod image;
mod lock;
mod metrics;
mod pipeline;
mod plan;
mod secret;
mod target;
mod waves;

pub use cancel::Cancellation;
pub use error::{ErrorKind, StageError, never_connected};
pub use event::{
    EVENT_SCHEMA_VERSION, Event, EventKind, EventSink, NullSink, Progress, Stage, VecSink,
};
pub use hooks::{
    DEFAULT_HOOK_TIMEOUT_SECONDS, HookContext, HookOutput, HookPhase, HookRunner, HookStep, Hooks,
    LOCAL_COMMAND, LocalCommand, PlannedHook, TargetTask, TaskCleanup, TaskInput, TaskRunner,
};
pub use image::{
    BuildArg, BuildSpec, BuiltImage, Digest, ImageRef, ImageRefError, Platform, PushedImage,
    RegistryCredentials,
};
pub use lock::{
    Acquire, DeployLock, LockHolder, LockOwner, LockPolicy, Timer, break_lock, holding, locked,
};
pub use metrics::{
    DeployRecord, DeployResult, DeployStats, KEPT_RECORDS, Percentiles, append_record,
    deploy_stats, parse_records,
};
pub use pipeline::{Pipeline, RunMode, RunReport, RunRequest, StageOutcome, TargetReport};
pub use plan::{Action, FieldChange, Plan, ResourceChange};
pub use secret::{REDACTED, Secret, SecretResolver, SecretSource, redact_known, resolve_all};
pub use target::{
    ApplyOutcome, CredentialSource, Endpoint, ImageBuilder, ImagePusher, LogLine, LogQuery,
    LogSink, ResourceStatus, Revision, RollbackOutcome, Target, TargetStatus, Verification,
};
pub use waves::{
    GraphProblem, ServiceGraph, ServiceOutcome, plan_waves, reversed, run_waves, select,
};
