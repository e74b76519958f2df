//! What each reader's fuzz target does with one input: read it the way ferkit reads such a file,
//! then use what was read the way ferkit would next (a cascade scans an image, a net spec builds
//! its net and runs a forward pass, a saved search proposes trials). An error is a pass; a panic,
//! a hang or an allocation past libFuzzer's limit is a failure.
//!
//! Shared by the fuzz targets (`fuzz_targets/*.rs`, through the `ferkit_fuzz` library) and by the
//! stable regression test `tests/fuzz_regressions.rs` (through `#[path]`), so that a crash found
//! by the fuzzer is replayed by the very code that found it.
//!
//! Readers that take a path get the input written to a scratch file (one folder per process).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ferkit::Device;
use ferkit::data::fer_csv::{SplitAssignment, read_csv};
use ferkit::data::{Dataset, LoadReport, SplitName};
use ferkit::detection::{Cascade, DetectOptions, GreyImage};
use ferkit::models::{Net, NetSpec};
use ferkit::run::RunDir;
use ferkit::tuning::{Direction, Oracle, SearchSpace, Strategy};

use crate::limits::set_limits;

/// This process's scratch folder (created on first use).
pub fn scratch_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("ferkit-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch folder in the temporary directory");
        dir
    })
}

/// `data` written to `name` in the scratch folder.
fn scratch_file(name: &str, data: &[u8]) -> PathBuf {
    let path = scratch_dir().join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("scratch subfolder");
    }
    std::fs::write(&path, data).expect("scratch file");
    path
}

/// Splits off the first byte, which the targets use to choose among ways of reading.
fn selector(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((&first, rest)) => (first, rest),
        None => (0, data),
    }
}

/// The FER2013 CSV reader (plain, gzip, tar) with each split assignment, strict and skipping.
pub fn fer_csv(data: &[u8]) {
    set_limits();
    let (choice, content) = selector(data);
    let path = scratch_file("fer.csv", content);
    let assignment = match choice % 4 {
        0 | 1 => SplitAssignment::ByUsage,
        2 => SplitAssignment::All(SplitName::Train),
        _ => SplitAssignment::All(SplitName::Test),
    };
    let (mut dataset, mut report) = (Dataset::default(), LoadReport::default());
    if read_csv(&path, assignment, choice & 4 != 0, &mut dataset, &mut report).is_ok() {
        for split in [&dataset.train, &dataset.val, &dataset.test] {
            assert!(
                (0..split.len()).all(|i| (split.label(i) as usize) < ferkit::data::NUM_CLASSES),
                "a label out of range"
            );
        }
    }
}

/// The image path of photos and folders: decoding from memory (uploads, Python `bytes`) and from
/// a file with EXIF orientation, then the grey 48x48 face a folder reader makes of it.
pub fn image_decode(data: &[u8]) {
    set_limits();
    let (choice, content) = selector(data);
    if choice & 1 == 0 {
        if let Ok(image) = ferkit::data::image_io::decode_image(content, "fuzz input") {
            let _ = ferkit::data::image_io::to_grey(&image);
        }
    } else {
        let path = scratch_file("face.img", content);
        if let Ok(face) = ferkit::data::image_folder::load_face(&path) {
            assert_eq!(face.len(), ferkit::data::IMAGE_PIXELS);
        }
    }
}

/// The OpenCV cascade XML reader (Haar and LBP, the current and the original format); a cascade
/// that loads must then scan an image without panicking.
pub fn haar_cascade(data: &[u8]) {
    set_limits();
    let path = scratch_file("cascade.xml", data);
    if let Ok(cascade) = Cascade::load(&path) {
        let pixels: Vec<u8> = (0..64 * 48).map(|i| (i * 7 % 251) as u8).collect();
        let image = GreyImage::new(64, 48, pixels);
        let options = DetectOptions { min_size: 8, min_neighbors: 1, ..DetectOptions::default() };
        let _ = cascade.detect(&image, &options);
    }
}

