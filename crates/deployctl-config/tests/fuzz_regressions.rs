//! Every input the `config` fuzz target ever failed on (`fixtures/fuzz/config/`) is
//! replayed against the same property (deployctl_config::load_str through load, overlay, interpolation and validation), without libFuzzer: the property
//! module and the replay loop are the fuzz crate's own files, included by path.

// The code under test, where the property module finds it (`super::`).
use deployctl_config::{Config, ConfigError, LoadOptions, load_str};

#[path = "../../deployctl-fuzz/src/config.rs"]
mod property;
#[path = "../../deployctl-fuzz/src/replay.rs"]
mod replay;

#[test]
fn saved_fuzz_inputs_still_pass() {
    let n = replay::replay("config", property::check);
    println!("replayed {n} saved `config` input(s)");
}
