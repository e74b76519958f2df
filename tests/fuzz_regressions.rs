//! Issue 20: every input that broke a reader (`fuzz/regressions/<target>/`, one file each, named
//! after what it broke: a crash or an allocation past the limits, found by a fuzzer or by hand) is replayed here on stable through the fuzz
//! target's own code (`fuzz/src/readers.rs`), so a fixed crash stays fixed. `ferkit serve`'s
//! request target is replayed by `crates/ferkit-serve/tests/fuzz_regressions.rs`.
//! How the fuzzers run: fuzz/README.md.

#[path = "../fuzz/src/limits.rs"]
mod limits;
#[path = "../fuzz/src/readers.rs"]
mod readers;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

/// The reader targets by name (the folder names under fuzz/regressions).
const TARGETS: &[(&str, fn(&[u8]))] = &[
    ("fer_csv", readers::fer_csv),
    ("image_decode", readers::image_decode),
    ("haar_cascade", readers::haar_cascade),
    ("pytorch_pth", readers::pytorch_pth),
    ("net_spec", readers::net_spec),
    ("search_space", readers::search_space),
    ("run_state", readers::run_state),
];

// One test: the targets set their limits through the environment, which no other thread may
// read meanwhile.
#[test]
fn inputs_that_broke_a_reader_are_read_without_a_crash_and_bombs_are_refused() {
    let _scratch = RemovedOnDrop(readers::scratch_dir());
    replay_every_input();
    checkpoints_declaring_more_than_the_file_holds_are_refused();
    a_jpeg_that_overflows_zune_jpeg_is_an_error_naming_the_decoder();
}

/// Removes the readers' scratch folder (`ferkit-fuzz-<pid>` in the temporary directory) when the
/// test ends, passed or failed, so that runs of the suite leave nothing behind.
struct RemovedOnDrop(&'static Path);

impl Drop for RemovedOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.0);
    }
}

fn replay_every_input() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let (mut replayed, mut failures) = (0, Vec::new());
    for entry in std::fs::read_dir(&root).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        if name == "serve_request" {
            continue;
        }
        let Some((_, target)) = TARGETS.iter().find(|(t, _)| *t == name) else {
            panic!("{}: no fuzz target of that name", dir.display());
        };
        for input in std::fs::read_dir(&dir).unwrap() {
            let input = input.unwrap().path();
            let bytes = std::fs::read(&input).unwrap();
            replayed += 1;
            if catch_unwind(AssertUnwindSafe(|| target(&bytes))).is_err() {
                failures.push(input.display().to_string());
            }
        }
    }
    assert!(failures.is_empty(), "these inputs still crash their reader: {failures:?}");
    eprintln!("replayed {replayed} inputs that once broke a reader");
    assert!(replayed > 0, "fuzz/regressions holds no input");
}

/// The checkpoints that declared gigabytes of tensors in a few hundred bytes
/// (fuzz/make_pth_bombs.py) are refused before any tensor is read: without the check they load
/// (no crash to see here, where nothing limits allocations) after allocating 2.7 GB.
fn checkpoints_declaring_more_than_the_file_holds_are_refused() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/pytorch_pth");
    let bombs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("zero-stride-view"))
        .collect();
    assert_eq!(bombs.len(), 2, "{bombs:?}");
    for bomb in bombs {
        let scratch = tempfile::tempdir().unwrap();
        std::fs::copy(&bomb, scratch.path().join("pnet.pt")).unwrap();
        let err = match ferkit::detection::mtcnn::Mtcnn::load(scratch.path()) {
            Ok(_) => panic!("{}: loaded", bomb.display()),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains("conv1.bias") && err.contains("more than a"), "{}: {err}", bomb.display());
    }
}

/// The JPEG on which zune-jpeg 0.5.15 overflows (`dc * quantiser`, found by the image_decode
/// fuzzer; the target's first byte chooses decoding from memory). With the release profile's
/// overflow checks for zune-jpeg (Cargo.toml), its panic is this file's error, named as such.
fn a_jpeg_that_overflows_zune_jpeg_is_an_error_naming_the_decoder() {
    let input = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/image_decode/zune-jpeg-dc-overflow");
    let bytes = std::fs::read(&input).unwrap();
    match ferkit::data::image_io::decode_image(&bytes[1..], "overflow.jpg") {
        Ok(image) => panic!("{}: decoded as {}x{}", input.display(), image.width(), image.height()),
        Err(e) => {
            let message = format!("{e:#}");
            assert!(message.contains("overflow.jpg") && message.contains("decoder failed"), "{message}");
        }
    }
}
