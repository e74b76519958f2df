//! A trained net ready to use: its spec and weights, from a run directory, from a model file, or
//! the one shipped inside the binary (`models/` in the repository, compiled in).
//!
//! A model file is a burnpack weights file `NAME.bpk` with `NAME.toml` beside it, the TOML holding
//! the net's spec under `[model]` (the same table as a run's `config.toml`). `ferkit export RUN
//! --out NAME.bpk` writes such a pair from a run (see [`crate::export`]); the shipped model is
//! one such pair.

use std::path::{Path, PathBuf};

use crate::error::{Context, Result, bail};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::evaluation::Tta;
use crate::models::{Model, ModelSpec};
use crate::run::{RunDir, load_weights};

/// The shipped model's weights (burnpack, float32) and description, compiled into the binary so
/// that an installed `ferkit` works from any folder. See `models/MODEL_CARD.md`.
const SHIPPED_WEIGHTS: &[u8] = include_bytes!("../models/ferkit-fer2013.bpk");
const SHIPPED_TOML: &str = include_str!("../models/ferkit-fer2013.toml");

/// What a model file's TOML holds: the net, and optionally the figures its card gives.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelFile {
    /// A short name, e.g. `ferkit-fer2013`.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Accuracy figures on named splits (fractions in [0, 1]), e.g. `PrivateTest = 0.64`.
    #[serde(default)]
    pub accuracy: std::collections::BTreeMap<String, f64>,
    /// The views of each face the model is read with unless a front is told otherwise
    /// (`tta = "hflip"`: the face and its mirror; absent: the face as it is), so that `predict`,
    /// `eval`, Python and the server use the model as its figures were measured.
    #[serde(default, skip_serializing_if = "is_plain")]
    pub tta: Tta,
    /// The net, as under `[model]` in a run's config.toml.
    pub model: ModelSpec,
}

fn is_plain(tta: &Tta) -> bool {
    *tta == Tta::None
}

/// Where a trained net comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelSource {
    /// The model compiled into this binary.
    Shipped,
    /// A run directory written by `ferkit train` (its kept `model.bpk`).
    RunDir(PathBuf),
    /// A `NAME.bpk` with `NAME.toml` beside it.
    File(PathBuf),
}

impl ModelSource {
    /// `--model PATH`: a run directory (it has a config.toml) or a model file (NAME.bpk, read
    /// with NAME.toml when loaded); none: the shipped model. Errors name the path when it is
    /// neither a folder nor a file.
    pub fn from_arg(path: Option<&Path>) -> Result<Self> {
        let Some(path) = path else { return Ok(ModelSource::Shipped) };
        if path.is_dir() {
            RunDir::open(path)?;
            Ok(ModelSource::RunDir(path.to_path_buf()))
        } else if path.is_file() {
            Ok(ModelSource::File(path.to_path_buf()))
        } else {
            bail!(BadInput, "{}: no such run directory or model file", path.display())
        }
    }

    /// How results record the model: `shipped:ferkit-fer2013`, or the path.
    pub fn describe(&self) -> String {
        match self {
            ModelSource::Shipped => format!("shipped:{}", shipped_file().map(|f| f.name).unwrap_or_default()),
            ModelSource::RunDir(p) | ModelSource::File(p) => p.display().to_string(),
        }
    }
}

/// The shipped model's description.
pub fn shipped_file() -> Result<ModelFile> {
    toml::from_str(SHIPPED_TOML).context("the shipped model's TOML (models/ferkit-fer2013.toml) does not parse")
}

/// A net with its kept weights, in inference mode, on a device.
pub struct TrainedModel {
    /// What the net is (its layers, its input preprocessing).
    pub spec: ModelSpec,
    /// The net with its weights, in inference mode (no dropout, batch-norm running statistics).
    pub net: Model,
    /// Where `net` lives.
    pub device: Device,
    /// Where it was loaded from.
    pub source: ModelSource,
    /// A batch size that suits the net (the run's own, else 256).
    pub batch_size: usize,
    /// What a user should know about how it was loaded (a GPU run on the CPU), for the front to show.
    pub notes: Vec<String>,
    /// The views a front reads each face with unless told otherwise: a model file's
    /// [`ModelFile::tta`]; the face as it is for a run directory.
    pub tta: Tta,
}

