//! EfficientNet-Lite0 (Tan and Le, 2019; the "Lite" variant: no squeeze-excitation, ReLU6, fixed
//! stem and head), shaped to load the ImageNet weights of the PyTorch port in
//! `../shared/models/efficientnet-lite0-57934424.pth`.
//!
//! The architecture was read off that file's tensor names and shapes: a 3x3 stride-2 stem of
//! 32 channels, 16 inverted-residual (MBConv) blocks in 7 stages, a 1x1 head of 1280 channels,
//! global average pooling and a 1000-way classifier. Convolutions pad like TensorFlow's "same"
//! (the odd extra row at the end), batch norm has epsilon 1e-3.

use std::path::Path;

use crate::error::Result;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;

use crate::kernels::channels_last::{self, ChannelsLast};
use crate::kernels::conv2d::WeightPack;
use crate::kernels::fused::{Activation, conv_bn_act};

/// Stages: (blocks, kernel, first stride, expansion, output channels).
const STAGES: [(usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
];
/// MBConv blocks over all stages (16).
pub const BLOCKS: usize = {
    let mut total = 0;
    let mut i = 0;
    while i < STAGES.len() {
        total += STAGES[i].0;
        i += 1;
    }
    total
};
const STEM_CHANNELS: usize = 32;
pub const FEATURES: usize = 1280;
pub const IMAGENET_CLASSES: usize = 1000;
const BN_EPSILON: f64 = 1e-3;
/// PyTorch's momentum 0.01 (TensorFlow's 0.99).
const BN_MOMENTUM: f64 = 0.01;
/// ImageNet normalisation used in training these weights.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Grey images `[batch, 1, h, w]` as the RGB images this net reads: each grey level copied into
/// the three channels and standardised with [`IMAGENET_MEAN`] and [`IMAGENET_STD`], `[batch, 3,
/// h, w]`. ([`EfficientNetLite0::features_from_grey`] reads the grey images without this pass.)
pub fn standardised_rgb(grey: Tensor<4>) -> Tensor<4> {
    let device = grey.device();
    let [batch, _, h, w] = grey.dims();
    let mean = Tensor::<1>::from_floats(IMAGENET_MEAN, &device).reshape([1, 3, 1, 1]);
    let std = Tensor::<1>::from_floats(IMAGENET_STD, &device).reshape([1, 3, 1, 1]);
    (grey.expand([batch, 3, h, w]) - mean) / std
}

fn conv(channels: [usize; 2], kernel: usize, stride: usize, groups: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new(channels, [kernel, kernel])
        .with_stride([stride, stride])
        .with_groups(groups)
        .with_padding(PaddingConfig2d::Same)
        .with_bias(false)
        .init(device)
}

fn bn(channels: usize, device: &Device) -> BatchNorm {
    BatchNormConfig::new(channels).with_epsilon(BN_EPSILON).with_momentum(BN_MOMENTUM).init(device)
}

/// `relu6(bn(conv(x)))` (`relu6(conv(x))` without `bn`: folded into `conv`): one pass at
/// inference (`kernels::fused`).
fn conv_bn_relu6(conv: &Conv2d, bn: Option<&BatchNorm>, x: Tensor<4>) -> Tensor<4> {
    conv_bn_act(conv, bn, Some(Activation::RELU6), x)
}

/// What a block of a net prepared for inference keeps beside its layers (`models::fold`): a
/// `WeightPack` per convolution (its parameters as the kernels read them; the 1 x 1 ones packed
/// for `kernels::conv2d::direct`, the depthwise filters tap-major), each made on first use.
#[derive(Debug, Clone, Default)]
pub struct BlockPacks {
    pub expand: WeightPack,
    pub depthwise: WeightPack,
    pub project: WeightPack,
}

/// An inverted-residual block: 1x1 expansion (when the ratio is not 1), depthwise kxk, 1x1
/// projection; a skip connection when the shape is kept. Field names follow the PyTorch port.
#[derive(Module, Debug)]
pub struct MbConv {
    pub expand_conv: Option<Conv2d>,
    pub bn0: Option<BatchNorm>,
    pub depthwise_conv: Conv2d,
    pub bn1: BatchNorm,
    pub project_conv: Conv2d,
    pub bn2: BatchNorm,
    pub skip: bool,
    /// `Some` in a net prepared for inference (`models::fold::fold_batch_norm`): the block's
    /// batch norms are then folded into its convolutions (`bn0`, `bn1` and `bn2` are no longer
    /// applied) and these are its packs. `None` otherwise. Not part of the record.
    #[module(skip)]
    pub inference: Option<BlockPacks>,
}

impl MbConv {
    fn new(input: usize, output: usize, kernel: usize, stride: usize, expansion: usize, device: &Device) -> Self {
        let hidden = input * expansion;
        let (expand_conv, bn0) = if expansion != 1 {
            (Some(conv([input, hidden], 1, 1, 1, device)), Some(bn(hidden, device)))
        } else {
            (None, None)
        };
        MbConv {
            expand_conv,
            bn0,
            depthwise_conv: conv([hidden, hidden], kernel, stride, hidden, device),
            bn1: bn(hidden, device),
            project_conv: conv([hidden, output], 1, 1, 1, device),
            bn2: bn(output, device),
            skip: stride == 1 && input == output,
            inference: None,
        }
    }

    /// `bn` where it is applied: `None` once folded into its convolution (a net prepared for
    /// inference).
    fn applied<'a>(&self, bn: &'a BatchNorm) -> Option<&'a BatchNorm> {
        self.inference.is_none().then_some(bn)
    }

    fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        let mut x = input.clone();
        if let (Some(expand), Some(bn0)) = (&self.expand_conv, &self.bn0) {
            x = conv_bn_relu6(expand, self.applied(bn0), x);
        }
        x = conv_bn_relu6(&self.depthwise_conv, self.applied(&self.bn1), x);
        x = conv_bn_act(&self.project_conv, self.applied(&self.bn2), None, x);
        if self.skip { x + input } else { x }
    }

    /// [`Self::forward`] at inference, channel-last (`kernels::channels_last`); `None` when a
    /// parameter is not a plain Flex f32 tensor.
    fn forward_channels_last(&self, input: &ChannelsLast) -> Option<ChannelsLast> {
        let relu6 = Some(Activation::RELU6);
        let packs = self.inference.as_ref();
        let expanded = match (&self.expand_conv, &self.bn0) {
            (Some(expand), Some(bn0)) => {
                Some(channels_last::pointwise(expand, packs.map(|p| &p.expand), self.applied(bn0), relu6, input, None)?)
            }
            _ => None,
        };
        let x = channels_last::depthwise(
            &self.depthwise_conv,
            packs.map(|p| &p.depthwise),
            self.applied(&self.bn1),
            relu6,
            expanded.as_ref().unwrap_or(input),
        )?;
        let residual = self.skip.then_some(input);
        channels_last::pointwise(
            &self.project_conv,
            packs.map(|p| &p.project),
            self.applied(&self.bn2),
            None,
            &x,
            residual,
        )
    }
}

