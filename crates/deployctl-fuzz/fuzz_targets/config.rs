//! libFuzzer driver of the `config` target: the property is [`deployctl_fuzz::config`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| deployctl_fuzz::config::check(data));
