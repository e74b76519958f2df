//! Batch norm folded into the layer before it, for inference.
//!
//! At inference batch norm is a fixed per-channel affine map, `y * s + t` with
//! `s = gamma / sqrt(running_var + epsilon)` and `t = beta - running_mean * s`, so a convolution
//! or dense layer followed directly by it (no activation between) computes the same as that
//! layer alone with its weights scaled by `s` per output channel and its bias `b * s + t`. The
//! folded net skips one pass over every such layer's output (vgg-lite and cnn1 have one after each
//! convolution). Only for inference: the folded net has fewer layers than its spec, so it is
//! neither trained, saved nor exported (those use the net as loaded).
//!
//! A ReLU layer right after a convolution or dense layer becomes that layer's own activation,
//! which the kernels apply as they write the output (`kernels::fused`, `kernels::dense`): one
//! pass less again.

use burn::module::Param;
use burn::nn::BatchNorm;
use burn::nn::conv::Conv2d;
use burn::prelude::*;

use super::efficientnet::EfficientNetLite0;
use super::model::{Ensemble, Model};
use super::net::{Layer, Net};
use super::spec::ActivationFn;
use super::transfer::Backbone;

/// `model` with every convolution or dense layer that is directly followed by batch norm (and
/// has no activation of its own) merged with it, and a ReLU layer right after a convolution or
/// dense layer made that layer's own activation. EfficientNet-Lite0 backbones get every batch
/// norm folded ([`fold_efficientnet`]); VGG16's are returned as they are (it has no batch norm;
/// its convolutions apply their ReLU as they write: `kernels::fused`).
pub fn fold_batch_norm(model: Model) -> Model {
    match model {
        Model::Layers(net) => Model::Layers(fold_net(net)),
        Model::Ensemble(e) => {
            Model::Ensemble(Ensemble { members: e.members.into_iter().map(fold_batch_norm).collect() })
        }
        Model::Transfer(mut t) => {
            t.backbone = match t.backbone {
                Backbone::EfficientNetLite0(e) => Backbone::EfficientNetLite0(fold_efficientnet(e)),
                other => other,
            };
            // One pack per dense layer (a clone would share its first layer's).
            t.dense_packs = Some((0..=t.head.len()).map(|_| Default::default()).collect());
            Model::Transfer(t)
        }
    }
}

/// Per-channel scale and shift of a batch norm at inference, `[channels]` each.
fn affine(bn: &BatchNorm) -> (Tensor<1>, Tensor<1>) {
    let scale = bn.gamma.val() / bn.running_var.value().add_scalar(bn.epsilon).sqrt();
    let shift = bn.beta.val() - bn.running_mean.value() * scale.clone();
    (scale, shift)
}

/// `conv` followed by `bn` as one convolution: weights scaled per output channel, bias
/// `b * s + t` (a convolution without a bias gets one). Depthwise convolutions too (their
/// weight is `[channels, 1, kh, kw]`, one filter per output channel).
fn fold_conv(conv: &Conv2d, bn: &BatchNorm) -> Conv2d {
    let (scale, shift) = affine(bn);
    let weight = conv.weight.val();
    let [out, ..] = weight.dims();
    let device = weight.device();
    let bias = conv.bias.as_ref().map_or_else(|| Tensor::zeros([out], &device), |b| b.val());
    let mut folded = conv.clone();
    folded.weight = Param::from_tensor(weight * scale.clone().reshape([out, 1, 1, 1]));
    folded.bias = Some(Param::from_tensor(bias * scale + shift));
    folded
}

/// EfficientNet-Lite0 prepared for inference: every batch norm folded into the convolution
/// before it (stem, each block's expansion, depthwise and projection, head), so the kernels
/// apply bias and ReLU6 alone and no scale and shift is derived from the running statistics on
/// every call; the blocks' and the head's packs (`kernels::conv2d::WeightPack`) made empty,
/// filled on first use.
pub(crate) fn fold_efficientnet(mut e: EfficientNetLite0) -> EfficientNetLite0 {
    // Folded already: folding again would scale the weights twice. Fresh packs only.
    if !e.bn_folded {
        e.conv_stem = fold_conv(&e.conv_stem, &e.bn0);
        for block in &mut e.blocks {
            if let (Some(expand), Some(bn0)) = (&block.expand_conv, &block.bn0) {
                block.expand_conv = Some(fold_conv(expand, bn0));
            }
            block.depthwise_conv = fold_conv(&block.depthwise_conv, &block.bn1);
            block.project_conv = fold_conv(&block.project_conv, &block.bn2);
        }
        e.conv_head = fold_conv(&e.conv_head, &e.bn1);
        e.bn_folded = true;
    }
    for block in &mut e.blocks {
        block.inference = Some(Default::default());
    }
    e.head_pack = Some(Default::default());
    e
}

