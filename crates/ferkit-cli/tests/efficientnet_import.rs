//! Proof of a correct import: with the ImageNet weights from ../shared, ferkit's
//! EfficientNet-Lite0 gives the same 1000 logits as the PyTorch reference implementation on
//! fixed inputs (fixture written by tests/fixtures/make_efficientnet_reference.py).

use burn::prelude::*;
use ferkit::models::efficientnet::EfficientNetLite0;

#[test]
fn imagenet_logits_match_pytorch() {
    let weights = common::repo_root().join("../shared/models/efficientnet-lite0-57934424.pth");
    if !weights.exists() {
        common::skip(&format!("{} is absent", weights.display()));
        return;
    }
    let device = Device::flex();
    let net = EfficientNetLite0::from_pytorch(&weights, &device).expect("the weights load");
    let doc: serde_json::Value =
        serde_json::from_str(include_str!("../../../tests/fixtures/efficientnet_lite0_reference.json")).unwrap();
    for case in doc["cases"].as_array().unwrap() {
        let size = case["size"].as_u64().unwrap() as usize;
        let batch = case["batch"].as_u64().unwrap() as usize;
        let worst =
            common::max_abs_difference(net.forward(common::fixed_rgb_input(batch, size, &device)), &case["logits"]);
        common::figure(&format!("{size}x{size}: max |ferkit - pytorch| over {batch} x 1000 logits = {worst:.2e}"));
        // About ten times the largest difference measured (session 10): 2.0e-5 at 96x96, 6.9e-6 at 224x224.
        assert!(worst <= 2e-4, "{size}x{size}: max abs difference {worst}");
    }
}

#[test]
fn wrong_weights_are_refused_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not_weights.pth");
    std::fs::write(&path, b"not a pickle").unwrap();
    let err = EfficientNetLite0::from_pytorch(&path, &Device::flex()).err().expect("garbage is refused");
    assert!(format!("{err:#}").contains("not_weights.pth"), "{err:#}");
}

#[path = "common/mod.rs"]
mod common;

