//! One execution environment: a container of the image on the local engine whose processes
//! are the image's external extensions and its runtime, started in Lambda's order, talking to
//! the [`Api`] on the host.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{CreateContainerOptionsBuilder, LogsOptionsBuilder};
use bytes::Bytes;

use crate::api::{Api, FunctionInfo, Outcome, Snapshot};
use crate::engine::{engine, list_extensions, remove};
use crate::error::EmulatorError;
use crate::output::Output;

/// Where Lambda looks for external extensions.
pub const EXTENSIONS_DIR: &str = "/opt/extensions";

/// The label on every container the emulator creates (value: the function name).
pub const LABEL: &str = "deployctl.lambda-emulator";

/// The function as Lambda would be configured to run it.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    /// The image (reference or ID) on the local engine; it is not pulled.
    pub image: String,
    /// The function name (`AWS_LAMBDA_FUNCTION_NAME`).
    pub name: String,
    /// `function.env`: added to the image's environment. Lambda's reserved variables
    /// (`AWS_LAMBDA_RUNTIME_API`, `AWS_LAMBDA_FUNCTION_NAME`, …) cannot be overridden.
    pub env: BTreeMap<String, String>,
    /// `AWS_LAMBDA_FUNCTION_MEMORY_SIZE` (not enforced).
    pub memory_mb: u32,
    /// The region the function believes it runs in.
    pub region: String,
    /// How long an invocation may take (Lambda's function timeout).
    pub timeout: Duration,
    /// How long the init phase may take (Lambda: 10 s).
    pub init_timeout: Duration,
}

impl FunctionSpec {
    /// Lambda's defaults: 512 MB, 30 s timeout (deployctl's default), 10 s init.
    pub fn new(image: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            image: image.into(),
            name: name.into(),
            env: BTreeMap::new(),
            memory_mb: 512,
            region: "us-east-1".into(),
            timeout: Duration::from_secs(30),
            init_timeout: Duration::from_secs(10),
        }
    }
}

/// One answered invocation.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The request ID the runtime saw.
    pub request_id: String,
    /// What the runtime posted.
    pub outcome: Outcome,
    /// From delivery to the runtime's answer.
    pub duration: Duration,
}

impl Invocation {
    /// The response payload as JSON, when the function answered with a JSON document.
    pub fn response_json(&self) -> Option<serde_json::Value> {
        match &self.outcome {
            Outcome::Response(b) => serde_json::from_slice(b).ok(),
            Outcome::Error { .. } => None,
        }
    }
}

/// A process of the sandbox: PID 1 of the container, or one started with exec.
#[derive(Debug, Clone)]
struct Process {
    program: String,
    exec_id: Option<String>,
}

/// A running execution environment, initialised and ready for invocations.
/// [`Sandbox::shutdown`] removes its container; dropping it without that leaves the container
/// (labelled [`LABEL`]) behind.
#[derive(Debug)]
pub struct Sandbox {
    docker: Docker,
    container: String,
    api: ApiHandle,
    spec: FunctionSpec,
    processes: Vec<Process>,
    output: Output,
    init_duration: Duration,
}

/// `Api` without a `Debug` of its internals.
struct ApiHandle(Api);
impl std::fmt::Debug for ApiHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Api({})", self.0.addr())
    }
}

fn epoch_ms(at: Duration) -> u64 {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from((now + at).as_millis()).unwrap_or(u64::MAX)
}

/// What Lambda's init phase still waits for: the runtime's first request for an invocation
/// and each extension's first request for an event.
fn initialised(s: &Snapshot) -> Vec<String> {
    let mut missing: Vec<String> = s
        .extensions
        .iter()
        .filter(|e| e.nexts == 0)
        .map(|e| format!("extension {}'s first /extension/event/next", e.name))
        .collect();
    if !s.runtime_ready {
        missing.insert(0, "the runtime's first /runtime/invocation/next".into());
    }
    missing
}

