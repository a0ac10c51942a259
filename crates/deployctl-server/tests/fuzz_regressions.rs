//! Every input the `unpack` fuzz target ever failed on (`fixtures/fuzz/unpack/`) is replayed
//! against the same property (the upload unpacker), without libFuzzer: the property module and
//! the replay loop are the fuzz crate's own files, included by path.

// The code under test, where the property module finds it (`super::`).
use deployctl_server::unpack::{UploadLimits, resolve_inside, unpack_gz, unpack_tar};

#[path = "../../deployctl-fuzz/src/unpack.rs"]
mod property;
#[path = "../../deployctl-fuzz/src/replay.rs"]
mod replay;

#[test]
fn saved_fuzz_inputs_still_pass() {
    let n = replay::replay("unpack", property::check);
    println!("replayed {n} saved `unpack` input(s)");
}
