//! `ferkit export`: a trained net (a run directory, a model file, or several for their ensemble)
//! written for other tools: ferkit's own model file (burnpack + TOML, for `--model`), ONNX (for
//! ONNX Runtime and other runtimes) or safetensors under PyTorch's names.

pub mod onnx;
mod onnx_proto;
pub mod safetensors;

use std::path::{Path, PathBuf};

use crate::error::{Context, Result, bail};
use crate::models::model::{Ensemble, EnsembleSpec};
use crate::models::{Model, ModelSpec};
use crate::trained::{ModelFile, ModelSource, TrainedModel};
use crate::util::choice::Choice;
use burn::prelude::*;

/// The file format `ferkit export` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// `NAME.bpk` (burnpack weights) with `NAME.toml` (the spec) beside it: a model file for
    /// `--model`.
    Burnpack,
    /// One `.onnx` file (see [`onnx`]).
    Onnx,
    /// One `.safetensors` file of the weights under PyTorch's names (see [`safetensors`]).
    Safetensors,
}

impl Choice for ExportFormat {
    const CHOICES: &'static [(&'static str, Self, &'static str)] = &[
        ("bpk", ExportFormat::Burnpack, "a ferkit model file, NAME.bpk with NAME.toml beside it (for --model)"),
        ("onnx", ExportFormat::Onnx, "ONNX (IR 8, opset 18, free batch dimension), for ONNX Runtime"),
        (
            "safetensors",
            ExportFormat::Safetensors,
            "the weights under PyTorch's names (bench/pytorch_reference.py's nets)",
        ),
    ];
}

impl ExportFormat {
    /// The format an output name's extension implies (`.bpk`, `.onnx`, `.safetensors`).
    pub fn from_path(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()? {
            "bpk" => Some(ExportFormat::Burnpack),
            "onnx" => Some(ExportFormat::Onnx),
            "safetensors" => Some(ExportFormat::Safetensors),
            _ => None,
        }
    }
}

/// What to write and how.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    pub format: ExportFormat,
    /// The model's name (in the TOML, the ONNX graph and metadata).
    pub name: String,
    /// One line saying what the model is.
    pub description: String,
    /// Burnpack only: how the weights are stored (loading converts them back to float32).
    pub precision: StoredPrecision,
    /// Burnpack only: the views the model is read with by default ([`ModelFile::tta`]); `None`:
    /// the sources' own when they all agree (a model file re-exported keeps its `tta`), else plain.
    pub tta: Option<crate::evaluation::Tta>,
    /// Write only this net (1-based) of the ensemble the sources make (`--member`), e.g. one
    /// net of the shipped ensemble for an ONNX file.
    pub member: Option<usize>,
}

/// How `ferkit export` stores a model file's weights. Nets always compute in float32: loading
/// converts (see [`crate::models::dtype`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StoredPrecision {
    /// As trained (4 bytes a value).
    #[default]
    Float32,
    /// Every tensor in float16 (`--half`: half the size).
    Float16,
    /// Weight matrices and kernels as 8-bit integers with a float32 scale per block of up to 32
    /// values, the rest in float16 (`--int8`: about 30% of the size); see
    /// [`crate::models::dtype::to_int8_weights`].
    Int8,
}

/// Loads `sources` (run directories written by `ferkit train`, or `NAME.bpk` model files) as one
/// net, or as the ensemble of several (the mean of their class probabilities), float32. A source
/// that is an ensemble file adds its nets. Also the views the sources are read with by default
/// when they all agree ([`TrainedModel::tta`]), else none.
///
/// Errors: no source, a source that does not load, members that do not fit together.
pub fn load_sources(sources: &[PathBuf], name: &str) -> Result<(ModelSpec, Model, crate::evaluation::Tta)> {
    let mut specs = Vec::new();
    let mut nets = Vec::new();
    let mut ttas = Vec::new();
    for path in sources {
        let model = TrainedModel::load(&ModelSource::from_arg(Some(path))?)?;
        ttas.push(model.tta);
        match (model.spec.without_pretrained(), model.net) {
            // An ensemble file joins with its own nets (ensembles do not nest).
            (ModelSpec::Ensemble(s), Model::Ensemble(e)) => {
                specs.extend(s.members);
                nets.extend(e.members);
            }
            (spec, net) => {
                specs.push(spec);
                nets.push(net);
            }
        }
    }
    let tta = if ttas.windows(2).all(|w| w[0] == w[1]) {
        ttas.first().copied().unwrap_or_default()
    } else {
        Default::default()
    };
    match specs.len() {
        0 => bail!(BadInput, "export needs at least one run directory or model file"),
        1 => Ok((specs.remove(0), nets.remove(0), tta)),
        _ => {
            let spec = ModelSpec::Ensemble(EnsembleSpec { name: name.to_string(), members: specs });
            spec.check()?;
            Ok((spec, Model::Ensemble(Ensemble { members: nets }), tta))
        }
    }
}