impl TrainedModel {
    /// Loads the net `source` names on the CPU (a run's own device for a run directory).
    ///
    /// Errors: an unreadable or damaged weights file or TOML, weights that do not fit the net
    /// (each naming the file), a run whose device this build lacks.
    pub fn load(source: &ModelSource) -> Result<Self> {
        match source {
            ModelSource::RunDir(path) => {
                let run = RunDir::open(path)?;
                let config = run.load_config()?;
                let (device, note) = config.device.inference_device();
                let net = run.load_model(&config, &device)?;
                let notes = note.map(String::from).into_iter().collect();
                Ok(Self {
                    spec: config.model,
                    net,
                    device,
                    source: source.clone(),
                    batch_size: config.batch_size,
                    notes,
                    tta: Tta::None,
                })
            }
            ModelSource::File(path) => {
                let toml_path = path.with_extension("toml");
                let text = std::fs::read_to_string(&toml_path).with_context(|| {
                    format!(
                        "{}: cannot read the model's TOML, which must lie beside {}",
                        toml_path.display(),
                        path.display()
                    )
                })?;
                let file: ModelFile = toml::from_str(&text)
                    .with_context(|| format!("{}: not a ferkit model TOML", toml_path.display()))?;
                let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
                Self::from_parts(file, bytes, source.clone(), path)
            }
            ModelSource::Shipped => {
                let file = shipped_file()?;
                Self::from_parts(file, SHIPPED_WEIGHTS.to_vec(), source.clone(), Path::new("models/ferkit-fer2013.bpk"))
            }
        }
    }

