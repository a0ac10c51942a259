//! A fault and latency proxy for tests.
//!
//! [`Proxy::start`] listens on a free loopback port and forwards HTTP/1.1 to an upstream
//! `host:port` (moto, the registry, the Kubernetes stand-in). Each request is classified
//! ([`Request`]): an AWS operation from the SigV4 scope and `X-Amz-Target`, the `Action=`
//! form field or the REST method and path; a Kubernetes verb and resource; a registry step.
//! [`Rule`]s chosen per test then add latency, answer a given status (throttling and server
//! errors in each protocol's own shape), reset the connection in the middle of the response,
//! or stall a request (before it reaches the upstream, or after, withholding the answer)
//! until [`Proxy::release`]. Every request is counted per operation ([`Proxy::counts`]) and
//! logged with timestamps ([`Proxy::calls`]).
//!
//! The proxy runs on its own runtime thread, so synchronous tests can use it; dropping it
//! stops it. Bodies are forwarded as they arrive, so watches and log streams work through it.
//! Not supported: protocol upgrades, pipelined requests, TLS.

mod classify;
mod forward;
mod http;

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;

pub use classify::{Canned, Protocol, Request};

/// Request bodies up to this size are read whole before forwarding (to classify query
/// protocol calls by their `Action`); larger ones stream.
const BUFFERED_BODY: u64 = 1024 * 1024;

/// Which requests a [`Rule`] applies to.
#[derive(Clone)]
#[non_exhaustive]
pub enum Match {
    /// Every request.
    Any,
    /// The operation (`CreateFunction`, `apply deployments`, `manifest-put`) or the label
    /// (`lambda:CreateFunction`).
    Operation(String),
    /// Every request to a service (`lambda`, `iam`, `k8s`, `registry`).
    Service(String),
    /// The path contains this text.
    PathContains(String),
    /// All of these.
    All(Vec<Match>),
    /// Any of these.
    AnyOf(Vec<Match>),
    /// Only once a request matching this one has been seen (before this request): e.g. the
    /// `GetFunction` of a waiter, after `CreateFunction`.
    After(Box<Match>),
    /// A predicate.
    Fn(Arc<dyn Fn(&Request) -> bool + Send + Sync>),
}

impl std::fmt::Debug for Match {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Match::Any => write!(f, "any"),
            Match::Operation(o) => write!(f, "{o}"),
            Match::Service(s) => write!(f, "{s}:*"),
            Match::PathContains(p) => write!(f, "path~{p}"),
            Match::All(v) => write!(f, "all{v:?}"),
            Match::AnyOf(v) => write!(f, "any{v:?}"),
            Match::After(m) => write!(f, "after({m:?})"),
            Match::Fn(_) => write!(f, "fn"),
        }
    }
}

impl Match {
    /// [`Match::Operation`].
    pub fn op(op: impl Into<String>) -> Self {
        Match::Operation(op.into())
    }

    /// `m` and then this: [`Match::After`].
    pub fn after(self, m: Match) -> Self {
        Match::All(vec![Match::After(Box::new(m)), self])
    }

    /// Whether `r` matches, `earlier` being the requests before it.
    fn matches(&self, r: &Request, earlier: &[Call]) -> bool {
        match self {
            Match::Any => true,
            Match::Operation(o) => r.operation == *o || r.label() == *o,
            Match::Service(s) => r.service == *s,
            Match::PathContains(p) => r.path.contains(p.as_str()),
            Match::All(v) => v.iter().all(|m| m.matches(r, earlier)),
            Match::AnyOf(v) => v.iter().any(|m| m.matches(r, earlier)),
            Match::After(m) => earlier.iter().any(|c| m.matches(&c.request, &[])),
            Match::Fn(f) => f(r),
        }
    }
}

/// Which of the matching requests a [`Rule`] acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum When {
    /// The nth (1-based) matching request only.
    Nth(usize),
    /// The first n matching requests.
    FirstN(usize),
    /// Every matching request.
    Every,
}

