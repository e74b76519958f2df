//! Helpers for the integration tests: synthetic FER2013-shaped files and running the binary.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A small search space (units, activation, learning rate of a one-hidden-layer net) for the
/// search tests: trials train in a fraction of a second on `synthetic_csv` data.
pub const TINY_SEARCH_SPACE: &str = r#"
name = "tiny"
batch_size = 16

[[params]]
name = "units"
type = "int"
min = 8
max = 64
step = 8

[[params]]
name = "activation"
type = "choice"
values = ["relu", "tanh"]

[[params]]
name = "learning_rate"
type = "float"
min = 1e-4
max = 1e-2
sampling = "log"

[net]
name = "tiny_fnn"
input = [2304]
learning_rate = "$learning_rate"

[[net.layers]]
kind = "dense"
units = "$units"
activation = "$activation"

[[net.layers]]
kind = "dense"
units = 7
activation = "softmax"
"#;

pub const USAGES: [&str; 3] = ["Training", "PublicTest", "PrivateTest"];

/// A 48x48 face for `label` and `seed`: a bright block whose place depends on the label, over
/// seeded noise, so that a net can tell classes apart.
pub fn synthetic_face(label: usize, seed: usize) -> Vec<u8> {
    let mut state = (seed as u64).wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..48 * 48)
        .map(|p| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let noise = (state >> 58) as u8; // 0..63
            let (x, y) = (p % 48, p / 48);
            let in_block = y / 16 == label / 3 && x / 16 == label % 3;
            if in_block { 180 + noise } else { 40 + noise }
        })
        .collect()
}

pub fn pixels_text(face: &[u8]) -> String {
    face.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(" ")
}

/// A FER2013 CSV with `per_split` rows in each of the three usages, labels cycling 0..6.
pub fn synthetic_csv(per_split: usize) -> String {
    let mut out = String::from("emotion,pixels,Usage\n");
    for (u, usage) in USAGES.iter().enumerate() {
        for i in 0..per_split {
            let label = i % 7;
            out += &format!("{label},{},{usage}\n", pixels_text(&synthetic_face(label, u * 100_000 + i)));
        }
    }
    out
}

pub fn write(path: &Path, text: impl AsRef<[u8]>) -> PathBuf {
    std::fs::write(path, text).unwrap();
    path.to_path_buf()
}

pub fn write_gz(path: &Path, text: &str) -> PathBuf {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(text.as_bytes()).unwrap();
    write(path, enc.finish().unwrap())
}

/// The repository's root (the workspace's, where Cargo.lock is): `tests/fixtures` and the
/// `../shared` beside it are found from here, whichever crate's tests run.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|p| p.join("Cargo.lock").exists())
        .expect("the tests run inside the ferkit workspace")
        .to_path_buf()
}

/// Runs the `ferkit` binary (the tests of crates/ferkit-cli; other crates' tests have none).
pub fn ferkit(args: &[&str]) -> Output {
    let exe = option_env!("CARGO_BIN_EXE_ferkit").expect("only the ferkit-cli crate's tests run the binary");
    // From the repository root, as README runs it (defaults such as ../shared are relative to it).
    Command::new(exe).current_dir(repo_root()).args(args).output().expect("ferkit runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Where FER2013 lives beside the repository, if it does.
pub fn shared_fer2013() -> Option<PathBuf> {
    shared("data/fer2013/fer2013.csv.gz")
}

/// A file under `../shared` beside the repository, if it is there.
pub fn shared(relative: &str) -> Option<PathBuf> {
    let path = repo_root().join("../shared").join(relative);
    path.exists().then_some(path)
}

/// Fixed RGB images `[batch, 3, size, size]` (smooth waves, ImageNet-normalised range), the
/// same as the fixture scripts in tests/fixtures/ build for their PyTorch references.
pub fn fixed_rgb_input(batch: usize, size: usize, device: &burn::prelude::Device) -> burn::prelude::Tensor<4> {
    let mut data = Vec::with_capacity(batch * 3 * size * size);
    for b in 0..batch {
        for c in 0..3 {
            for i in 0..size {
                for j in 0..size {
                    let v = (0.05 * i as f64 + 0.07 * j as f64 + 0.9 * c as f64 + 1.3 * b as f64).sin() * 1.5;
                    data.push(v as f32);
                }
            }
        }
    }
    burn::prelude::Tensor::from_data(burn::tensor::TensorData::new(data, [batch, 3, size, size]), device)
}

/// The largest |ours - reference| between a tensor's values and a JSON array of rows (the
/// fixtures' PyTorch outputs), after checking they have as many values.
pub fn max_abs_difference<const D: usize>(ours: burn::prelude::Tensor<D>, reference: &serde_json::Value) -> f64 {
    let ours = ours.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
    let expected: Vec<f64> = reference
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()))
        .collect();
    assert_eq!(ours.len(), expected.len(), "value counts differ");
    ours.iter().zip(&expected).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max)
}

pub mod outputs;
mod skips;
#[allow(unused_imports)]
pub use skips::{figure, figure_log, skip, skip_log, skip_optional};

/// Every float parameter of a net, in visiting order.
struct Collect(Vec<Vec<f32>>);

impl burn::module::ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<burn::prelude::Tensor<D>>) {
        self.0.push(param.val().into_data().convert::<f32>().try_to_vec::<f32>().unwrap());
    }
}

/// The parameters stored in a weights file of `run` (the kept `model.bpk` or a checkpoint's),
/// in the net's visiting order (values only: a file's parameter ids differ between runs).
pub fn parameters(run: &Path, weights: &Path) -> Vec<Vec<f32>> {
    use burn::module::Module;
    let run = ferkit::training::RunDir::open(run).unwrap();
    let config = run.load_config().unwrap();
    let device = burn::prelude::Device::flex();
    let net = config.model.without_pretrained().build(&device).unwrap().try_load_file(weights).unwrap();
    let mut collect = Collect(Vec::new());
    net.visit(&mut collect);
    assert!(!collect.0.is_empty());
    collect.0
}
