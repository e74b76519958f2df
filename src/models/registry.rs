//! The model registry: preset nets (the TOML files in `experiments/`, embedded at build time),
//! the transfer-learning presets, and nets from any TOML file (a layer list, or a transfer net
//! with `type = "transfer"`, as in the `[model]` table of a run's `config.toml`), looked up by one
//! name; a preset's name always means the preset.

use std::path::Path;

use crate::error::{Context, Result, bail};

use super::model::ModelSpec;
use super::spec::NetSpec;
use super::transfer::{BackboneKind, TransferSpec};
use crate::data::batch::Preprocess;

/// The transfer-learning preset `reproduce` runs (EfficientNet-Lite0 backbone, the notebook's
/// head): its ImageNet weights are in ../shared.
pub const TRANSFER_PRESET: &str = BackboneKind::EfficientNetLite0.name();

/// Transfer-learning presets by name: one per backbone, named as it.
fn transfer_preset(name: &str) -> Option<TransferSpec> {
    BackboneKind::ALL.into_iter().find(|kind| kind.name() == name).map(TransferSpec::preset)
}

/// Preset names and their TOML, in the order the notebook introduced them.
pub const PRESETS: [(&str, &str); 9] = [
    ("fnn1", include_str!("../../experiments/fnn1.toml")),
    ("fnn2", include_str!("../../experiments/fnn2.toml")),
    ("fnn3", include_str!("../../experiments/fnn3.toml")),
    ("cnn1", include_str!("../../experiments/cnn1.toml")),
    ("cnn2", include_str!("../../experiments/cnn2.toml")),
    ("cnn3", include_str!("../../experiments/cnn3.toml")),
    ("vgg-lite", include_str!("../../experiments/vgg-lite.toml")),
    ("vgg-wide", include_str!("../../experiments/vgg-wide.toml")),
    ("resnet-lite", include_str!("../../experiments/resnet-lite.toml")),
];

pub fn preset_names() -> Vec<&'static str> {
    PRESETS.iter().map(|(name, _)| *name).chain(BackboneKind::ALL.map(BackboneKind::name)).collect()
}

/// One registry entry: a preset and what a user (or a front) needs to know to use it.
#[derive(Clone, Debug)]
pub struct RegistryEntry {
    pub name: &'static str,
    /// `layers` (a net from the TOML vocabulary, trained from scratch) or `transfer` (an
    /// ImageNet backbone with a new head).
    pub kind: &'static str,
    /// One line saying what the net is.
    pub description: String,
    /// How faces become its inputs (per-image standardisation, or grey / 255).
    pub preprocess: Preprocess,
    /// Its default learning rate (Adam's, the schedule's peak).
    pub learning_rate: f64,
    /// Trainable and non-trainable parameters (as Keras counts them).
    pub params: (usize, usize),
    /// Pretrained weights it starts from, if any: what they are and where ferkit looks for them
    /// (never bundled; `--weights` names the file).
    pub weights: Option<&'static str>,
    /// The spec itself (transfer presets without weights).
    pub spec: ModelSpec,
}

/// Every preset, in the order of [`preset_names`], with its metadata.
pub fn registry() -> Result<Vec<RegistryEntry>> {
    preset_names().into_iter().map(entry).collect()
}

/// The registry entry of preset `name`. Errors: not a preset (the message lists them).
pub fn entry(name: &str) -> Result<RegistryEntry> {
    let name = preset_names()
        .into_iter()
        .find(|n| *n == name)
        .ok_or_else(|| crate::err!(Model, "`{name}` is not a preset ({})", preset_names().join(", ")))?;
    let spec = resolve(name)?;
    let (kind, description, weights) = match &spec {
        ModelSpec::Layers(s) => ("layers", s.description.clone(), None),
        ModelSpec::Transfer(s) => (
            "transfer",
            format!("Transfer learning: ImageNet {} backbone, {} blocks frozen, new head", s.backbone, s.frozen_blocks),
            Some(match s.backbone {
                BackboneKind::EfficientNetLite0 => {
                    "ImageNet EfficientNet-Lite0 (.pth, e.g. ../shared/models/efficientnet-lite0-57934424.pth)"
                }
                BackboneKind::Vgg16 => "ImageNet VGG16 (a torchvision .pth)",
            }),
        ),
        ModelSpec::Ensemble(_) => unreachable!("no preset is an ensemble"),
    };
    Ok(RegistryEntry {
        name,
        kind,
        description,
        preprocess: spec.preprocess(),
        learning_rate: spec.learning_rate(),
        params: spec.param_counts()?,
        weights,
        spec,
    })
}

/// Any model by name: a layer-list preset or TOML file, or the transfer preset.
pub fn resolve(name: &str) -> Result<ModelSpec> {
    if let Some(spec) = transfer_preset(name) {
        return Ok(ModelSpec::Transfer(spec));
    }
    if !PRESETS.iter().any(|(preset, _)| *preset == name)
        && let Some(spec) = transfer_file(Path::new(name))?
    {
        return Ok(ModelSpec::Transfer(spec));
    }
    resolve_net(name).map(ModelSpec::Layers)
}