/// Where a reset cuts the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cut {
    /// After this many bytes of the response (head included); 0: before any byte.
    Bytes(u64),
    /// After the head and half the body (a few bytes of a chunked or unframed body).
    MidBody,
}

/// What a [`Rule`] does to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Effect {
    /// Waits this long before forwarding (adds up with other latency rules; combines with
    /// one other effect).
    Latency(Duration),
    /// Answers, without forwarding, with the throttling error of the request's protocol.
    Throttle,
    /// Answers, without forwarding, with this server error in the request's protocol.
    ServerError(u16),
    /// Answers, without forwarding, with this.
    Respond(Canned),
    /// Forwards, then resets the connection (RST) at the cut point of the answer.
    Reset(Cut),
    /// Holds the request before it reaches the upstream until [`Proxy::release`] (then
    /// forwards it) or [`Proxy::drop_stalled`] (then closes the connection).
    StallRequest,
    /// Forwards the request (the upstream acts on it) and withholds the answer until
    /// [`Proxy::release`] or [`Proxy::drop_stalled`].
    StallResponse,
}

/// A fault rule: which requests, which of them, what happens.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Which requests.
    pub matcher: Match,
    /// Which occurrences.
    pub when: When,
    /// What happens.
    pub effect: Effect,
}

impl Rule {
    /// A rule.
    pub fn new(matcher: Match, when: When, effect: Effect) -> Self {
        Self {
            matcher,
            when,
            effect,
        }
    }
}

/// One request through the proxy.
#[derive(Debug, Clone)]
pub struct Call {
    /// Sequence number, from 1.
    pub id: u64,
    /// When it arrived, from the proxy's start.
    pub at: Duration,
    /// What it asked for.
    pub request: Request,
    /// The fault applied, if any (`Throttle`, `Reset(MidBody)`, …).
    pub fault: Option<String>,
    /// The status the client was sent (`None`: no answer, or not yet).
    pub status: Option<u16>,
    /// How long until the answer was complete (`None`: not complete).
    pub took: Option<Duration>,
}

#[derive(Debug)]
struct RuleState {
    rule: Rule,
    seen: usize,
}

#[derive(Debug, Default)]
struct State {
    rules: Vec<RuleState>,
    calls: Vec<Call>,
    /// Requests received and not yet finished.
    in_flight: usize,
    /// Ids of calls stalled now.
    stalled: Vec<u64>,
}

#[derive(Debug)]
struct Shared {
    upstream: String,
    started: Instant,
    state: Mutex<State>,
    changed: Condvar,
    /// (releases, drops): a stalled request goes on when either moves past what it saw.
    gate: watch::Sender<(u64, u64)>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Logs the request, applies the rules; (call id, latency, effect).
    fn decide(&self, request: Request) -> (u64, Duration, Option<Effect>) {
        let mut st = self.lock();
        let mut latency = Duration::ZERO;
        let mut effect = None;
        let State { rules, calls, .. } = &mut *st;
        for rs in rules.iter_mut() {
            if !rs.rule.matcher.matches(&request, calls) {
                continue;
            }
            rs.seen += 1;
            let fires = match rs.rule.when {
                When::Nth(n) => rs.seen == n,
                When::FirstN(n) => rs.seen <= n,
                When::Every => true,
            };
            if !fires {
                continue;
            }
            match &rs.rule.effect {
                Effect::Latency(d) => latency += *d,
                other if effect.is_none() => effect = Some(other.clone()),
                _ => {}
            }
        }
        let id = st.calls.len() as u64 + 1;
        st.calls.push(Call {
            id,
            at: self.started.elapsed(),
            request,
            fault: effect.as_ref().map(|e| format!("{e:?}")),
            status: None,
            took: None,
        });
        st.in_flight += 1;
        drop(st);
        self.changed.notify_all();
        (id, latency, effect)
    }

    fn answered(&self, id: u64, status: u16) {
        let mut st = self.lock();
        if let Some(c) = st.calls.iter_mut().find(|c| c.id == id) {
            c.status = Some(status);
        }
    }