/// A layer net with its batch norms folded and its ReLUs merged, as [`fold_batch_norm`] does
/// for [`Model::Layers`].
pub(crate) fn fold_net(mut net: Net) -> Net {
    let mut i = 0;
    while i + 1 < net.logit_layers {
        let folded = match (&net.layers[i], &net.layers[i + 1]) {
            (Layer::Conv(c), Layer::BatchNorm(bn)) if c.act.function.is_none() => {
                let mut conv = c.clone();
                conv.conv = fold_conv(&c.conv, bn);
                Some(Layer::Conv(conv))
            }
            (Layer::Dense(d), Layer::BatchNorm(bn)) if d.act.function.is_none() => {
                let (scale, shift) = affine(bn);
                let weight = d.linear.weight.val();
                let [_, units] = weight.dims();
                let device = weight.device();
                let bias = d.linear.bias.as_ref().map_or_else(|| Tensor::zeros([units], &device), |b| b.val());
                let mut dense = d.clone();
                // Burn keeps a dense weight as [inputs, units]: scale its columns.
                dense.linear.weight = Param::from_tensor(weight * scale.clone().reshape([1, units]));
                dense.linear.bias = Some(Param::from_tensor(bias * scale + shift));
                Some(Layer::Dense(dense))
            }
            _ => None,
        };
        if let Some(layer) = folded {
            merge_into(&mut net, i, layer);
        }
        // A ReLU right after a convolution or dense layer (folded or not) becomes that layer's
        // own activation, which the kernels apply as they write its output (`kernels::fused`,
        // `kernels::dense`).
        let relu_next =
            matches!(net.layers.get(i + 1), Some(Layer::Activation(a)) if a.function == Some(ActivationFn::Relu));
        if i + 1 < net.logit_layers && relu_next {
            let merged = match &net.layers[i] {
                Layer::Conv(c) if c.act.function.is_none() => {
                    let mut conv = c.clone();
                    conv.act.function = Some(ActivationFn::Relu);
                    Some(Layer::Conv(conv))
                }
                Layer::Dense(d) if d.act.function.is_none() => {
                    let mut dense = d.clone();
                    dense.act.function = Some(ActivationFn::Relu);
                    Some(Layer::Dense(dense))
                }
                _ => None,
            };
            if let Some(layer) = merged {
                merge_into(&mut net, i, layer);
            }
        }
        i += 1;
    }
    // Every convolution and dense layer gets a pack of its own (never one cloned from the
    // unfolded layer, whose weights differ), filled on the first pass that uses it.
    for layer in &mut net.layers {
        match layer {
            Layer::Conv(c) => c.pack = Some(Default::default()),
            Layer::Dense(d) => d.pack = Some(Default::default()),
            _ => {}
        }
    }
    net
}

