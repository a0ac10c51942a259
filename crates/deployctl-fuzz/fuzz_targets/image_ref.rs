//! libFuzzer driver of the `image_ref` target: the property is [`deployctl_fuzz::image_ref`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| deployctl_fuzz::image_ref::check(data));
