//! Skipped references and measured figures, made visible: one decision for every test crate
//! (the CLI's, the library's, the server's) on what a missing reference means, under
//! `FERKIT_REQUIRE_REFERENCES=1` a failure, otherwise a line that `cargo test` shows and a list
//! that `.ci/run` prints.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};

/// Where skipped tests are listed (one line each), for `.ci/run` to print after the tests.
pub fn skip_log() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("skipped-references.txt")
}

/// A test's reference input (../shared, opencv-data) is missing. Under
/// `FERKIT_REQUIRE_REFERENCES=1`, which `.ci/run` sets after installing them, that fails the
/// test, naming what is missing; otherwise the skip is printed and listed in [`skip_log`].
pub fn skip(reason: &str) {
    if std::env::var("FERKIT_REQUIRE_REFERENCES").is_ok_and(|v| v == "1") {
        panic!("FERKIT_REQUIRE_REFERENCES is set, but {reason}");
    }
    log_skip(reason);
}

/// A skip that CI allows: a reference CI cannot install from the registries it reaches
/// (PyTorch's CPU wheels live outside PyPI). Printed and listed like [`skip`].
pub fn skip_optional(reason: &str) {
    log_skip(reason);
}

fn log_skip(reason: &str) {
    shown_and_logged(&format!("SKIPPED: {reason}"), &skip_log());
}

/// Where the figures tests measure against their references are listed (one line each, with the
/// test's name), for `.ci/run` to print: CI's log then holds every figure the README cites.
pub fn figure_log() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("reference-figures.txt")
}

/// A measured figure (e.g. "max |ferkit - pytorch| = 3e-5"): shown by `cargo test` even when the
/// test passes, and listed in [`figure_log`].
pub fn figure(line: &str) {
    shown_and_logged(line, &figure_log());
}

/// Writes `line` to the process's standard error directly (libtest captures `eprintln!` and
/// shows it only for failing tests; a direct write is shown for every test) and appends it,
/// after the test's name, to `log`.
fn shown_and_logged(line: &str, log: &Path) {
    let test = std::thread::current().name().unwrap_or("?").to_string();
    let _ = writeln!(std::io::stderr().lock(), "{test}: {line}");
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(log) {
        let _ = writeln!(f, "{test}: {line}");
    }
}