impl Sandbox {
    /// Runs Lambda's init phase: starts the external extensions of `/opt/extensions`, waits
    /// for each to register, starts the image's entrypoint (the runtime), and waits until the
    /// runtime asks for its first invocation and every extension for its next event — or an
    /// init error, a process exit, or the init timeout. On failure the container is removed
    /// and the error carries the processes' output.
    ///
    /// The container uses the host's network (so `AWS_LAMBDA_RUNTIME_API` can be
    /// `127.0.0.1:<port>`, as in Lambda): the app's port must be free on this machine.
    pub async fn start(docker: &Docker, spec: &FunctionSpec) -> Result<Self, EmulatorError> {
        let started = Instant::now();
        let image = docker
            .inspect_image(&spec.image)
            .await
            .map_err(engine("inspect image", &spec.image))?;
        let config = image.config.unwrap_or_default();
        let runtime: Vec<String> = config
            .entrypoint
            .clone()
            .unwrap_or_default()
            .into_iter()
            .chain(config.cmd.clone().unwrap_or_default())
            .collect();
        if runtime.is_empty() {
            return Err(EmulatorError::NoEntrypoint(spec.image.clone()));
        }
        let extensions = list_extensions(docker, &spec.image).await?;

        let function = FunctionInfo {
            name: spec.name.clone(),
            version: "$LATEST".into(),
            handler: config
                .cmd
                .as_ref()
                .and_then(|c| c.first())
                .cloned()
                .unwrap_or_default(),
            arn: format!(
                "arn:aws:lambda:{}:000000000000:function:{}",
                spec.region, spec.name
            ),
        };
        let api = Api::start(function.clone())
            .await
            .map_err(EmulatorError::Listen)?;

        // The function's variables, then Lambda's reserved ones, which win.
        let mut env = spec.env.clone();
        for (k, v) in [
            ("AWS_LAMBDA_RUNTIME_API", api.addr().to_string()),
            ("AWS_LAMBDA_FUNCTION_NAME", function.name.clone()),
            ("AWS_LAMBDA_FUNCTION_VERSION", function.version.clone()),
            (
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                spec.memory_mb.to_string(),
            ),
            (
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{}", spec.name),
            ),
            (
                "AWS_LAMBDA_LOG_STREAM_NAME",
                format!("emulator/[$LATEST]/{}", api.addr().port()),
            ),
            ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".into()),
            ("AWS_REGION", spec.region.clone()),
            ("AWS_DEFAULT_REGION", spec.region.clone()),
            ("LAMBDA_TASK_ROOT", "/var/task".into()),
            ("LAMBDA_RUNTIME_DIR", "/var/runtime".into()),
            ("TZ", ":UTC".into()),
            ("_HANDLER", function.handler.clone()),
        ] {
            env.insert(k.to_owned(), v);
        }
        let env: Vec<String> = env.into_iter().map(|(k, v)| format!("{k}={v}")).collect();

        // PID 1 is the first extension when there is one (Lambda starts extensions first);
        // else the runtime itself.
        let first: Vec<String> = extensions
            .first()
            .map_or_else(|| runtime.clone(), |e| vec![e.clone()]);
        let name = format!(
            "deployctl-lambda-{}-{}",
            spec.name
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect::<String>(),
            api.addr().port()
        );
        let created = docker
            .create_container(
                Some(CreateContainerOptionsBuilder::default().name(&name).build()),
                ContainerCreateBody {
                    image: Some(spec.image.clone()),
                    entrypoint: Some(first[..1].to_vec()),
                    cmd: Some(first[1..].to_vec()),
                    env: Some(env),
                    labels: Some(std::collections::HashMap::from([(
                        LABEL.to_owned(),
                        spec.name.clone(),
                    )])),
                    host_config: Some(HostConfig {
                        network_mode: Some("host".into()),
                        ..HostConfig::default()
                    }),
                    ..ContainerCreateBody::default()
                },
            )
            .await
            .map_err(engine("create container", &name))?;
        let mut sandbox = Self {
            docker: docker.clone(),
            container: created.id,
            api: ApiHandle(api),
            spec: spec.clone(),
            processes: vec![Process {
                program: first[0].clone(),
                exec_id: None,
            }],
            output: Output::default(),
            init_duration: Duration::ZERO,
        };
        match sandbox
            .init(&extensions, &runtime, config.working_dir, started)
            .await
        {
            Ok(()) => {
                sandbox.init_duration = started.elapsed();
                Ok(sandbox)
            }
            Err(mut e) => {
                remove(docker, &sandbox.container).await;
                e.replace_output(sandbox.drain().await);
                Err(e)
            }
        }
    }

