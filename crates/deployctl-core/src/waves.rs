//! Services of a workspace deployed in waves of their dependency graph.
//!
//! Pure: [`plan_waves`] orders a graph of service names into waves (every service in a wave
//! depends only on services of earlier waves), [`select`] narrows a graph to the services
//! asked for plus everything they depend on, and [`run_waves`] runs a caller's future per
//! service, wave after wave, at most `jobs` at once within a wave. A service whose
//! dependency did not succeed is not started: it is reported as [`ServiceOutcome::NotReached`]
//! naming that dependency. Its siblings still run.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;

use futures::StreamExt;

/// Service name → the names it depends on.
pub type ServiceGraph = BTreeMap<String, Vec<String>>;

/// Why a graph cannot be ordered. A domain result (the config crate turns it into a
/// diagnostic with the file and line), not an error of this crate.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GraphProblem {
    /// `service` depends on `missing`, which is not in the graph.
    UnknownDependency {
        /// The service naming it.
        service: String,
        /// The unknown name.
        missing: String,
    },
    /// The services form a cycle: each depends on the next, the last on the first.
    Cycle(Vec<String>),
    /// A name given to [`select`] is not a service.
    UnknownService(String),
}

impl fmt::Display for GraphProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GraphProblem::UnknownDependency { service, missing } => {
                write!(
                    f,
                    "`{service}` depends on `{missing}`, which is not a service"
                )
            }
            GraphProblem::Cycle(names) => {
                let mut path = names.join(" -> ");
                if let Some(first) = names.first() {
                    path.push_str(" -> ");
                    path.push_str(first);
                }
                write!(f, "dependency cycle: {path}")
            }
            GraphProblem::UnknownService(name) => write!(f, "`{name}` is not a service"),
        }
    }
}

/// Orders `graph` into waves: the first holds the services with no dependencies, each
/// next one the services whose dependencies are all in earlier waves. Names within a wave
/// are sorted. Unknown dependencies and cycles are problems (the first found, in name order).
pub fn plan_waves(graph: &ServiceGraph) -> Result<Vec<Vec<String>>, GraphProblem> {
    for (service, deps) in graph {
        if let Some(missing) = deps.iter().find(|d| !graph.contains_key(*d)) {
            return Err(GraphProblem::UnknownDependency {
                service: service.clone(),
                missing: missing.clone(),
            });
        }
    }
    if let Some(cycle) = find_cycle(graph) {
        return Err(GraphProblem::Cycle(cycle));
    }
    let mut placed: BTreeSet<&str> = BTreeSet::new();
    let mut waves = Vec::new();
    while placed.len() < graph.len() {
        let wave: Vec<String> = graph
            .iter()
            .filter(|(name, deps)| {
                !placed.contains(name.as_str()) && deps.iter().all(|d| placed.contains(d.as_str()))
            })
            .map(|(name, _)| name.clone())
            .collect();
        // Cannot be empty: the graph has no cycle and no unknown name.
        if wave.is_empty() {
            break;
        }
        placed.extend(
            graph
                .keys()
                .filter(|k| wave.contains(k))
                .map(String::as_str),
        );
        waves.push(wave);
    }
    Ok(waves)
}

/// The first cycle found by a depth-first walk in name order, as the services on it.
fn find_cycle(graph: &ServiceGraph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit<'a>(
        name: &'a str,
        graph: &'a ServiceGraph,
        marks: &mut BTreeMap<&'a str, Mark>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match marks.get(name) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let start = stack.iter().position(|n| *n == name).unwrap_or(0);
                return Some(stack[start..].iter().map(|s| (*s).to_owned()).collect());
            }
            None => {}
        }
        marks.insert(name, Mark::Open);
        stack.push(name);
        for dep in graph.get(name).into_iter().flatten() {
            if let Some(c) = visit(dep, graph, marks, stack) {
                return Some(c);
            }
        }
        stack.pop();
        marks.insert(name, Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for name in graph.keys() {
        let mut stack = Vec::new();
        if let Some(c) = visit(name, graph, &mut marks, &mut stack) {
            return Some(c);
        }
    }
    None
}