#[derive(Module, Debug)]
pub struct EfficientNetLite0 {
    pub conv_stem: Conv2d,
    pub bn0: BatchNorm,
    pub blocks: Vec<MbConv>,
    pub conv_head: Conv2d,
    pub bn1: BatchNorm,
    pub dropout: Dropout,
    pub fc: Linear,
    /// The head convolution's `WeightPack`, in a net prepared for inference; `None`
    /// otherwise. Not part of the record.
    #[module(skip)]
    pub head_pack: Option<WeightPack>,
    /// Whether the stem's and the head's batch norms are folded into their convolutions (a net
    /// prepared for inference, `models::fold::fold_batch_norm`; each block says so for its own).
    /// Not part of the record.
    #[module(skip)]
    pub bn_folded: bool,
}

impl EfficientNetLite0 {
    /// `bn` where it is applied: `None` once folded into its convolution.
    fn applied<'a>(&self, bn: &'a BatchNorm) -> Option<&'a BatchNorm> {
        (!self.bn_folded).then_some(bn)
    }

    /// Every batch norm of the net, in forward order (stem, each block's three or two, head).
    pub fn batch_norms_mut(&mut self) -> Vec<&mut BatchNorm> {
        let mut out = vec![&mut self.bn0];
        for block in &mut self.blocks {
            out.extend(block.bn0.as_mut());
            out.push(&mut block.bn1);
            out.push(&mut block.bn2);
        }
        out.push(&mut self.bn1);
        out
    }

    /// A freshly initialised net with `classes` outputs.
    pub fn new(classes: usize, device: &Device) -> Self {
        let mut blocks = Vec::new();
        let mut channels = STEM_CHANNELS;
        for (repeats, kernel, stride, expansion, output) in STAGES {
            for r in 0..repeats {
                blocks.push(MbConv::new(channels, output, kernel, if r == 0 { stride } else { 1 }, expansion, device));
                channels = output;
            }
        }
        EfficientNetLite0 {
            conv_stem: conv([3, STEM_CHANNELS], 3, 2, 1, device),
            bn0: bn(STEM_CHANNELS, device),
            blocks,
            conv_head: conv([channels, FEATURES], 1, 1, 1, device),
            bn1: bn(FEATURES, device),
            dropout: DropoutConfig::new(0.2).init(),
            fc: LinearConfig::new(FEATURES, classes).init(device),
            head_pack: None,
            bn_folded: false,
        }
    }

    /// The ImageNet net with the weights of a PyTorch state dict (`.pth`, zip or legacy pickle).
    /// PyTorch's names (`_blocks.3._depthwise_conv.weight`) lose their underscores to become
    /// this module's (`blocks.3.depthwise_conv.weight`); every tensor must be used and found.
    pub fn from_pytorch(path: &Path, device: &Device) -> Result<Self> {
        let mut net = Self::new(IMAGENET_CLASSES, device);
        // PyTorch's batch-norm step counters have no counterpart here.
        let remaps = [(r"^_", ""), (r"\._", ".")];
        super::pytorch_weights::load(&mut net, path, "EfficientNet-Lite0", &remaps, |k| {
            k.ends_with("num_batches_tracked")
        })?;
        Ok(net)
    }

    /// Pooled features `[batch, 1280]` for ImageNet-normalised images `[batch, 3, h, w]`.
    pub fn features(&self, images: Tensor<4>) -> Tensor<2> {
        let x = conv_bn_relu6(&self.conv_stem, self.applied(&self.bn0), images);
        match self.features_channels_last(&x) {
            Some(features) => features,
            None => self.features_channels_first(x),
        }
    }

    /// [`Self::features`] after the stem in Burn's layout (training, other backends).
    fn features_channels_first(&self, stem: Tensor<4>) -> Tensor<2> {
        let mut x = stem;
        for block in &self.blocks {
            x = block.forward(x);
        }
        x = conv_bn_relu6(&self.conv_head, self.applied(&self.bn1), x);
        let [batch, channels, _, _] = x.dims();
        x.mean_dim(3).mean_dim(2).reshape([batch, channels])
    }

    /// [`Self::features`] after the stem at inference on the CPU: the blocks, the head and the
    /// pooling channel-last (`kernels::channels_last`, which says why); `None` in training or
    /// on another backend, where the layers run in Burn's layout.
    fn features_channels_last(&self, stem: &Tensor<4>) -> Option<Tensor<2>> {
        self.features_after_stem(ChannelsLast::from_channels_first(stem)?)
    }

    /// [`Self::features`] of grey images at inference on the CPU: `grey` `[batch, 1, h, w]`, each
    /// image standing for the RGB image of its grey level in every channel, standardised per
    /// channel with `mean` and `std` (three values each). The stem reads the grey plane itself
    /// (`kernels::channels_last::conv_from_grey`, which says why), then the layers run as in
    /// [`Self::features`] channel-last. `None` in training or on another backend.
    pub fn features_from_grey(&self, grey: &Tensor<4>, mean: &[f32], std: &[f32]) -> Option<Tensor<2>> {
        let relu6 = Some(Activation::RELU6);
        let stem = channels_last::conv_from_grey(&self.conv_stem, self.applied(&self.bn0), relu6, grey, mean, std)?;
        self.features_after_stem(stem)
    }

    /// The blocks, the head and the pooling channel-last, from the stem's output.
    fn features_after_stem(&self, stem: ChannelsLast) -> Option<Tensor<2>> {
        let mut x = stem;
        for block in &self.blocks {
            x = block.forward_channels_last(&x)?;
        }
        let relu6 = Some(Activation::RELU6);
        let head = channels_last::pointwise(
            &self.conv_head,
            self.head_pack.as_ref(),
            self.applied(&self.bn1),
            relu6,
            &x,
            None,
        )?;
        Some(head.mean_positions())
    }

    /// Logits `[batch, classes]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.fc.forward(self.dropout.forward(self.features(images)))
    }
}