    async fn init(
        &mut self,
        extensions: &[String],
        runtime: &[String],
        working_dir: Option<String>,
        started: Instant,
    ) -> Result<(), EmulatorError> {
        let deadline = started + self.spec.init_timeout;
        self.docker
            .start_container(
                &self.container,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .map_err(engine("start container", &self.container))?;
        self.output.follow(
            &self.processes[0].program,
            self.docker.logs(
                &self.container,
                Some(
                    LogsOptionsBuilder::default()
                        .follow(true)
                        .stdout(true)
                        .stderr(true)
                        .build(),
                ),
            ),
            (),
        );
        if extensions.is_empty() {
            return self.wait(deadline, initialised).await;
        }
        for ext in &extensions[1..] {
            self.exec(std::slice::from_ref(ext), working_dir.clone())
                .await?;
        }
        let n = extensions.len();
        self.wait(deadline, |s| {
            if s.extensions.len() >= n {
                Vec::new()
            } else {
                vec![format!(
                    "{} of the {n} extension(s) in {EXTENSIONS_DIR} to register",
                    n - s.extensions.len()
                )]
            }
        })
        .await?;
        self.exec(runtime, working_dir).await?;
        self.wait(deadline, initialised).await
    }

    /// Starts `argv` in the container (it inherits the container's environment).
    async fn exec(
        &mut self,
        argv: &[String],
        working_dir: Option<String>,
    ) -> Result<(), EmulatorError> {
        let program = argv[0].clone();
        let created = self
            .docker
            .create_exec(
                &self.container,
                CreateExecOptions {
                    cmd: Some(argv.to_vec()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    working_dir: working_dir.filter(|w| !w.is_empty()),
                    ..CreateExecOptions::default()
                },
            )
            .await
            .map_err(engine("create exec", &program))?;
        let started = self
            .docker
            .start_exec(&created.id, None::<StartExecOptions>)
            .await
            .map_err(engine("start exec", &program))?;
        if let StartExecResults::Attached { output, input } = started {
            self.output.follow(&program, output, input);
        }
        self.processes.push(Process {
            program,
            exec_id: Some(created.id),
        });
        Ok(())
    }

    /// The first process that is no longer running, with its exit status.
    async fn exited(&self) -> Result<Option<(String, i64)>, EmulatorError> {
        for p in &self.processes {
            match &p.exec_id {
                None => {
                    let c = self
                        .docker
                        .inspect_container(
                            &self.container,
                            None::<bollard::query_parameters::InspectContainerOptions>,
                        )
                        .await
                        .map_err(engine("inspect container", &self.container))?;
                    let state = c.state.unwrap_or_default();
                    if state.running == Some(false) {
                        return Ok(Some((p.program.clone(), state.exit_code.unwrap_or(-1))));
                    }
                }
                Some(id) => {
                    let e = self
                        .docker
                        .inspect_exec(id)
                        .await
                        .map_err(engine("inspect exec", &p.program))?;
                    // Just after its start an exec can read as not running, with no exit
                    // code yet: only an exit code means it ended.
                    if let (Some(false), Some(code)) = (e.running, e.exit_code) {
                        return Ok(Some((p.program.clone(), code)));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Waits until `pending` (what has not happened yet) is empty, failing on an init error,
    /// a process exit or the deadline.
    async fn wait(
        &self,
        deadline: Instant,
        pending: impl Fn(&Snapshot) -> Vec<String>,
    ) -> Result<(), EmulatorError> {
        let mut changes = self.api.0.changes();
        loop {
            let snap = self.api.0.snapshot();
            if let Some(f) = snap.init_error {
                // Give the process a moment to print why before the output is taken.
                tokio::time::sleep(Duration::from_millis(200)).await;
                return Err(EmulatorError::InitError {
                    reporter: f.reporter,
                    error_type: f.error_type,
                    body: f.body,
                    output: self.output.lines(),
                });
            }
            let missing = pending(&snap);
            if missing.is_empty() {
                return Ok(());
            }
            if let Some((process, code)) = self.exited().await? {
                self.output.drained(&process, Duration::from_secs(2)).await;
                return Err(EmulatorError::Exited {
                    process,
                    code,
                    phase: "during init",
                    output: self.output.lines(),
                });
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(EmulatorError::InitTimeout {
                    after: self.spec.init_timeout,
                    waiting_for: missing.join(", "),
                    output: self.output.lines(),
                });
            }
            let pause = (deadline - now).min(Duration::from_millis(250));
            let _ = tokio::time::timeout(pause, changes.changed()).await;
        }
    }

    /// Delivers one event (the payload, e.g. an API Gateway HTTP API v2.0 event) and waits
    /// for the runtime's response or error, up to the function timeout.
    pub async fn invoke(&self, payload: &[u8]) -> Result<Invocation, EmulatorError> {
        let started = Instant::now();
        let (request_id, mut answered) = self
            .api
            .0
            .invoke(Bytes::copy_from_slice(payload), epoch_ms(self.spec.timeout));
        let deadline = started + self.spec.timeout;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(EmulatorError::InvokeTimeout {
                    request_id,
                    after: self.spec.timeout,
                    output: self.output.lines(),
                });
            }
            let pause = (deadline - now).min(Duration::from_millis(250));
            // The sender lives in the API state until answered: an `Err` is the pause.
            if let Ok(Ok(outcome)) = tokio::time::timeout(pause, &mut answered).await {
                return Ok(Invocation {
                    request_id,
                    outcome,
                    duration: started.elapsed(),
                });
            }
            if let Some((process, code)) = self.exited().await? {
                self.output.drained(&process, Duration::from_secs(2)).await;
                return Err(EmulatorError::Exited {
                    process,
                    code,
                    phase: "during the invoke",
                    output: self.output.lines(),
                });
            }
        }
    }

    /// The lines the sandbox's processes printed so far, `[program] line` (the engine may
    /// still hold some back: [`Sandbox::shutdown`] returns all of them).
    pub fn output(&self) -> Vec<String> {
        self.output.lines()
    }

    /// How long the init phase took.
    pub fn init_duration(&self) -> Duration {
        self.init_duration
    }

    /// The names the external extensions registered with, in order.
    pub fn extensions(&self) -> Vec<String> {
        self.api
            .0
            .snapshot()
            .extensions
            .into_iter()
            .map(|e| e.name)
            .collect()
    }

    /// Sends SHUTDOWN to the extensions that asked for it, gives them up to 2 s to ask for
    /// their next event (their acknowledgement), then removes the container. Returns the
    /// processes' whole output: the engine may hand over the last of it only when the
    /// streams end, so [`Sandbox::output`] before this can miss lines.
    pub async fn shutdown(self) -> Vec<String> {
        let grace = Duration::from_secs(2);
        let before: Vec<u64> = self
            .api
            .0
            .snapshot()
            .extensions
            .iter()
            .map(|e| e.nexts)
            .collect();
        if self.api.0.shutdown(epoch_ms(grace)) > 0 {
            let deadline = Instant::now() + grace;
            let _ = self
                .wait(deadline, |s| {
                    s.extensions
                        .iter()
                        .zip(&before)
                        .filter(|(e, n)| e.nexts <= **n && e.events.iter().any(|t| t == "SHUTDOWN"))
                        .map(|(e, _)| format!("{} to acknowledge SHUTDOWN", e.name))
                        .collect()
                })
                .await;
        }
        remove(&self.docker, &self.container).await;
        self.drain().await
    }

    /// After the container is gone: waits (up to 2 s in all) until every process's output
    /// stream has ended, and returns the output.
    async fn drain(&self) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(2);
        for p in &self.processes {
            let left = deadline.saturating_duration_since(Instant::now());
            self.output.drained(&p.program, left).await;
        }
        self.output.lines()
    }
}

/// Starts a sandbox, delivers one event, shuts it down: what `sam local invoke` does. The
/// sandbox is removed whatever happens.
pub async fn invoke_once(
    docker: &Docker,
    spec: &FunctionSpec,
    payload: &[u8],
) -> Result<(Invocation, Vec<String>), EmulatorError> {
    let sandbox = Sandbox::start(docker, spec).await?;
    let result = sandbox.invoke(payload).await;
    let output = sandbox.shutdown().await;
    match result {
        Ok(i) => Ok((i, output)),
        Err(mut e) => {
            e.replace_output(output);
            Err(e)
        }
    }
}
