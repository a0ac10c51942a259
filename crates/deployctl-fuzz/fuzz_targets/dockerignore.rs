//! libFuzzer driver of the `dockerignore` target: the property is [`deployctl_fuzz::dockerignore`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| deployctl_fuzz::dockerignore::check(data));