    fn from_parts(file: ModelFile, weights: Vec<u8>, source: ModelSource, shown: &Path) -> Result<Self> {
        let spec = file.model;
        spec.check().with_context(|| format!("{}: the model is inconsistent", shown.display()))?;
        let device = Device::flex();
        let net = load_weights(spec.without_pretrained().build(&device)?, weights, shown)?;
        Ok(Self { spec, net, device, source, batch_size: 256, notes: Vec::new(), tta: file.tta })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::net::Layer;

    /// An ensemble stored in float16 loads back as float32 and gives the mean of its members'
    /// probabilities, to float16's precision, from a file about half the float32 one's size.
    #[test]
    fn a_float16_ensemble_loads_as_float32_and_averages_its_members() {
        use crate::models::model::{Ensemble, EnsembleSpec};
        use crate::run::to_dtype;
        use burn::module::Module;
        let device = Device::flex();
        device.seed(3);
        let member = crate::models::resolve("cnn3").unwrap();
        let (a, b) = (member.build(&device).unwrap(), member.build(&device).unwrap());
        let images = crate::kernels::tests::random_input([3, 1, 48, 48], &device, 3);
        let softmax = |m: &Model| burn::tensor::activation::softmax(m.forward(images.clone()), 1);
        let mean = (softmax(&a) + softmax(&b)).div_scalar(2.0).into_data().try_to_vec::<f32>().unwrap();

        let spec = ModelSpec::Ensemble(EnsembleSpec { name: "two".into(), members: vec![member.clone(), member] });
        let dir = tempfile::tempdir().unwrap();
        let (half, full) = (dir.path().join("half.bpk"), dir.path().join("full.bpk"));
        let ensemble = Model::Ensemble(Ensemble { members: vec![a, b] });
        to_dtype(ensemble.clone(), burn::tensor::FloatDType::F16).save_file(&half).unwrap();
        ensemble.save_file(&full).unwrap();
        let (half_size, full_size) = (std::fs::metadata(&half).unwrap().len(), std::fs::metadata(&full).unwrap().len());
        assert!(half_size * 10 < full_size * 6, "{half_size} vs {full_size} bytes");

        let loaded = load_weights(spec.build(&device).unwrap(), std::fs::read(&half).unwrap(), &half).unwrap();
        let Model::Ensemble(e) = &loaded else { panic!("an ensemble") };
        let Model::Layers(net) = &e.members[0] else { panic!("layer nets") };
        let Layer::Conv(conv) = &net.layers[0] else { panic!("cnn3 starts with a convolution") };
        assert_eq!(conv.conv.weight.val().dtype(), burn::tensor::DType::F32);
        let got = burn::tensor::activation::softmax(loaded.forward(images.clone()), 1)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let worst = got.iter().zip(&mean).map(|(g, m)| (g - m).abs()).fold(0.0, f32::max);
        assert!(worst < 5e-3, "largest difference from the mean probabilities: {worst}");
        // The members differ, so an ensemble that read one member only would fail above.
        let first = softmax(&e.members[0]).into_data().try_to_vec::<f32>().unwrap();
        assert!(first.iter().zip(&mean).any(|(f, m)| (f - m).abs() > 1e-3));
    }

    #[test]
    fn the_shipped_model_loads_and_gives_probabilities() {
        let model = TrainedModel::load(&ModelSource::Shipped).unwrap();
        assert_eq!(model.spec.name(), shipped_file().unwrap().model.name());
        let image = Tensor::<4>::zeros([2, 1, 48, 48], &model.device);
        let out = model.net.forward(image);
        assert_eq!(out.dims(), [2, 7]);
    }

    /// A model file's `tta` is the default every front reads faces with; without one, the face
    /// as it is. It survives a write and a read of the TOML.
    #[test]
    fn a_model_file_names_the_views_it_is_read_with() {
        let dir = tempfile::tempdir().unwrap();
        let bpk = dir.path().join("m.bpk");
        std::fs::write(&bpk, SHIPPED_WEIGHTS).unwrap();
        let mut file = shipped_file().unwrap();
        for tta in [Tta::Hflip, Tta::None, Tta::TenCrop] {
            file.tta = tta;
            let text = toml::to_string(&file).unwrap();
            assert_eq!(text.contains("tta ="), tta != Tta::None, "{text}");
            std::fs::write(bpk.with_extension("toml"), text).unwrap();
            let model = TrainedModel::load(&ModelSource::File(bpk.clone())).unwrap();
            assert_eq!(model.tta, tta);
            let classifier = crate::prediction::EmotionClassifier::load(&ModelSource::File(bpk.clone())).unwrap();
            assert_eq!(classifier.tta, tta);
        }
        file.tta = Tta::None;
        let plain = toml::to_string(&file).unwrap();
        let err = toml::from_str::<ModelFile>(&format!("tta = \"sideways\"\n{plain}")).unwrap_err();
        assert!(err.to_string().contains("sideways"), "{err}");
    }

    #[test]
    fn a_model_argument_is_a_run_a_file_or_an_error_naming_it() {
        assert_eq!(ModelSource::from_arg(None).unwrap(), ModelSource::Shipped);
        let dir = tempfile::tempdir().unwrap();
        let err = ModelSource::from_arg(Some(&dir.path().join("nope"))).unwrap_err().to_string();
        assert!(err.contains("nope") && err.contains("no such run directory or model file"), "{err}");
        let err = format!("{:#}", ModelSource::from_arg(Some(dir.path())).unwrap_err());
        assert!(err.contains("not a ferkit run directory"), "{err}");
        let bpk = dir.path().join("m.bpk");
        std::fs::write(&bpk, b"not weights").unwrap();
        let source = ModelSource::from_arg(Some(&bpk)).unwrap();
        let err = format!("{:#}", TrainedModel::load(&source).err().unwrap());
        assert!(err.contains("m.toml"), "{err}");
        std::fs::write(bpk.with_extension("toml"), SHIPPED_TOML).unwrap();
        let err = format!("{:#}", TrainedModel::load(&source).err().unwrap());
        assert!(err.contains("m.bpk") && err.contains("not a burnpack"), "{err}");
    }
}
