//! Issue 20: every request that broke `ferkit serve`'s handling, and hostile requests written by
//! hand (`fuzz/regressions/serve_request/`), are replayed here on stable through the fuzz target's own
//! code (`fuzz/src/serve.rs`): the router with the shipped model answers it without a panic and
//! without a server error. How the fuzzers run: fuzz/README.md.

#[path = "../../../fuzz/src/limits.rs"]
mod limits;
#[path = "../../../fuzz/src/serve.rs"]
mod serve;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

#[test]
fn requests_that_crashed_the_server_are_answered() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/serve_request");
    let mut failures = Vec::new();
    let mut replayed = 0;
    for input in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let bytes = std::fs::read(input.path()).unwrap();
        replayed += 1;
        if catch_unwind(AssertUnwindSafe(|| serve::serve_request(&bytes))).is_err() {
            failures.push(input.path().display().to_string());
        }
    }
    assert!(failures.is_empty(), "these requests still crash the server: {failures:?}");
    eprintln!("replayed {replayed} requests");
    assert!(replayed > 0, "{}: no request to replay", dir.display());
}
