#![no_main]
libfuzzer_sys::fuzz_target!(
    init: ferkit_fuzz::limits::let_caught_panics_unwind(),
    |data: &[u8]| ferkit_fuzz::serve::serve_request(data)
);
