use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::executor::block_on;

use super::*;

fn graph(edges: &[(&str, &[&str])]) -> ServiceGraph {
    edges
        .iter()
        .map(|(n, d)| ((*n).to_owned(), d.iter().map(|s| (*s).to_owned()).collect()))
        .collect()
}

fn names(w: &[&[&str]]) -> Vec<Vec<String>> {
    w.iter()
        .map(|x| x.iter().map(|s| (*s).to_owned()).collect())
        .collect()
}

/// db <- (api, worker) <- web: a diamond, plus an independent `docs`.
fn diamond() -> ServiceGraph {
    graph(&[
        ("db", &[]),
        ("api", &["db"]),
        ("worker", &["db"]),
        ("web", &["api", "worker"]),
        ("docs", &[]),
    ])
}

/// Yields to the executor `n` times, so other futures interleave.
struct Yield(u32);
impl Future for Yield {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 == 0 {
            Poll::Ready(())
        } else {
            self.0 -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

#[test]
fn a_diamond_is_three_waves() {
    let waves = plan_waves(&diamond()).unwrap();
    assert_eq!(
        waves,
        names(&[&["db", "docs"], &["api", "worker"], &["web"]])
    );
}

#[test]
fn an_unknown_dependency_is_named() {
    let g = graph(&[("api", &["dbb"]), ("db", &[])]);
    assert_eq!(
        plan_waves(&g).unwrap_err(),
        GraphProblem::UnknownDependency {
            service: "api".into(),
            missing: "dbb".into()
        }
    );
}

#[test]
fn a_cycle_is_named_in_order() {
    let g = graph(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"]), ("d", &[])]);
    let err = plan_waves(&g).unwrap_err();
    assert_eq!(
        err,
        GraphProblem::Cycle(vec!["a".into(), "b".into(), "c".into()])
    );
    assert_eq!(err.to_string(), "dependency cycle: a -> b -> c -> a");
    let self_loop = graph(&[("a", &["a"])]);
    assert_eq!(
        plan_waves(&self_loop).unwrap_err(),
        GraphProblem::Cycle(vec!["a".into()])
    );
}

#[test]
fn select_adds_what_the_chosen_services_depend_on() {
    let g = select(&diamond(), &["web".to_owned()]).unwrap();
    assert_eq!(
        g.keys().cloned().collect::<Vec<_>>(),
        vec!["api", "db", "web", "worker"]
    );
    let g = select(&diamond(), &["api".to_owned(), "docs".to_owned()]).unwrap();
    assert_eq!(
        g.keys().cloned().collect::<Vec<_>>(),
        vec!["api", "db", "docs"]
    );
    assert_eq!(select(&diamond(), &[]).unwrap(), diamond());
    assert_eq!(
        select(&diamond(), &["nope".to_owned()]).unwrap_err(),
        GraphProblem::UnknownService("nope".into())
    );
}

#[test]
fn waves_run_in_order_and_every_dependency_finishes_first() {
    let g = diamond();
    let waves = plan_waves(&g).unwrap();
    let log = RefCell::new(Vec::<String>::new());
    let out = block_on(run_waves(
        &g,
        &waves,
        4,
        |name| {
            let log = &log;
            async move {
                log.borrow_mut().push(format!("start {name}"));
                Yield(3).await;
                log.borrow_mut().push(format!("end {name}"));
                true
            }
        },
        |ok| *ok,
    ));
    let log = log.into_inner();
    let at = |s: &str| log.iter().position(|l| l == s).unwrap();
    for (svc, deps) in &g {
        for d in deps {
            assert!(
                at(&format!("end {d}")) < at(&format!("start {svc}")),
                "{log:?}"
            );
        }
    }
    // Both services of the second wave were running at once.
    assert!(at("start worker") < at("end api"), "{log:?}");
    assert!(out.iter().all(|(_, o)| *o == ServiceOutcome::Ran(true)));
    assert_eq!(out.len(), 5);
}

#[test]
fn jobs_bounds_how_many_run_at_once() {
    let g = graph(&[("a", &[]), ("b", &[]), ("c", &[]), ("d", &[]), ("e", &[])]);
    let waves = plan_waves(&g).unwrap();
    for jobs in [1usize, 2, 3] {
        let running = Cell::new(0usize);
        let most = Cell::new(0usize);
        block_on(run_waves(
            &g,
            &waves,
            jobs,
            |_| {
                let (running, most) = (&running, &most);
                async move {
                    running.set(running.get() + 1);
                    most.set(most.get().max(running.get()));
                    Yield(5).await;
                    running.set(running.get() - 1);
                }
            },
            |_| true,
        ));
        assert_eq!(most.get(), jobs, "jobs {jobs}");
    }
}

#[test]
fn a_failure_stops_its_dependants_not_its_siblings() {
    let g = diamond();
    let waves = plan_waves(&g).unwrap();
    let started = RefCell::new(Vec::<String>::new());
    let out = block_on(run_waves(
        &g,
        &waves,
        2,
        |name| {
            let started = &started;
            async move {
                started.borrow_mut().push(name.clone());
                name != "api"
            }
        },
        |ok| *ok,
    ));
    let mut started = started.into_inner();
    started.sort();
    assert_eq!(started, vec!["api", "db", "docs", "worker"]);
    let by: BTreeMap<_, _> = out.into_iter().collect();
    assert_eq!(by["api"], ServiceOutcome::Ran(false));
    assert_eq!(by["worker"], ServiceOutcome::Ran(true));
    assert_eq!(by["docs"], ServiceOutcome::Ran(true));
    assert_eq!(
        by["web"],
        ServiceOutcome::NotReached {
            dependency: "api".into()
        }
    );
}

#[test]
fn not_reached_passes_down_the_chain() {
    let g = graph(&[("a", &[]), ("b", &["a"]), ("c", &["b"])]);
    let waves = plan_waves(&g).unwrap();
    let out = block_on(run_waves(&g, &waves, 1, |_| async { false }, |ok| *ok));
    assert_eq!(
        out,
        vec![
            ("a".to_owned(), ServiceOutcome::Ran(false)),
            (
                "b".to_owned(),
                ServiceOutcome::NotReached {
                    dependency: "a".into()
                }
            ),
            (
                "c".to_owned(),
                ServiceOutcome::NotReached {
                    dependency: "b".into()
                }
            ),
        ]
    );
}

#[test]
fn reversed_waves_take_dependants_down_first_and_keep_what_a_failure_needs() {
    let r = reversed(&diamond());
    assert_eq!(
        plan_waves(&r).unwrap(),
        names(&[&["docs", "web"], &["api", "worker"], &["db"]])
    );
    let waves = plan_waves(&r).unwrap();
    let out = block_on(run_waves(
        &r,
        &waves,
        1,
        |n| async move { n != "worker" },
        |ok| *ok,
    ));
    let by: BTreeMap<_, _> = out.into_iter().collect();
    assert_eq!(by["api"], ServiceOutcome::Ran(true));
    assert_eq!(
        by["db"],
        ServiceOutcome::NotReached {
            dependency: "worker".into()
        }
    );
}