/// Layers `i` and `i + 1` of `net` (both before the logits) replaced by `layer`, their merge.
fn merge_into(net: &mut Net, i: usize, layer: Layer) {
    net.layers[i] = layer;
    net.layers.remove(i + 1);
    net.logit_layers -= 1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::tests::{assert_close, random_input};
    use crate::models::net::Act;
    use burn::module::{Module, RunningState};

    /// Batch norms with statistics, scales and shifts that are not the initial ones.
    fn randomise_batch_norms(model: &mut Model, device: &Device) {
        for (k, bn) in model.batch_norms_mut().into_iter().enumerate() {
            let [c] = bn.gamma.val().dims();
            bn.gamma = Param::from_tensor(random_input([c], device, 100 + k as u64).add_scalar(1.0));
            bn.beta = Param::from_tensor(random_input([c], device, 200 + k as u64));
            bn.running_mean = RunningState::new(random_input([c], device, 300 + k as u64));
            bn.running_var = RunningState::new(random_input([c], device, 400 + k as u64).abs().add_scalar(0.5));
        }
    }

    /// EfficientNet-Lite0 folded for inference (every batch norm in its convolution, packs for
    /// the blocks and the head) gives the logits of the net as loaded, at one face and several,
    /// and a second pass (the packs then filled) the same bits as the first.
    #[test]
    fn a_folded_efficientnet_gives_the_same_logits() {
        let device = Device::flex();
        let spec = crate::models::resolve("efficientnet-lite0").unwrap();
        let mut model = spec.build(&device).unwrap();
        randomise_batch_norms(&mut model, &device);
        let folded = fold_batch_norm(model.clone());
        let Model::Transfer(t) = &folded else { unreachable!("a transfer net") };
        let Backbone::EfficientNetLite0(e) = &t.backbone else { unreachable!("EfficientNet-Lite0") };
        assert!(e.bn_folded && e.blocks.iter().all(|b| b.inference.is_some()), "not prepared for inference");
        for (batch, seed) in [(1, 1), (3, 2)] {
            let images = random_input([batch, 1, 48, 48], &device, seed);
            let expected = model.forward(images.clone());
            let first = folded.forward(images.clone());
            assert_close(&first, &expected, 1e-4, &format!("{batch} faces"));
            assert_eq!(folded.forward(images).into_data(), first.into_data(), "{batch} faces: second pass");
        }
        // The head's and the output layer's packs: one each, filled by those passes.
        let packs = t.dense_packs.as_ref().expect("dense packs");
        assert_eq!(packs.len(), t.head.len() + 1);
        assert!(packs.iter().all(|p| p.is_filled()), "a dense pack left empty");
        assert!(!packs[0].is_shared_with(&packs[1]), "the head's and the output's packs are one");
    }

    /// Nets with batch norm after convolutions (vgg-lite, resnet-lite's stem) and after dense
    /// layers (cnn1) give the same logits folded, with fewer layers and the ReLUs merged, with
    /// batch norms whose statistics, scales and shifts are not the initial ones.
    #[test]
    fn a_folded_net_gives_the_same_logits_with_fewer_layers() {
        for preset in ["vgg-lite", "cnn1", "resnet-lite"] {
            let device = Device::flex();
            let spec = crate::models::resolve(preset).unwrap();
            let train_device = device.clone().autodiff();
            let model = spec.build(&train_device).unwrap();
            // Training-mode passes update the running statistics; random gammas and betas too.
            for seed in 0..3 {
                let _ =
                    model.forward(random_input([16, 1, 48, 48], &train_device, seed).mul_scalar(2.0).add_scalar(0.5));
            }
            let mut model = model.valid();
            randomise_batch_norms(&mut model, &device);
            let images = random_input([4, 1, 48, 48], &device, 9);
            let expected = model.forward(images.clone());
            // One face: folded, its deep convolutions run channel-last (from 12 x 12 under the
            // tests' Winograd bounds, which take the 24 x 24 ones).
            let face = random_input([1, 1, 48, 48], &device, 11);
            let expected_face = model.forward(face.clone());
            let layers = |m: &Model| if let Model::Layers(n) = m { n.layers.len() } else { 0 };
            let before = layers(&model);
            let folded = fold_batch_norm(model);
            assert!(layers(&folded) < before, "{preset}: nothing was folded");
            // Every ReLU that follows a convolution or dense layer (after its batch norm) was
            // merged into it: none is left right after one, and some layer now carries it.
            let Model::Layers(net) = &folded else { unreachable!("a layer net") };
            let pairs = net.layers[..net.logit_layers].windows(2);
            let relu = |a: &Act| a.function == Some(ActivationFn::Relu);
            for pair in pairs {
                if let [Layer::Conv(_) | Layer::Dense(_), Layer::Activation(a)] = pair {
                    assert!(!relu(a), "{preset}: a ReLU left after a layer");
                }
            }
            let carried = net.layers.iter().any(|l| matches!(l, Layer::Conv(c) if relu(&c.act)));
            assert!(carried, "{preset}: no convolution carries its ReLU");
            assert_close(&folded.forward(images), &expected, 1e-4, preset);
            assert_close(&folded.forward(face), &expected_face, 1e-4, &format!("{preset}, one face"));
            // Every dense layer got a pack of its own, which one face's pass fills.
            let _ = folded.forward(random_input([1, 1, 48, 48], &device, 10));
            let Model::Layers(net) = &folded else { unreachable!("a layer net") };
            let packs: Vec<_> = net
                .layers
                .iter()
                .filter_map(|l| if let Layer::Dense(d) = l { Some(d.pack.as_ref()) } else { None })
                .collect();
            assert!(
                !packs.is_empty() && packs.iter().all(|p| p.is_some_and(|p| p.is_filled())),
                "{preset}: a dense layer without a filled pack"
            );
            for (i, a) in packs.iter().enumerate() {
                assert!(
                    packs[i + 1..].iter().all(|b| !a.unwrap().is_shared_with(b.unwrap())),
                    "{preset}: two dense layers share a pack"
                );
            }
        }
    }
}
