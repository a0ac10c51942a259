//! What can go wrong running an image as Lambda would.

use std::time::Duration;

/// An emulator failure. Variants that come from the function (its init or its invoke) carry
/// the last lines the sandbox's processes printed, as Lambda puts them in the function's log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmulatorError {
    /// A Docker Engine API call failed.
    #[error("Docker {operation} failed for {resource}")]
    Engine {
        /// The operation (`inspect image`, `create container`, `start exec`).
        operation: &'static str,
        /// Image, container or process.
        resource: String,
        /// The engine's error.
        #[source]
        source: bollard::errors::Error,
    },
    /// The Runtime API server could not listen on loopback.
    #[error("cannot serve the Lambda Runtime API on 127.0.0.1")]
    Listen(#[source] std::io::Error),
    /// The image names no program to run.
    #[error(
        "image {0} has no ENTRYPOINT or CMD: Lambda needs one to start the runtime; add an ENTRYPOINT to the Dockerfile"
    )]
    NoEntrypoint(String),
    /// The init phase did not end (every extension waiting for its next event, the runtime
    /// asking for its first invocation) within the init timeout.
    #[error(
        "the function's init did not finish within {} s (still waiting for {waiting_for}); in Lambda: INIT_REPORT Status: timeout{}",
        after.as_secs_f32(),
        excerpt(output)
    )]
    InitTimeout {
        /// The init timeout that passed.
        after: Duration,
        /// What had not happened yet.
        waiting_for: String,
        /// The processes' last output lines.
        output: Vec<String>,
    },
    /// The runtime or an extension reported an init error (`/runtime/init/error`,
    /// `/extension/init/error`).
    #[error(
        "{reporter} reported an init error {error_type}: {body}{}",
        excerpt(output)
    )]
    InitError {
        /// `runtime` or the extension's name.
        reporter: String,
        /// Its `Lambda-*-Function-Error-Type` header.
        error_type: String,
        /// The error document it posted.
        body: String,
        /// The processes' last output lines.
        output: Vec<String>,
    },
    /// A process of the sandbox (the runtime or an extension) exited; Lambda calls this
    /// `Runtime.ExitError` or `Extension.Crash` and resets the environment.
    #[error("{process} exited with status {code} {phase}{}", excerpt(output))]
    Exited {
        /// The program (`/opt/extensions/lambda-adapter`, the entrypoint).
        process: String,
        /// Its exit status.
        code: i64,
        /// `during init` or `during the invoke`.
        phase: &'static str,
        /// The processes' last output lines.
        output: Vec<String>,
    },
    /// The function did not answer the invocation within its timeout.
    #[error(
        "the function did not answer invocation {request_id} within its timeout of {} s (Lambda: Task timed out){}",
        after.as_secs_f32(),
        excerpt(output)
    )]
    InvokeTimeout {
        /// The invocation's request ID.
        request_id: String,
        /// The function timeout.
        after: Duration,
        /// The processes' last output lines.
        output: Vec<String>,
    },
}

impl EmulatorError {
    /// Puts the sandbox's whole output (known once it is gone) in place of the output the
    /// error was made with; errors without output are left alone.
    pub fn replace_output(&mut self, all: Vec<String>) {
        if let Self::InitTimeout { output, .. }
        | Self::InitError { output, .. }
        | Self::Exited { output, .. }
        | Self::InvokeTimeout { output, .. } = self
        {
            *output = all;
        }
    }
}

fn excerpt(lines: &[String]) -> String {
    if lines.is_empty() {
        return String::from("; the sandbox printed nothing");
    }
    let start = lines.len().saturating_sub(15);
    let mut out = String::from("; last output:");
    for line in &lines[start..] {
        out.push_str("\n  ");
        out.push_str(line);
    }
    out
}