/// Net `i` (1-based) of an ensemble. Errors: a single net, `i` out of range.
fn one_member(spec: ModelSpec, net: Model, i: usize) -> Result<(ModelSpec, Model)> {
    match (spec, net) {
        (ModelSpec::Ensemble(s), Model::Ensemble(e)) if (1..=s.members.len()).contains(&i) => Ok((
            s.members.into_iter().nth(i - 1).expect("in range"),
            e.members.into_iter().nth(i - 1).expect("in range"),
        )),
        (ModelSpec::Ensemble(s), _) => {
            bail!(BadInput, "--member {i}: the ensemble `{}` has nets 1 to {}", s.name, s.members.len())
        }
        (spec, _) => bail!(BadInput, "--member {i}: `{}` is a single net, not an ensemble", spec.name()),
    }
}

/// Writes `sources`' net to `out` in `options.format` (each file written to a temporary name
/// and renamed into place). Burnpack also writes `out` with `.toml`.
///
/// Errors: an output name whose extension does not fit the format, a source that does not load,
/// a net the format cannot express (see [`onnx::to_onnx`], [`safetensors::to_safetensors`]), an
/// unwritable output.
pub fn export(sources: &[PathBuf], out: &Path, options: &ExportOptions) -> Result<()> {
    let expected = options.format.name();
    if ExportFormat::from_path(out) != Some(options.format) {
        bail!(BadInput, "{}: a {} file's name must end in .{}", out.display(), expected, expected);
    }
    if options.precision != StoredPrecision::Float32 && options.format != ExportFormat::Burnpack {
        bail!(BadInput, "--half and --int8 apply to bpk model files only");
    }
    if options.tta.is_some_and(|t| t != crate::evaluation::Tta::None) && options.format != ExportFormat::Burnpack {
        bail!(BadInput, "--tta applies to bpk model files only (an ONNX or safetensors file holds the net alone)");
    }
    let (spec, net, sources_tta) = load_sources(sources, &options.name)?;
    let (spec, net) = match options.member {
        None => (spec, net),
        Some(i) => one_member(spec, net, i)?,
    };
    if options.format != ExportFormat::Burnpack && !spec.reads_one_preprocessing() {
        // The ONNX graph and the safetensors metadata describe one input preprocessing.
        bail!(
            BadInput,
            "{}: the ensemble's nets read faces preprocessed differently (layer-list and transfer nets); \
             the {} format holds one input preprocessing: write one net with --member N, or export to .bpk",
            out.display(),
            expected
        );
    }
    let sources_note = sources.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
    let metadata = vec![
        ("ferkit.name".to_string(), options.name.clone()),
        ("ferkit.description".to_string(), options.description.clone()),
        ("ferkit.exported_from".to_string(), sources_note),
        ("ferkit.model".to_string(), toml::to_string(&spec)?),
    ];
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    }
    match options.format {
        ExportFormat::Burnpack => {
            let net = match options.precision {
                StoredPrecision::Float32 => net,
                StoredPrecision::Float16 => crate::run::to_dtype(net, burn::tensor::FloatDType::F16),
                StoredPrecision::Int8 => crate::models::dtype::to_int8_weights(net),
            };
            let file = ModelFile {
                name: options.name.clone(),
                description: options.description.clone(),
                accuracy: Default::default(),
                tta: options.tta.unwrap_or(sources_tta),
                model: spec,
            };
            crate::util::atomic::write_atomic_with(out, |tmp| {
                net.save_file(tmp).map_err(|e| crate::err!(Io, "{}: cannot save weights: {e}", tmp.display()))
            })?;
            crate::util::atomic::write_atomic(&out.with_extension("toml"), toml::to_string(&file)?)?;
        }
        ExportFormat::Onnx => {
            let bytes = onnx::to_onnx(&net, spec.preprocess(), &options.name, &metadata)?;
            crate::util::atomic::write_atomic(out, bytes)?;
        }
        ExportFormat::Safetensors => {
            let mut metadata = metadata;
            metadata.push(("ferkit.preprocess".to_string(), onnx::preprocess_note(spec.preprocess()).to_string()));
            metadata.push(("format".to_string(), "pt".to_string()));
            let bytes = safetensors::to_safetensors(&net, &spec, &metadata)?;
            crate::util::atomic::write_atomic(out, bytes)?;
        }
    }
    Ok(())
}