/// The transfer net a TOML file describes when its top-level `type` is `"transfer"` (as the
/// `[model]` table of a run's `config.toml` holds it, e.g. EfficientNet-Lite0 at 96 px); `None`
/// for anything else (a file that cannot be read or parsed, another `type`), which
/// [`resolve_net`] reads as a layer list and names what is wrong with.
fn transfer_file(path: &Path) -> Result<Option<TransferSpec>> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(None) };
    let Ok(table) = text.parse::<toml::Table>() else { return Ok(None) };
    if table.get("type").and_then(|t| t.as_str()) != Some("transfer") {
        return Ok(None);
    }
    match toml::from_str::<ModelSpec>(&text) {
        Ok(ModelSpec::Transfer(spec)) => {
            spec.check().with_context(|| format!("{}: transfer net `{}`", path.display(), spec.name))?;
            Ok(Some(spec))
        }
        Ok(_) => unreachable!("the type is \"transfer\""),
        Err(e) => Err(e).with_context(|| format!("{}: not a valid transfer net file", path.display())),
    }
}

/// A layer-list preset by name, or a net from a TOML file when `name` is a path to one.
pub fn resolve_net(name: &str) -> Result<NetSpec> {
    if let Some((_, text)) = PRESETS.iter().find(|(preset, _)| *preset == name) {
        return NetSpec::from_toml(text, &format!("preset {name}"));
    }
    let path = Path::new(name);
    if path.exists() {
        return NetSpec::from_file(path);
    }
    bail!(Model, "`{name}` is neither a preset ({}) nor a net TOML file", preset_names().join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TOML file with `type = "transfer"` is a transfer net (here EfficientNet-Lite0 at 96 px);
    /// one with a misspelt key is refused naming the file and the key.
    #[test]
    fn transfer_nets_resolve_from_a_toml_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = TransferSpec::preset(BackboneKind::EfficientNetLite0);
        spec.name = "eff96".into();
        spec.input_size = 96;
        let path = dir.path().join("eff96.toml");
        std::fs::write(&path, toml::to_string(&ModelSpec::Transfer(spec.clone())).unwrap()).unwrap();
        assert_eq!(resolve(path.to_str().unwrap()).unwrap(), ModelSpec::Transfer(spec));
        let text = std::fs::read_to_string(&path).unwrap().replace("input_size", "input_sise");
        std::fs::write(&path, text).unwrap();
        let err = format!("{:#}", resolve(path.to_str().unwrap()).unwrap_err());
        assert!(err.contains("eff96.toml") && err.contains("input_sise"), "{err}");
    }

    #[test]
    fn presets_have_the_notebooks_parameter_counts() {
        let expected = [
            ("fnn1", 305_607, 0),
            ("fnn2", 606_983, 0),
            ("fnn3", 1_213_447, 0),
            ("cnn1", 19_798_723, 11_678),
            ("cnn2", 2_000_399, 0),
            ("cnn3", 615_159, 0),
            // ferkit's own presets, pinned to the figures the README publishes.
            ("vgg-lite", 1_767_399, 1_920),
            ("vgg-wide", 10_468_295, 3_840),
            ("resnet-lite", 2_763_719, 4_544),
        ];
        for (name, total, non_trainable) in expected {
            let (t, nt) = resolve_net(name).unwrap().param_counts().unwrap();
            assert_eq!((t + nt, nt), (total, non_trainable), "{name}");
        }
    }

    /// Every preset builds, reads two faces, and passes gradients back to every trainable tensor.
    #[test]
    fn every_registry_entry_builds_and_runs_forward_and_backward_on_two_faces() {
        use burn::module::{Module, ModuleVisitor, Param};
        use burn::prelude::*;
        struct GradCheck<'a> {
            grads: &'a burn::tensor::Gradients,
            missing: usize,
            total: usize,
        }
        impl ModuleVisitor for GradCheck<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                if param.is_require_grad() {
                    self.total += 1;
                    if param.val().grad(self.grads).is_none() {
                        self.missing += 1;
                    }
                }
            }
        }
        let device = Device::flex().autodiff();
        device.seed(7);
        let entries = registry().unwrap();
        assert_eq!(entries.len(), preset_names().len());
        for e in entries {
            let name = e.name;
            // The entry's metadata agrees with its spec.
            assert!(e.learning_rate > 0.0 && !e.description.is_empty(), "{name}");
            assert_eq!(e.weights.is_some(), e.kind == "transfer", "{name}");
            assert_eq!((e.learning_rate, e.preprocess), (e.spec.learning_rate(), e.spec.preprocess()), "{name}");
            let net = e.spec.without_pretrained().build(&device).unwrap();
            let images =
                Tensor::<4>::from_inner(crate::kernels::tests::random_input([2, 1, 48, 48], &Device::flex(), 7));
            let logits = net.forward(images);
            assert_eq!(logits.dims(), [2, 7], "{name}");
            let grads = logits.sum().backward();
            let mut check = GradCheck { grads: &grads, missing: 0, total: 0 };
            net.visit(&mut check);
            assert!(
                check.total > 0 && check.missing == 0,
                "{name}: {} of {} tensors got no gradient",
                check.missing,
                check.total
            );
        }
    }

    #[test]
    fn every_preset_is_named_as_its_file() {
        for (name, _) in PRESETS {
            assert_eq!(resolve_net(name).unwrap().name, name);
            assert_eq!(resolve(name).unwrap().name(), name);
        }
    }

    #[test]
    fn unknown_names_list_the_presets() {
        let err = resolve("resnet9000").unwrap_err().to_string();
        assert!(err.contains("cnn3") && err.contains("resnet9000"), "{err}");
    }
}