/// The part of `graph` made of the services in `only` and, transitively, everything they
/// depend on (a service cannot be deployed before its dependencies). An empty `only` keeps
/// the whole graph.
pub fn select(graph: &ServiceGraph, only: &[String]) -> Result<ServiceGraph, GraphProblem> {
    if only.is_empty() {
        return Ok(graph.clone());
    }
    let mut keep: BTreeSet<String> = BTreeSet::new();
    let mut todo: Vec<String> = Vec::new();
    for name in only {
        if !graph.contains_key(name) {
            return Err(GraphProblem::UnknownService(name.clone()));
        }
        todo.push(name.clone());
    }
    while let Some(name) = todo.pop() {
        if keep.insert(name.clone()) {
            todo.extend(graph.get(&name).into_iter().flatten().cloned());
        }
    }
    Ok(graph
        .iter()
        .filter(|(k, _)| keep.contains(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect())
}

/// `graph` with every edge turned around: each service depends on its dependants. Its waves
/// take services down in the reverse order (dependants first), and with [`run_waves`] a
/// service whose dependant failed to go is kept.
pub fn reversed(graph: &ServiceGraph) -> ServiceGraph {
    let mut out: ServiceGraph = graph.keys().map(|k| (k.clone(), Vec::new())).collect();
    for (name, deps) in graph {
        for d in deps {
            if let Some(v) = out.get_mut(d) {
                v.push(name.clone());
            }
        }
    }
    out
}

/// What happened to one service of a [`run_waves`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServiceOutcome<R> {
    /// It ran; the caller's result.
    Ran(R),
    /// It was not started because `dependency` did not succeed (failed or was not reached).
    NotReached {
        /// The dependency that did not succeed.
        dependency: String,
    },
}

/// Runs `run(name)` for every service of `waves` (from [`plan_waves`]), wave after wave,
/// at most `jobs` (at least 1) at once within a wave. A service runs only when every one of
/// its dependencies in `graph` ran and `succeeded` says so; otherwise it is
/// [`ServiceOutcome::NotReached`]. Results come back in wave order, names sorted in a wave.
pub async fn run_waves<R, F, Fut, S>(
    graph: &ServiceGraph,
    waves: &[Vec<String>],
    jobs: usize,
    run: F,
    succeeded: S,
) -> Vec<(String, ServiceOutcome<R>)>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = R>,
    S: Fn(&R) -> bool,
{
    let jobs = jobs.max(1);
    let mut ok: BTreeSet<String> = BTreeSet::new();
    let mut out: Vec<(String, ServiceOutcome<R>)> = Vec::new();
    for wave in waves {
        let mut blocked = Vec::new();
        let mut ready = Vec::new();
        for name in wave {
            let deps = graph.get(name).map(Vec::as_slice).unwrap_or_default();
            match deps.iter().find(|d| !ok.contains(*d)) {
                Some(dep) => blocked.push((
                    name.clone(),
                    ServiceOutcome::NotReached {
                        dependency: dep.clone(),
                    },
                )),
                None => ready.push(name.clone()),
            }
        }
        let mut ran: Vec<(String, R)> = futures::stream::iter(ready.into_iter().map(|name| {
            let fut = run(name.clone());
            async move { (name, fut.await) }
        }))
        .buffer_unordered(jobs)
        .collect()
        .await;
        ran.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, result) in ran {
            if succeeded(&result) {
                ok.insert(name.clone());
            }
            out.push((name, ServiceOutcome::Ran(result)));
        }
        out.extend(blocked);
        let start = out.len() - wave.len();
        out[start..].sort_by(|a, b| a.0.cmp(&b.0));
    }
    out
}

#[cfg(test)]
mod tests;
