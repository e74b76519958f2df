//! The model registry: preset nets (the TOML files in `experiments/`, embedded at build time),
//! the transfer-learning preset, and nets from any TOML file, looked up by one name.

use std::path::Path;

use anyhow::{Result, bail};

use super::model::ModelSpec;
use super::spec::NetSpec;
use super::transfer::{BackboneKind, TransferSpec};

/// The transfer-learning preset `reproduce` runs (EfficientNet-Lite0 backbone, the notebook's
/// head): its ImageNet weights are in ../shared.
pub const TRANSFER_PRESET: &str = BackboneKind::EfficientNetLite0.name();

/// Transfer-learning presets by name: one per backbone, named as it.
fn transfer_preset(name: &str) -> Option<TransferSpec> {
    BackboneKind::ALL.into_iter().find(|kind| kind.name() == name).map(TransferSpec::preset)
}

/// Preset names and their TOML, in the order the notebook introduced them.
pub const PRESETS: [(&str, &str); 7] = [
    ("fnn1", include_str!("../../experiments/fnn1.toml")),
    ("fnn2", include_str!("../../experiments/fnn2.toml")),
    ("fnn3", include_str!("../../experiments/fnn3.toml")),
    ("cnn1", include_str!("../../experiments/cnn1.toml")),
    ("cnn2", include_str!("../../experiments/cnn2.toml")),
    ("cnn3", include_str!("../../experiments/cnn3.toml")),
    ("vgg-lite", include_str!("../../experiments/vgg-lite.toml")),
];

pub fn preset_names() -> Vec<&'static str> {
    PRESETS.iter().map(|(name, _)| *name).chain(BackboneKind::ALL.map(BackboneKind::name)).collect()
}

/// Any model by name: a layer-list preset or TOML file, or the transfer preset.
pub fn resolve(name: &str) -> Result<ModelSpec> {
    if let Some(spec) = transfer_preset(name) {
        return Ok(ModelSpec::Transfer(spec));
    }
    resolve_net(name).map(ModelSpec::Layers)
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
    bail!("`{name}` is neither a preset ({}) nor a net TOML file", preset_names().join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The notebook's Keras parameter counts (trainable + non-trainable).
    #[test]
    fn presets_have_the_notebooks_parameter_counts() {
        let expected = [
            ("fnn1", 305_607, 0),
            ("fnn2", 606_983, 0),
            ("fnn3", 1_213_447, 0),
            ("cnn1", 19_798_723, 11_678),
            ("cnn2", 2_000_399, 0),
            ("cnn3", 615_159, 0),
        ];
        for (name, total, non_trainable) in expected {
            let (t, nt) = resolve_net(name).unwrap().param_counts().unwrap();
            assert_eq!((t + nt, nt), (total, non_trainable), "{name}");
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
