//! libFuzzer driver of the `unpack` target: the property is [`deployctl_fuzz::unpack`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| deployctl_fuzz::unpack::check(data));