/// The PyTorch checkpoint reader (legacy pickle and zip), as MTCNN's P-Net weights.
pub fn pytorch_pth(data: &[u8]) {
    set_limits();
    let path = scratch_file("mtcnn/pnet.pt", data);
    // R-Net's file is absent, so a P-Net file that loads ends in "no such weights file".
    let _ = ferkit::detection::mtcnn::Mtcnn::load(path.parent().unwrap());
}

/// Nets with more parameters or multiply-adds per image than these are read and checked but not
/// built (a fuzz execution must stay well inside its time limit; building is the same code at
/// any size). The library's own limits (models/spec.rs) bound the rest.
const BUILT_PARAMETERS: usize = 2_000_000;
const BUILT_MULTIPLY_ADDS: usize = 200_000_000;

/// The TOML net spec: parsed and checked; a small net that passes is built and runs a forward
/// pass on one image.
pub fn net_spec(data: &[u8]) {
    set_limits();
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(spec) = NetSpec::from_toml(text, "fuzz.toml") else { return };
    let infos = spec.layer_infos().expect("from_toml checked the layers");
    let parameters = infos.iter().fold(0usize, |n, i| n.saturating_add(i.trainable).saturating_add(i.non_trainable));
    let work = spec.layers.iter().zip(&infos).fold(0usize, |n, (l, i)| n.saturating_add(l.multiply_adds(i)));
    if parameters <= BUILT_PARAMETERS && work <= BUILT_MULTIPLY_ADDS {
        let device = Device::flex();
        let net = Net::new(&spec, &device).expect("a checked spec builds");
        let images = burn::prelude::Tensor::<4>::zeros([1, 1, 48, 48], &device);
        let logits = net.forward(images);
        assert_eq!(logits.dims(), [1, ferkit::data::NUM_CLASSES]);
    }
}

/// A search space TOML: parsed, its corners checked, then a Bayesian search proposes trials.
pub fn search_space(data: &[u8]) {
    set_limits();
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(space) = SearchSpace::from_toml(text, "fuzz-space.toml") else { return };
    if space.check_corners().is_err() {
        return;
    }
    let dimensions = space.searched().len();
    propose(Oracle::new(space, Strategy::bayesian(dimensions), Direction::Maximize, 6, 7));
}

/// Runs a search the way `ferkit tune` does after loading it: asks for trials and reports results.
fn propose(mut oracle: Oracle) {
    let _ = oracle.pending();
    for step in 0..6 {
        let Some(trial) = oracle.ask() else { break };
        oracle.tell(trial.id, Some(0.5 + 0.01 * step as f64), Some(1), Some(1.0));
    }
    let _ = oracle.best();
}

/// What `train --resume`, `tune` (resuming) and the reports read back from a run or search
/// folder: config.toml, history.csv, checkpoint/state.json, metrics.json, best.json, oracle.json.
pub fn run_state(data: &[u8]) {
    set_limits();
    let (choice, content) = selector(data);
    let run_path = scratch_dir().join("run");
    let _ = std::fs::remove_dir_all(&run_path);
    std::fs::create_dir_all(run_path.join("checkpoint")).expect("scratch run folder");
    match choice % 6 {
        0 => {
            let path = scratch_file("run/config.toml", content);
            let _ = ferkit::training::config::TrainConfig::load(&path);
        }
        1 => {
            let path = scratch_file("run/history.csv", content);
            let _ = ferkit::run::history::read_csv(&path);
        }
        2 => {
            scratch_file("run/config.toml", b"");
            scratch_file("run/checkpoint/state.json", content);
            let run = RunDir::open(&run_path).expect("the folder has a config.toml");
            let _ = ferkit::training::checkpoint::load_state(&run);
        }
        3 => {
            scratch_file("run/config.toml", b"");
            scratch_file("run/metrics.json", content);
            let run = RunDir::open(&run_path).expect("the folder has a config.toml");
            let _ = ferkit::run::RunMetrics::read(&run);
        }
        4 => {
            let path = scratch_file("run/best.json", content);
            let _ = ferkit::tuning::runner::BestTrial::read(&path);
        }
        _ => {
            let path = scratch_file("run/oracle.json", content);
            if let Ok(oracle) = Oracle::load(&path) {
                propose(oracle);
            }
        }
    }
}
