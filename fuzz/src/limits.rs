//! The limits every fuzz target runs under (shared by the targets and the regression tests).

/// The limits the targets run under: lower than the defaults so that each execution stays fast
/// and an input that gets past a limit shows up as an allocation over libFuzzer's
/// `-malloc_limit_mb`. Set once, before any thread starts.
pub fn set_limits() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for (name, value) in [
            ("FERKIT_MAX_IMAGE_PIXELS", "4000000"),
            ("FERKIT_MAX_CSV_BYTES", "64000000"),
            ("FERKIT_MAX_XML_BYTES", "16000000"),
            ("RAYON_NUM_THREADS", "1"),
        ] {
            // SAFETY: called once, before the target starts any thread.
            unsafe { std::env::set_var(name, value) };
        }
    });
}

/// libfuzzer-sys's panic hook aborts at every panic, even one that ferkit catches on purpose
/// (`data::image_io` turns a panicking image decoder into the file's error). For the targets
/// that decode images this puts back a hook that only prints: a panic that ferkit catches is
/// then no crash, while one that escapes still reaches libfuzzer-sys's `catch_unwind`, which
/// aborts (a crash, as before). Called from the target's `init`.
#[allow(dead_code)] // used by the fuzz targets, not by the stable regression tests that include this file
pub fn let_caught_panics_unwind() {
    std::panic::set_hook(Box::new(|info| eprintln!("caught or not, a panic: {info}")));
}
