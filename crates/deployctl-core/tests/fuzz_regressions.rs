//! Every input the `image_ref` fuzz target ever failed on (`fixtures/fuzz/image_ref/`) is
//! replayed against the same property (ImageRef and Digest parsing), without libFuzzer: the property
//! module and the replay loop are the fuzz crate's own files, included by path.

// The code under test, where the property module finds it (`super::`).
use deployctl_core::{Digest, ImageRef};

#[path = "../../deployctl-fuzz/src/image_ref.rs"]
mod property;
#[path = "../../deployctl-fuzz/src/replay.rs"]
mod replay;

#[test]
fn saved_fuzz_inputs_still_pass() {
    let n = replay::replay("image_ref", property::check);
    println!("replayed {n} saved `image_ref` input(s)");
}
