//! VGG16 from a torchvision-layout state dict: tests/fixtures/make_vgg16_state_dict.py writes
//! one (every name and shape of `torchvision.models.vgg16()`) with PyTorch's features for a
//! fixed input; ferkit must load it strictly and compute the same features. Needs a Python with
//! torch (`pip install torch`): `$FERKIT_PYTHON`, else `python3` (`.ci/run` installs torch into
//! a virtual environment and names it); skips with a message without it (a failure in CI).

use std::path::Path;
use std::process::Command;

use burn::prelude::*;
use ferkit::models::vgg16::Vgg16;

mod common;

/// Runs the fixture script into `dir`, or says why not.
fn write_state_dict(dir: &Path) -> Result<(), String> {
    let python = std::env::var("FERKIT_PYTHON").unwrap_or_else(|_| "python3".into());
    let has_torch = Command::new(&python).args(["-c", "import torch"]).output().map(|o| o.status.success());
    if !matches!(has_torch, Ok(true)) {
        return Err(format!("{python} with torch is not available (pip install torch, or set FERKIT_PYTHON)"));
    }
    let script = common::repo_root().join("tests/fixtures/make_vgg16_state_dict.py");
    let out = Command::new(&python).arg(script).arg(dir).output().map_err(|e| e.to_string())?;
    assert!(out.status.success(), "the fixture script failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

#[test]
fn torchvision_vgg16_loads_and_gives_pytorchs_features() {
    let dir = tempfile::tempdir().unwrap();
    if let Err(why) = write_state_dict(dir.path()) {
        common::skip(&why);
        return;
    }
    let weights = dir.path().join("vgg16.pth");
    let device = Device::flex();
    let net = Vgg16::from_pytorch(&weights, &device).expect("the state dict loads");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("reference.json")).unwrap()).unwrap();
    let worst = common::max_abs_difference(net.features(common::fixed_rgb_input(2, 48, &device)), &doc["features"]);
    let rows = doc["features"].as_array().unwrap().iter().flat_map(|row| row.as_array().unwrap());
    let scale = rows.fold(1e-6f64, |m, v| m.max(v.as_f64().unwrap().abs()));
    common::figure(&format!(
        "max |ferkit - pytorch| over 2 x 512 features = {worst:.2e} (largest feature {scale:.2e})"
    ));
    // About ten times the difference measured (session 10, PyTorch 2.15.0): 4.8e-7.
    assert!(worst <= 5e-6 * scale.max(1.0), "max abs difference {worst}");

    // The command line confirms the load, and the transfer net trains from it.
    let out = common::ferkit(&["summary", "vgg16", "--weights", weights.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("every tensor found and used"), "{text}");
    assert!(text.contains("block 4 (3 x Conv2D 3x3, ReLU, MaxPool 2, frozen)"), "{text}");
    assert!(text.contains("block 5 (3 x Conv2D 3x3, ReLU, MaxPool 2)"), "{text}");
}

#[test]
fn other_weights_are_refused_naming_the_file() {
    let shared = common::repo_root().join("../shared/models/efficientnet-lite0-57934424.pth");
    if !shared.exists() {
        common::skip(&format!("{} is absent", shared.display()));
        return;
    }
    let err = Vgg16::from_pytorch(&shared, &Device::flex()).err().expect("EfficientNet weights are not VGG16's");
    let text = format!("{err:#}");
    assert!(text.contains("efficientnet-lite0-57934424.pth") && text.contains("VGG16"), "{text}");
}

#[test]
fn frozen_vgg16_blocks_need_no_gradient() {
    use ferkit::models::transfer::{Backbone, TransferNet, TransferSpec};
    let device = Device::flex().autodiff();
    let spec = TransferSpec { head: vec![8], ..TransferSpec::vgg16() };
    let net = TransferNet::new(&spec, &device).unwrap();
    let Backbone::Vgg16(vgg) = &net.backbone else { panic!("the spec names VGG16") };
    // The notebook's recipe: blocks 1-4 frozen, block 5 and the head trained.
    assert!(!vgg.blocks[3].convs[2].weight.val().is_require_grad());
    assert!(vgg.blocks[4].convs[0].weight.val().is_require_grad());
    let logits = net.forward(Tensor::zeros([2, 1, 48, 48], &device));
    assert_eq!(logits.dims(), [2, 7]);
}
