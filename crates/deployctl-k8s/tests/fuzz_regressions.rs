//! Every input the `k8s_filters` fuzz target ever failed on (`fixtures/fuzz/k8s_filters/`) is
//! replayed against the same property (the q and yaml template filters), without libFuzzer: the property
//! module and the replay loop are the fuzz crate's own files, included by path.

// The code under test, where the property module finds it (`super::`).
use deployctl_k8s::filters::{q_filter, yaml_filter};

#[path = "../../deployctl-fuzz/src/k8s_filters.rs"]
mod property;
#[path = "../../deployctl-fuzz/src/replay.rs"]
mod replay;

#[test]
fn saved_fuzz_inputs_still_pass() {
    let n = replay::replay("k8s_filters", property::check);
    println!("replayed {n} saved `k8s_filters` input(s)");
}