    fn finished(&self, id: u64, complete: bool) {
        let mut st = self.lock();
        let at = self.started.elapsed();
        if let Some(c) = st.calls.iter_mut().find(|c| c.id == id)
            && complete
        {
            c.took = Some(at.saturating_sub(c.at));
        }
        st.in_flight = st.in_flight.saturating_sub(1);
        drop(st);
        self.changed.notify_all();
    }

    /// Waits for a release (`true`) or a drop (`false`).
    async fn stall(&self, id: u64) -> bool {
        let mut rx = self.gate.subscribe();
        let (released, dropped) = *rx.borrow_and_update();
        self.lock().stalled.push(id);
        self.changed.notify_all();
        let go = loop {
            if rx.changed().await.is_err() {
                break false;
            }
            let (r, d) = *rx.borrow_and_update();
            if d != dropped {
                break false;
            }
            if r != released {
                break true;
            }
        };
        self.lock().stalled.retain(|s| *s != id);
        self.changed.notify_all();
        go
    }
}

/// A running fault proxy; stops when dropped.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Proxy {
    /// Starts a proxy on a free port of 127.0.0.1 forwarding to `upstream` (`host:port`;
    /// an `http://` prefix and trailing `/` are ignored).
    pub fn start(upstream: &str) -> io::Result<Self> {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fault-proxy")
            .enable_all()
            .build()?;
        // Bound without blocking on the runtime, so that async tests can start a proxy too.
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let listener = {
            let _in_runtime = runtime.enter();
            TcpListener::from_std(std_listener)?
        };
        let shared = Arc::new(Shared {
            upstream,
            started: Instant::now(),
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            gate: watch::channel((0, 0)).0,
        });
        let accept_shared = shared.clone();
        runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(forward::connection(accept_shared.clone(), stream));
            }
        });
        Ok(Self {
            addr,
            shared,
            runtime: Some(runtime),
        })
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds a rule (rules apply in the order added).
    pub fn push(&self, rule: Rule) {
        self.shared.lock().rules.push(RuleState { rule, seen: 0 });
    }

    /// Removes every rule.
    pub fn clear_rules(&self) {
        self.shared.lock().rules.clear();
    }

    /// Requests per label (`lambda:CreateFunction`), since the start or [`Proxy::reset`].
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for c in &self.shared.lock().calls {
            *out.entry(c.request.label()).or_insert(0) += 1;
        }
        out
    }

    /// Requests whose operation or label is `op`.
    pub fn count(&self, op: &str) -> usize {
        let m = Match::op(op);
        self.shared
            .lock()
            .calls
            .iter()
            .filter(|c| m.matches(&c.request, &[]))
            .count()
    }

    /// Every request so far, oldest first.
    pub fn calls(&self) -> Vec<Call> {
        self.shared.lock().calls.clone()
    }

    /// The requests a rule changed (other than latency).
    pub fn faulted(&self) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.fault.is_some())
            .collect()
    }

    /// Forgets the call log and the rules' occurrence counts (rules stay).
    pub fn reset(&self) {
        let mut st = self.shared.lock();
        st.calls.clear();
        for r in &mut st.rules {
            r.seen = 0;
        }
    }

    /// Waits until a request is stalled (or `timeout`); the first stalled one.
    pub fn wait_for_stall(&self, timeout: Duration) -> Option<Call> {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        loop {
            if let Some(id) = st.stalled.first() {
                return st.calls.iter().find(|c| c.id == *id).cloned();
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            st = match self.shared.changed.wait_timeout(st, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// Lets every stalled request go on (a held request is forwarded, a held answer sent).
    pub fn release(&self) {
        self.shared.gate.send_modify(|(r, _)| *r += 1);
    }

    /// Closes the connection of every stalled request without forwarding anything more.
    pub fn drop_stalled(&self) {
        self.shared.gate.send_modify(|(_, d)| *d += 1);
    }

    /// Waits until no request is in progress (`false` on `timeout`).
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        loop {
            if st.in_flight == 0 {
                return true;
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            st = match self.shared.changed.wait_timeout(st, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.drop_stalled();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests;
