#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ferkit_fuzz::readers::run_state(data));