#[test]
fn transfer_net_trains_and_evaluates_from_the_command_line() {
    let weights = common::repo_root().join("../shared/models/efficientnet-lite0-57934424.pth");
    let dir = tempfile::tempdir().unwrap();
    let data = common::write(&dir.path().join("fer.csv"), common::synthetic_csv(21));
    let run = dir.path().join("run");
    let mut args = vec![
        "train",
        "efficientnet-lite0",
        "--data",
        data.to_str().unwrap(),
        "--epochs",
        "1",
        "--batch",
        "8",
        "--freeze",
        "14",
        "--head",
        "32",
        "--out",
        run.to_str().unwrap(),
    ];
    let weights_text = weights.to_str().unwrap().to_string();
    if weights.exists() {
        args.extend_from_slice(&["--weights", &weights_text]);
    } else {
        common::skip(&format!(
            "{} is absent: the frozen-blocks check trains from a random backbone",
            weights.display()
        ));
    }
    let out = common::ferkit(&args);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(config.contains("type = \"transfer\"") && config.contains("frozen_blocks = 14"), "{config}");
    let summary = std::fs::read_to_string(run.join("summary.txt")).unwrap();
    assert!(summary.contains("block 13 (MBConv, frozen)") && summary.contains("block 14 (MBConv)"), "{summary}");
    let out = common::ferkit(&["eval", run.to_str().unwrap(), "--split", "val"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    // Layer-list nets refuse the transfer options.
    let out = common::ferkit(&["train", "cnn3", "--data", data.to_str().unwrap(), "--freeze", "3"]);
    assert!(!out.status.success() && common::stderr(&out).contains("for transfer models"), "{}", common::stderr(&out));
}

#[test]
fn frozen_blocks_do_not_change_in_training() {
    use burn::module::Module;
    use ferkit::models::transfer::{TransferNet, TransferSpec};
    let device = Device::flex().autodiff();
    // A head of one linear layer and no dropout: the loss then reaches the backbone through every
    // pooled feature. With a hidden ReLU layer of 8 units and the preset's dropout of 0.5, a
    // random draw now and then left no unit both active and kept for either face (about 1 run in
    // 30), the backbone got no gradient and the test failed for a reason that is not the one it
    // checks. (The draw stays random: other tests of this binary draw from the same process-wide
    // generator at the same time, so seeding here would not fix it. With this head, 100 runs of
    // the test alone, unseeded, all passed.)
    let spec = TransferSpec {
        frozen_blocks: 2,
        head: vec![],
        dropout: 0.0,
        ..TransferSpec::efficientnet_lite0()
    };
    let net = TransferNet::new(&spec, &device).unwrap();
    let ferkit::models::transfer::Backbone::EfficientNetLite0(backbone) = &net.backbone else {
        panic!("the spec names EfficientNet-Lite0")
    };
    // Stem, blocks 0-1 frozen: their parameters need no gradient; block 2 and the head do.
    let needs_grad = |m: &ferkit::models::efficientnet::MbConv| m.depthwise_conv.weight.val().is_require_grad();
    assert!(!backbone.conv_stem.weight.val().is_require_grad());
    assert!(!needs_grad(&backbone.blocks[1]));
    assert!(needs_grad(&backbone.blocks[2]));
    assert!(net.output.weight.val().is_require_grad());
    let (trainable, non_trainable) = spec.param_counts().unwrap();
    assert_eq!(trainable + non_trainable, net.num_params());
    assert!(non_trainable > backbone.conv_stem.num_params());

    // One real optimizer step (the trainer's own): frozen weights and frozen batch-norm statistics
    // stay bit-identical; the first unfrozen block's weights and statistics move.
    let values = |t: Tensor<1>| t.inner().into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
    let snapshot = |net: &TransferNet| {
        let ferkit::models::transfer::Backbone::EfficientNetLite0(b) = &net.backbone else { unreachable!() };
        (
            values(b.conv_stem.weight.val().flatten(0, 3)),
            values(b.blocks[1].depthwise_conv.weight.val().flatten(0, 3)),
            values(b.blocks[1].bn1.running_mean.value_sync()),
            values(b.blocks[2].depthwise_conv.weight.val().flatten(0, 3)),
            values(b.blocks[2].bn1.running_mean.value_sync()),
            values(b.blocks[1].bn1.running_var.value_sync()),
            values(b.blocks[2].bn1.running_var.value_sync()),
        )
    };
    let before = snapshot(&net);
    // Fixed faces (waves around 0.5 with amplitude 0.2), not a draw from the process-wide generator.
    let pixels: Vec<f32> = (0..2 * 48 * 48).map(|i| 0.5 + 0.2 * (i as f32 * 0.37).sin()).collect();
    let images = Tensor::<4>::from_data(burn::tensor::TensorData::new(pixels, [2, 1, 48, 48]), &device);
    let labels = Tensor::<1, Int>::from_ints([3, 5], &device);
    let loss_fn = burn::nn::loss::CrossEntropyLossConfig::new().init(&device);
    let mut optimizer = ferkit::training::OptimizerKind::Adam.init();
    let (stepped, _) = ferkit::training::trainer::training_step(
        ferkit::models::Model::Transfer(net),
        &mut optimizer,
        &loss_fn,
        images,
        labels,
        None,
        None,
        1e-2,
    )
    .unwrap();
    let ferkit::models::Model::Transfer(stepped) = stepped else { unreachable!() };
    let after = snapshot(&stepped);
    assert_eq!(before.0, after.0, "the frozen stem moved");
    assert_eq!(before.1, after.1, "frozen block 1's weights moved");
    assert_eq!(before.2, after.2, "frozen block 1's batch-norm means moved");
    assert_eq!(before.5, after.5, "frozen block 1's batch-norm variances moved");
    assert_ne!(before.3, after.3, "unfrozen block 2's weights did not move");
    assert_ne!(before.4, after.4, "unfrozen block 2's batch-norm means did not move");
    assert_ne!(before.6, after.6, "unfrozen block 2's batch-norm variances did not move");
}

/// The depthwise-convolution weights of MBConv block 0 of a finished transfer run.
fn block0_weights(run: &std::path::Path) -> Vec<f32> {
    let dir = ferkit::training::RunDir::open(run).unwrap();
    let config = dir.load_config().unwrap();
    let model = dir.load_model(&config, &Device::flex()).unwrap();
    let ferkit::models::Model::Transfer(net) = model else { panic!("a transfer run") };
    let ferkit::models::transfer::Backbone::EfficientNetLite0(backbone) = net.backbone else {
        panic!("an EfficientNet-Lite0 run")
    };
    backbone.blocks[0].depthwise_conv.weight.val().into_data().try_to_vec::<f32>().unwrap()
}

#[test]
fn unfreezing_later_continues_from_the_run_and_trains_the_lower_blocks() {
    // Stage 1 trains the head over a frozen backbone (random, to need nothing from ../shared);
    // stage 2 starts from stage 1's weights with nothing frozen, another seed and a small rate.
    let dir = tempfile::tempdir().unwrap();
    let data = common::write(&dir.path().join("fer.csv"), common::synthetic_csv(21));
    let (stage1, stage2) = (dir.path().join("stage1"), dir.path().join("stage2"));
    let train = |run: &std::path::Path, extra: &[&str]| {
        let mut args = vec!["train", "efficientnet-lite0", "--data", data.to_str().unwrap(), "--epochs", "1"];
        args.extend_from_slice(&["--batch", "8", "--head", "16", "--out", run.to_str().unwrap()]);
        args.extend_from_slice(extra);
        let out = common::ferkit(&args);
        assert!(out.status.success(), "{}", common::stderr(&out));
    };
    train(&stage1, &["--freeze", "16", "--seed", "1"]);
    let stage1_path = stage1.to_str().unwrap();
    train(&stage2, &["--freeze", "0", "--seed", "2", "--init-from", stage1_path, "--lr", "1e-4"]);

    let summary = std::fs::read_to_string(stage2.join("summary.txt")).unwrap();
    // Every MBConv block trains (the stem stays frozen by design: see `BackboneKind::blocks`).
    assert!(!summary.contains("MBConv, frozen"), "stage 2 trains every block:\n{summary}");
    let (before, after) = (block0_weights(&stage1), block0_weights(&stage2));
    let largest_change = before.iter().zip(&after).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    let largest_weight = before.iter().fold(0f32, |m, w| m.max(w.abs()));
    // Block 0, frozen in stage 1, moved in stage 2 ...
    assert!(largest_change > 0.0, "block 0 did not train once unfrozen");
    // ... by a few Adam steps of 1e-4 from stage 1's values, not from seed 2's own random start.
    assert!(largest_change < 0.01 * largest_weight.max(1.0), "change {largest_change}, weights up to {largest_weight}");
}