#[cfg(test)]
/// For tests (this module's and `models::transfer`'s): batch norms that scale by 2.5 and shift
/// a little, so that the features depend on the images. With random running statistics (as in
/// the older tests below) the ReLU6s saturate and the features hardly move with the images;
/// with the initial ones each layer shrinks its input to almost nothing.
pub(crate) fn set_image_dependent_batch_norms(net: &mut EfficientNetLite0) {
    for (k, bn) in net.batch_norms_mut().into_iter().enumerate() {
        let [c] = bn.gamma.val().dims();
        let device = bn.gamma.val().device();
        bn.gamma = burn::module::Param::from_tensor(Tensor::full([c], 2.5, &device));
        bn.beta =
            burn::module::Param::from_tensor(crate::kernels::tests::random_input([c], &device, 10 * k as u64) * 0.1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::tests::{assert_close, random_input};

    /// Folded for inference (`models::fold`), the net in Burn's layout too (the path of other
    /// backends: every folded batch norm skipped, none applied twice) gives the features of the
    /// net as loaded, with batch norms whose statistics, scales and shifts are random; and
    /// folding a folded net changes nothing.
    #[test]
    fn a_folded_net_gives_the_same_features_channel_first() {
        let device = Device::flex();
        let mut net = EfficientNetLite0::new(7, &device);
        for (k, bn) in net.batch_norms_mut().into_iter().enumerate() {
            let [c] = bn.gamma.val().dims();
            // Random statistics, scales and shifts (epsilon 1e-3, this net's).
            *bn = crate::kernels::fused::tests::batch_norm(c, &device, 10 * k as u64);
        }
        let folded = crate::models::fold::fold_efficientnet(net.clone());
        let twice = crate::models::fold::fold_efficientnet(folded.clone());
        let images = random_input([2, 3, 48, 48], &device, 7);
        let stem = conv_bn_relu6(&net.conv_stem, Some(&net.bn0), images.clone());
        let expected = net.features_channels_first(stem);
        for (name, f) in [("folded", &folded), ("folded twice", &twice)] {
            let stem = conv_bn_relu6(&f.conv_stem, f.applied(&f.bn0), images.clone());
            assert_close(&f.features_channels_first(stem), &expected, 1e-4, name);
            assert_close(&f.features(images.clone()), &expected, 1e-4, &format!("{name}: channel-last"));
        }
    }

    /// The whole net at inference, channel-last (what `features` runs on the CPU) against the
    /// same layers in Burn's layout, at 48 and 96 px, one face and several: within 1e-4 of the
    /// largest feature.
    #[test]
    fn channel_last_features_match_the_channel_first_layers() {
        let device = Device::flex();
        let net = EfficientNetLite0::new(7, &device);
        for (batch, side, seed) in [(1, 48, 1), (3, 48, 2), (2, 96, 3)] {
            let images = random_input([batch, 3, side, side], &device, seed);
            let stem = conv_bn_relu6(&net.conv_stem, Some(&net.bn0), images.clone());
            let expected = net.features_channels_first(stem.clone());
            let got = net.features_channels_last(&stem).expect("plain Flex tensors go channel-last");
            assert_close(&got, &expected, 1e-4, &format!("{batch} x {side} px"));
            assert_close(&net.features(images), &expected, 1e-4, &format!("{batch} x {side} px: features"));
        }
    }

    /// Grey images read by the stem itself (`features_from_grey`), by the net with batch norms
    /// that scale and shift and by it folded for inference: the features of the standardised
    /// three-channel images within 1e-4, at 48 and 96 px.
    #[test]
    fn grey_images_give_the_features_of_their_standardised_rgb_copies() {
        let device = Device::flex();
        let mut net = EfficientNetLite0::new(7, &device);
        set_image_dependent_batch_norms(&mut net);
        let folded = crate::models::fold::fold_efficientnet(net.clone());
        for (batch, side, seed) in [(1, 48, 4), (3, 48, 5), (2, 96, 6)] {
            let grey = random_input([batch, 1, side, side], &device, seed).abs().clamp_max(1.0);
            let expected = net.features(standardised_rgb(grey.clone()));
            for (name, f) in [("net", &net), ("folded", &folded)] {
                let got = f.features_from_grey(&grey, &IMAGENET_MEAN, &IMAGENET_STD).expect("plain Flex tensors");
                let half = f.features_from_grey(&(grey.clone() * 0.5), &IMAGENET_MEAN, &IMAGENET_STD).unwrap();
                let moved = (half - expected.clone()).abs().max().into_data().try_to_vec::<f32>().unwrap()[0];
                assert!(
                    moved > 0.1,
                    "{name}: the features hardly depend on the images ({moved}): this test could not fail"
                );
                assert_close(&got, &expected, 1e-4, &format!("{name}, {batch} x {side} px"));
            }
        }
        let autodiff = Device::flex().autodiff();
        let grey = random_input([1, 1, 48, 48], &autodiff, 7);
        let net = EfficientNetLite0::new(7, &autodiff);
        assert!(net.features_from_grey(&grey, &IMAGENET_MEAN, &IMAGENET_STD).is_none(), "training stays channel-first");
    }
}
