//! `ferkit export --format onnx|safetensors` against ONNX Runtime and PyTorch, on real faces.
//!
//! Nets covering every exported operator: the shipped model's nets (one file per net with
//! `--member` when it is an ensemble: vgg-lite's "same" convolutions, batch norm, pooling,
//! dropout, dense; EfficientNet-Lite0 fine-tuned at 96x96), cnn1 (an 11x11 stride-4 "same" convolution, "same" pooling),
//! resnet-lite (residual blocks with projections, global average pooling), EfficientNet-Lite0 at
//! 64x64 with its ImageNet weights (depthwise convolutions, ReLU6, the bilinear resize, the
//! ImageNet normalisation), each trained one short epoch so batch-norm statistics are not the
//! initial ones, and an ensemble of two. ferkit scores 256 PrivateTest faces
//! (`EmotionClassifier::classify`, the prediction pipeline's net step); tests/fixtures/check_export.py
//! runs the ONNX files in ONNX Runtime (whole batch and batch 1) and loads the safetensors files
//! strictly into the nets `bench/pytorch_reference.py` builds. Needs FER2013 in ../shared and a
//! Python (`$FERKIT_PYTHON`, else `python3`) with numpy, onnxruntime, torch, safetensors and
//! efficientnet_lite_pytorch (`.ci/run` installs them); skips saying so without them (a failure
//! in CI).

use std::path::{Path, PathBuf};
use std::process::Command;

use ferkit::prediction::EmotionClassifier;
use ferkit::trained::ModelSource;

mod common;

const FACES: usize = 256;
/// The largest |probability - ferkit's| accepted (the bound).
const TOLERANCE: f64 = 1e-4;

fn python() -> Result<String, String> {
    let python = std::env::var("FERKIT_PYTHON").unwrap_or_else(|_| "python3".into());
    let modules = "import numpy, onnxruntime, torch, safetensors, efficientnet_lite_pytorch";
    let ok = Command::new(&python).args(["-c", modules]).output().map(|o| o.status.success());
    if matches!(ok, Ok(true)) {
        Ok(python)
    } else {
        Err(format!(
            "{python} lacks one of numpy, onnxruntime, torch, safetensors, efficientnet_lite_pytorch \
             (pip install them, or set FERKIT_PYTHON)"
        ))
    }
}

fn run_ok(args: &[&str]) {
    let out = common::ferkit(args);
    assert!(out.status.success(), "ferkit {args:?} failed: {}", common::stderr(&out));
}

/// Trains `model` one epoch on 512 training faces into `dir/name` (extra flags after).
fn train(data: &Path, dir: &Path, name: &str, model: &str, extra: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let mut args = vec!["train", model, "--data", data.to_str().unwrap(), "--epochs", "1", "--subset", "512"];
    args.extend(["--batch", "64", "--seed", "5", "--out", out.to_str().unwrap()]);
    args.extend(extra);
    run_ok(&args);
    out
}

