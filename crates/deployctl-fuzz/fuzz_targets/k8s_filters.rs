//! libFuzzer driver of the `k8s_filters` target: the property is [`deployctl_fuzz::k8s_filters`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| deployctl_fuzz::k8s_filters::check(data));
