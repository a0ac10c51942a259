//! Every input the `dockerignore` fuzz target ever failed on (`fixtures/fuzz/dockerignore/`) is
//! replayed against the same property (the .dockerignore matcher), without libFuzzer: the property
//! module and the replay loop are the fuzz crate's own files, included by path.

// The code under test, where the property module finds it (`super::`).
use deployctl_image::DockerIgnore;

#[path = "../../deployctl-fuzz/src/dockerignore.rs"]
mod property;
#[path = "../../deployctl-fuzz/src/replay.rs"]
mod replay;

#[test]
fn saved_fuzz_inputs_still_pass() {
    let n = replay::replay("dockerignore", property::check);
    println!("replayed {n} saved `dockerignore` input(s)");
}
