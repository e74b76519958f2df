#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ferkit_fuzz::serve::serve_request(data));