#[test]
fn exported_onnx_and_safetensors_give_ferkits_probabilities_in_onnx_runtime_and_pytorch() {
    let Some(data) = common::shared_fer2013() else {
        common::skip("../shared/data/fer2013/fer2013.csv.gz is absent (real faces for the export check)");
        return;
    };
    let weights = common::shared("models/efficientnet-lite0-57934424.pth");
    let python = match (python(), &weights) {
        (Ok(p), Some(_)) => p,
        (Err(why), _) => return common::skip(&why),
        (_, None) => return common::skip("../shared/models/efficientnet-lite0-57934424.pth is absent"),
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (dataset, _) = ferkit::data::DataSource::from_path(&data).load(Default::default()).unwrap();
    let faces: Vec<Vec<u8>> = (0..FACES).map(|i| dataset.test.image(i).to_vec()).collect();
    std::fs::write(d.join("faces.u8"), faces.concat()).unwrap();

    let shipped = common::repo_root().join("models/ferkit-fer2013.bpk");
    let cnn1 = train(&data, d, "cnn1", "cnn1", &[]);
    let resnet = train(&data, d, "resnet", "resnet-lite", &[]);
    let lite0 = train(
        &data,
        d,
        "lite0",
        "efficientnet-lite0",
        &["--weights", weights.as_ref().unwrap().to_str().unwrap(), "--input-size", "64", "--head", "32"],
    );
    let ensemble = d.join("ensemble.bpk");
    run_ok(&["export", cnn1.to_str().unwrap(), resnet.to_str().unwrap(), "--out", ensemble.to_str().unwrap()]);

    // The PyTorch net `bench/pytorch_reference.py` builds for a source's net.
    let torch_net = |name: &str, source: &Path| match ferkit::trained::TrainedModel::load(
        &ModelSource::from_arg(Some(source)).unwrap(),
    )
    .unwrap()
    .spec
    {
        ferkit::models::ModelSpec::Layers(net) => {
            let path = d.join(format!("{name}.net.toml"));
            std::fs::write(&path, toml::to_string(&net).unwrap()).unwrap();
            serde_json::json!({"kind": "layers", "spec": path})
        }
        ferkit::models::ModelSpec::Transfer(t) => {
            assert_eq!(t.backbone.name(), "efficientnet-lite0", "{name}");
            assert_eq!(t.head.len(), 1, "{name}: one hidden dense layer, as TransferLite0 has");
            serde_json::json!({"kind": "efficientnet-lite0", "input_size": t.input_size, "head": t.head[0]})
        }
        other => panic!("{name}: not a single net: {other:?}"),
    };
    // The shipped model's nets, one file each (an ensemble of nets that read faces preprocessed
    // differently has no single ONNX graph).
    let mut shipped_nets = Vec::new();
    match ferkit::trained::shipped_file().unwrap().model {
        ferkit::models::ModelSpec::Ensemble(e) => {
            for i in 1..=e.members.len() {
                let file = d.join(format!("shipped-{i}.bpk"));
                let n = i.to_string();
                run_ok(&["export", shipped.to_str().unwrap(), "--member", &n, "--out", file.to_str().unwrap()]);
                shipped_nets.push((format!("shipped net {i}"), file));
            }
        }
        _ => shipped_nets.push(("shipped".to_string(), shipped.clone())),
    }
    // (name, source, PyTorch net for the safetensors file: None for the ensemble, which has none)
    let mut cases: Vec<(String, PathBuf, Option<serde_json::Value>)> = Vec::new();
    for (name, source) in shipped_nets.into_iter().chain([
        ("cnn1".to_string(), cnn1),
        ("resnet-lite".to_string(), resnet),
        ("efficientnet-lite0".to_string(), lite0),
    ]) {
        let torch = torch_net(&name, &source);
        cases.push((name, source, Some(torch)));
    }
    cases.push(("ensemble".to_string(), ensemble, None));
    let unit_range = |torch: &Option<serde_json::Value>| torch.as_ref().is_some_and(|t| t["kind"] != "layers");
    let mut models = Vec::new();
    for (name, source, torch) in &cases {
        let onnx = d.join(format!("{name}.onnx"));
        run_ok(&["export", source.to_str().unwrap(), "--out", onnx.to_str().unwrap()]);
        let safetensors = torch.as_ref().map(|_| {
            let file = d.join(format!("{name}.safetensors"));
            run_ok(&["export", source.to_str().unwrap(), "--format", "safetensors", "--out", file.to_str().unwrap()]);
            file
        });
        let mut classifier = EmotionClassifier::load(&ModelSource::from_arg(Some(source)).unwrap()).unwrap();
        // The net alone, as the ONNX graph holds it (the shipped model's file reads faces with
        // the mirror by default, and its nets' files keep that).
        classifier.tta = ferkit::evaluation::Tta::None;
        let probabilities = classifier.classify(&faces);
        let preprocess = if unit_range(torch) { "unit-range" } else { "per-image" };
        models.push(serde_json::json!({
            "name": name, "onnx": onnx, "safetensors": safetensors, "torch": torch,
            "preprocess": preprocess, "probabilities": probabilities,
        }));
    }
    let manifest = serde_json::json!({"faces": "faces.u8", "count": FACES, "models": models});
    std::fs::write(d.join("manifest.json"), manifest.to_string()).unwrap();

    let script = common::repo_root().join("tests/fixtures/check_export.py");
    let out = Command::new(&python).arg(script).arg(d).output().unwrap();
    assert!(out.status.success(), "check_export.py failed: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for (name, _, torch) in &cases {
        let row = &report[name];
        let onnx = row["onnx"].as_f64().unwrap();
        let batch1 = row["onnx_batch1"].as_f64().unwrap();
        let mut line = format!("export {name}: max |ONNX Runtime - ferkit| {onnx:.1e} (batch 1: {batch1:.1e})");
        assert!(onnx <= TOLERANCE && batch1 <= TOLERANCE, "{name}: {row}");
        assert!(row["metadata_preprocess"].as_str().unwrap().contains(if unit_range(torch) {
            "p / 255"
        } else {
            "per-image standardisation"
        }));
        if torch.is_some() {
            let torch = row["torch"].as_f64().unwrap();
            line += &format!(", max |PyTorch (safetensors) - ferkit| {torch:.1e}");
            assert!(torch <= TOLERANCE, "{name}: {row}");
        }
        common::figure(&format!("{line} over {FACES} PrivateTest faces"));
    }
}

#[test]
fn export_errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = common::repo_root().join("models/ferkit-fer2013.bpk");
    let out =
        common::ferkit(&["export", shipped.to_str().unwrap(), "--out", dir.path().join("m.txt").to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(common::stderr(&out).contains("--format"), "{}", common::stderr(&out));
    let onnx = dir.path().join("m.onnx");
    let out = common::ferkit(&[
        "export",
        shipped.to_str().unwrap(),
        "--format",
        "safetensors",
        "--out",
        onnx.to_str().unwrap(),
    ]);
    assert!(!out.status.success() && common::stderr(&out).contains("must end in .safetensors"));
    let out = common::ferkit(&["export", shipped.to_str().unwrap(), "--half", "--out", onnx.to_str().unwrap()]);
    assert!(!out.status.success() && common::stderr(&out).contains("--half"));
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "nothing written");
    let out = common::ferkit(&["export", dir.path().join("nope").to_str().unwrap(), "--out", onnx.to_str().unwrap()]);
    assert!(!out.status.success() && common::stderr(&out).contains("nope"));
}

/// `--int8` stores a vgg-lite net (trained here for 3 epochs on 2,048 faces: the shipped model's
/// own nets are stored in int8 already) in under a third of its float32 size (about 30%), and
/// the loaded net (float32 again) gives nearly the same probabilities on 512 real faces (Training
/// split): within 0.05 of the float32 net's, the same top class on at least 98% of faces.
/// `--half` for comparison.
#[test]
fn int8_model_files_are_under_a_third_of_the_size_and_agree_with_the_float32_net() {
    let Some(data) = common::shared_fer2013() else {
        return common::skip("../shared/data/fer2013/fer2013.csv.gz is absent (real faces for the int8 check)");
    };
    let (dataset, _) = ferkit::data::DataSource::from_path(&data).load(Default::default()).unwrap();
    let faces: Vec<Vec<u8>> = (0..512).map(|i| dataset.train.image(i).to_vec()).collect();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("vgg-lite");
    let args = ["train", "vgg-lite", "--data", data.to_str().unwrap(), "--epochs", "3", "--subset", "2048"];
    run_ok(&[&args[..], &["--batch", "64", "--seed", "3", "--out", run.to_str().unwrap()]].concat());
    let float32 = dir.path().join("float32.bpk");
    run_ok(&["export", run.to_str().unwrap(), "--out", float32.to_str().unwrap()]);
    let classify = |source: &Path| {
        let classifier = EmotionClassifier::load(&ModelSource::from_arg(Some(source)).unwrap()).unwrap();
        classifier.classify(&faces)
    };
    let full = classify(&float32);
    let full_size = std::fs::metadata(&float32).unwrap().len();
    let top = |p: &[f32]| (0..p.len()).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap();
    for (flag, max_share) in [("--half", 0.51), ("--int8", 0.32)] {
        let out = dir.path().join(format!("m{flag}.bpk"));
        run_ok(&["export", float32.to_str().unwrap(), flag, "--out", out.to_str().unwrap()]);
        let share = std::fs::metadata(&out).unwrap().len() as f64 / full_size as f64;
        assert!(share < max_share, "{flag}: {share:.3} of the float32 file's size");
        let got = classify(&out);
        let worst = got.iter().flatten().zip(full.iter().flatten()).map(|(g, f)| (g - f).abs()).fold(0.0, f32::max);
        let same = got.iter().zip(&full).filter(|(g, f)| top(&g[..]) == top(&f[..])).count();
        common::figure(&format!(
            "export {flag}: {:.1}% of the float32 size, max |p - float32's| {worst:.1e}, same top class on {same} of 512 faces",
            share * 100.0
        ));
        assert!(worst < 0.05, "{flag}: probabilities differ by up to {worst}");
        assert!(same * 100 >= 512 * 98, "{flag}: the same top class on only {same} of 512 faces");
        assert!(worst > 0.0, "{flag}: the stored net should differ from float32 at least a little");
    }
}
