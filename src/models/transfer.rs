//! Transfer learning: an ImageNet backbone (EfficientNet-Lite0, or VGG16 as in the notebook)
//! under a new head (lower blocks frozen; dense 1024 relu, dropout 0.5, dense 7).
//!
//! Faces arrive as grey levels in [0, 1] (`Preprocess::UnitRange`); the net repeats them into
//! three channels, applies ImageNet's normalisation and resizes them to `input_size`.

use std::path::PathBuf;

use crate::error::{Result, bail};
use burn::nn::interpolate::{Interpolate2dConfig, InterpolateMode};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::prelude::*;
use crate::kernels::channels_last;
use crate::kernels::dense::{DensePack, linear_act};
use crate::kernels::fused::Activation;
use serde::{Deserialize, Serialize};

use super::efficientnet::{self, EfficientNetLite0, IMAGENET_MEAN, IMAGENET_STD};
use super::vgg16::{self, Vgg16};
use crate::data::NUM_CLASSES;

/// Which ImageNet backbone a transfer spec names; spelt in specs and on the command line as
/// its [`BackboneKind::name`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackboneKind {
    #[serde(rename = "efficientnet-lite0")]
    EfficientNetLite0,
    #[serde(rename = "vgg16")]
    Vgg16,
}

impl BackboneKind {
    pub const ALL: [BackboneKind; 2] = [BackboneKind::EfficientNetLite0, BackboneKind::Vgg16];

    pub const fn name(self) -> &'static str {
        match self {
            BackboneKind::EfficientNetLite0 => "efficientnet-lite0",
            BackboneKind::Vgg16 => "vgg16",
        }
    }

    /// Blocks `frozen_blocks` counts: EfficientNet-Lite0's 16 MBConv blocks (its stem is always
    /// frozen, its 1x1 head with the 16th), VGG16's 5 convolution blocks.
    pub const fn blocks(self) -> usize {
        match self {
            BackboneKind::EfficientNetLite0 => efficientnet::BLOCKS,
            BackboneKind::Vgg16 => vgg16::BLOCKS.len(),
        }
    }
}

impl std::fmt::Display for BackboneKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The ImageNet backbones ferkit can load.
#[derive(Module, Debug)]
pub enum Backbone {
    EfficientNetLite0(EfficientNetLite0),
    Vgg16(Vgg16),
}

/// The parts before index `frozen` frozen, the others as they were.
fn freeze_first<M: Module>(parts: Vec<M>, frozen: usize) -> Vec<M> {
    parts.into_iter().enumerate().map(|(i, part)| if i < frozen { part.freeze() } else { part }).collect()
}

impl Backbone {
    /// The backbone `kind`, with ImageNet weights from `weights` when given, else random.
    pub fn load(kind: BackboneKind, weights: Option<&std::path::Path>, device: &Device) -> Result<Self> {
        Ok(match (kind, weights) {
            (BackboneKind::EfficientNetLite0, Some(path)) => {
                Backbone::EfficientNetLite0(EfficientNetLite0::from_pytorch(path, device)?)
            }
            (BackboneKind::EfficientNetLite0, None) => {
                Backbone::EfficientNetLite0(EfficientNetLite0::new(efficientnet::IMAGENET_CLASSES, device))
            }
            (BackboneKind::Vgg16, Some(path)) => Backbone::Vgg16(Vgg16::from_pytorch(path, device)?),
            (BackboneKind::Vgg16, None) => Backbone::Vgg16(Vgg16::new(device)),
        })
    }

    /// Freezes the lowest `blocks` blocks (see [`BackboneKind::blocks`]).
    fn freeze_lower(self, blocks: usize) -> Self {
        match self {
            Backbone::EfficientNetLite0(mut b) => {
                // The ImageNet classifier is kept only so that the backbone's weights load as
                // they are; the transfer head replaces it, so it is never trained (and counts as
                // non-trainable).
                b.fc = b.fc.freeze();
                b.conv_stem = b.conv_stem.freeze();
                b.bn0 = b.bn0.freeze();
                if blocks == b.blocks.len() {
                    b.conv_head = b.conv_head.freeze();
                    b.bn1 = b.bn1.freeze();
                }
                b.blocks = freeze_first(std::mem::take(&mut b.blocks), blocks);
                Backbone::EfficientNetLite0(b)
            }
            Backbone::Vgg16(mut b) => {
                b.blocks = freeze_first(std::mem::take(&mut b.blocks), blocks);
                Backbone::Vgg16(b)
            }
        }
    }

    /// Width of the pooled features.
    pub fn features_width(&self) -> usize {
        match self {
            Backbone::EfficientNetLite0(_) => efficientnet::FEATURES,
            Backbone::Vgg16(_) => vgg16::FEATURES,
        }
    }

    /// Pooled features `[batch, width]` for ImageNet-normalised images.
    pub fn features(&self, x: Tensor<4>) -> Tensor<2> {
        match self {
            Backbone::EfficientNetLite0(b) => b.features(x),
            Backbone::Vgg16(b) => b.features(x),
        }
    }

    /// The backbone's parts as summary rows (name, parameters); `frozen` lower blocks marked.
    pub fn parts(&self, frozen: usize) -> Vec<(String, usize)> {
        let mark = |i: usize| if i < frozen { ", frozen" } else { "" };
        match self {
            Backbone::EfficientNetLite0(b) => {
                let mut rows = vec![(
                    "stem (Conv2D 3x3/2, BN, ReLU6, frozen)".into(),
                    b.conv_stem.num_params() + b.bn0.num_params(),
                )];
                for (i, block) in b.blocks.iter().enumerate() {
                    rows.push((format!("block {i} (MBConv{})", mark(i)), block.num_params()));
                }
                let head_frozen = if frozen == b.blocks.len() { ", frozen" } else { "" };
                rows.push((
                    format!("head (Conv2D 1x1, BN, ReLU6, pool{head_frozen})"),
                    b.conv_head.num_params() + b.bn1.num_params(),
                ));
                rows
            }
            Backbone::Vgg16(b) => b
                .blocks
                .iter()
                .enumerate()
                .map(|(i, block)| {
                    let convs = block.convs.len();
                    (format!("block {} ({convs} x Conv2D 3x3, ReLU, MaxPool 2{})", i + 1, mark(i)), block.num_params())
                })
                .chain([("pool (global average)".to_string(), 0)])
                .collect(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferSpec {
    pub name: String,
    pub backbone: BackboneKind,
    /// ImageNet weights (a PyTorch `.pth`); without them the backbone starts random.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<PathBuf>,
    /// Side the faces are resized to before the backbone (48 keeps them as they are).
    pub input_size: usize,
    /// Blocks frozen from the bottom (EfficientNet-Lite0: the stem, then 0..=16 MBConv blocks;
    /// VGG16: 0..=5 convolution blocks).
    pub frozen_blocks: usize,
    /// Hidden layers of the new head (ReLU), then dropout, then 7 outputs.
    pub head: Vec<usize>,
    pub dropout: f64,
    pub learning_rate: f64,
}

impl TransferSpec {
    /// The preset for `kind`, named as it.
    pub fn preset(kind: BackboneKind) -> Self {
        match kind {
            BackboneKind::EfficientNetLite0 => Self::efficientnet_lite0(),
            BackboneKind::Vgg16 => Self::vgg16(),
        }
    }

    /// The notebook's transfer recipe on EfficientNet-Lite0: all but the top stage frozen,
    /// head dense 1024 relu, dropout 0.5, dense 7; Adam 0.005.
    pub fn efficientnet_lite0() -> Self {
        TransferSpec {
            name: BackboneKind::EfficientNetLite0.name().into(),
            backbone: BackboneKind::EfficientNetLite0,
            weights: None,
            input_size: 48,
            frozen_blocks: 11,
            head: vec![1024],
            dropout: 0.5,
            learning_rate: 0.005,
        }
    }

    /// The notebook's own transfer recipe: VGG16 with its four lower blocks frozen, the same
    /// head and rate. Needs torchvision VGG16 weights from the user (`--weights`).
    pub fn vgg16() -> Self {
        TransferSpec {
            name: BackboneKind::Vgg16.name().into(),
            backbone: BackboneKind::Vgg16,
            frozen_blocks: 4,
            ..Self::efficientnet_lite0()
        }
    }

    pub fn check(&self) -> Result<()> {
        let blocks = self.backbone.blocks();
        if self.frozen_blocks > blocks {
            bail!(Weights, "frozen_blocks {} is more than {}'s {blocks} blocks", self.frozen_blocks, self.backbone);
        }
        if self.input_size < 32 || self.input_size > 512 {
            bail!(Weights, "input_size {} is outside 32..=512", self.input_size);
        }
        if !(0.0..1.0).contains(&self.dropout) || self.head.contains(&0) || !(self.learning_rate > 0.0) {
            bail!(Weights, "the head needs non-zero widths, 0 <= dropout < 1 and a positive learning rate");
        }
        Ok(())
    }

    /// (trainable, non-trainable) parameters; frozen backbone weights and batch-norm
    /// statistics count as non-trainable.
    pub fn param_counts(&self) -> Result<(usize, usize)> {
        // Counted on an autodiff device, where frozen tensors and running statistics are the
        // ones that do not require gradients; the weights file does not change the counts.
        let spec = TransferSpec { weights: None, ..self.clone() };
        let net = TransferNet::new(&spec, &Device::flex().autodiff())?;
        let total = net.num_params();
        let trainable = net.trainable_params();
        Ok((trainable, total - trainable))
    }
}

#[derive(Module, Debug)]
pub struct TransferNet {
    pub backbone: Backbone,
    pub head: Vec<Linear>,
    pub head_dropout: Dropout,
    pub output: Linear,
    pub input_size: usize,
    /// The head's and the output layer's packs for one face or a few
    /// (`kernels::dense::DensePack`), one per layer of `head` and then `output`'s, in nets that
    /// `models::fold` prepared for inference only. Not part of the record.
    #[module(skip)]
    pub dense_packs: Option<Vec<DensePack>>,
}

impl TransferNet {
    /// Builds the net: the backbone with its ImageNet weights when the spec names them, the
    /// frozen part frozen, a fresh head.
    pub fn new(spec: &TransferSpec, device: &Device) -> Result<Self> {
        spec.check()?;
        let backbone = Backbone::load(spec.backbone, spec.weights.as_deref(), device)?.freeze_lower(spec.frozen_blocks);
        let mut width = backbone.features_width();
        let mut head = Vec::new();
        for &units in &spec.head {
            head.push(LinearConfig::new(width, units).init(device));
            width = units;
        }
        Ok(TransferNet {
            backbone,
            head,
            head_dropout: DropoutConfig::new(spec.dropout).init(),
            output: LinearConfig::new(width, NUM_CLASSES).init(device),
            input_size: spec.input_size,
            dense_packs: None,
        })
    }

    /// Parameters the optimiser updates (meaningful on an autodiff device).
    pub fn trainable_params(&self) -> usize {
        struct Count(usize);
        impl burn::module::ModuleVisitor for Count {
            fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
                let value = param.val();
                if value.is_require_grad() {
                    self.0 += value.shape().num_elements();
                }
            }
        }
        let mut count = Count(0);
        self.visit(&mut count);
        count.0
    }

    /// The backbone's pooled features `[batch, width]` for grey faces in [0, 1], `[batch, 1, h,
    /// w]`: each grey level copied into the three channels, standardised with ImageNet's mean
    /// and deviation, resized to the backbone's input size when it differs. At inference on the
    /// CPU, EfficientNet-Lite0 reads the grey faces (resized first when their size differs) in
    /// its stem instead ([`EfficientNetLite0::features_from_grey`]: no copies, no
    /// standardisation pass, one plane to resize instead of three). The same values up to
    /// rounding: the bilinear resize is linear with weights that sum to one, so it commutes with
    /// the copies and the standardisation.
    fn features(&self, images: Tensor<4>) -> Tensor<2> {
        let [_, channels, h, w] = images.dims();
        let same_size = h == self.input_size && w == self.input_size;
        if let Backbone::EfficientNetLite0(b) = &self.backbone
            && channels == 1
            && channels_last::is_plain(&images)
        {
            let grey = if same_size { images.clone() } else { self.resize(images.clone()) };
            if let Some(features) = b.features_from_grey(&grey, &IMAGENET_MEAN, &IMAGENET_STD) {
                return features;
            }
        }
        let x = efficientnet::standardised_rgb(images);
        self.backbone.features(if same_size { x } else { self.resize(x) })
    }

    /// `x` `[batch, c, h, w]` resized to the backbone's input size, bilinear.
    fn resize(&self, x: Tensor<4>) -> Tensor<4> {
        Interpolate2dConfig::new()
            .with_output_size(Some([self.input_size, self.input_size]))
            .with_mode(InterpolateMode::Linear)
            .init()
            .forward(x)
    }

    /// Logits `[batch, 7]` for grey faces in [0, 1], `[batch, 1, h, w]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let mut z = self.features(images);
        let pack = |i: usize| self.dense_packs.as_ref().and_then(|packs| packs.get(i));
        for (i, layer) in self.head.iter().enumerate() {
            z = linear_act(layer, pack(i), Some(Activation::Relu), z);
        }
        linear_act(&self.output, pack(self.head.len()), None, self.head_dropout.forward(z))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_name_backbones_as_the_command_line_does() {
        for kind in BackboneKind::ALL {
            let spec = TransferSpec::preset(kind);
            assert_eq!(spec.name, kind.name());
            let text = toml::to_string(&spec).unwrap();
            assert!(text.contains(&format!("backbone = \"{kind}\"")), "{text}");
            assert_eq!(toml::from_str::<TransferSpec>(&text).unwrap(), spec);
        }
    }

    /// EfficientNet-Lite0 at 96 px reading 48 px grey faces through its grey stem (resized
    /// first) and, at 48 px, without a resize: the features of the faces copied into three
    /// channels, standardised and resized (the path of training and other backends) within
    /// 1e-4, with batch norms that keep the features dependent on the faces.
    #[test]
    fn grey_faces_resized_first_give_the_features_of_the_resized_rgb_faces() {
        use crate::kernels::tests::{assert_close, random_input};
        let device = Device::flex();
        for input_size in [96, 48] {
            let spec = TransferSpec { input_size, ..TransferSpec::preset(BackboneKind::EfficientNetLite0) };
            let mut net = TransferNet::new(&spec, &device).unwrap();
            let Backbone::EfficientNetLite0(b) = &mut net.backbone else { unreachable!() };
            efficientnet::set_image_dependent_batch_norms(b);
            let faces = random_input([2, 1, 48, 48], &device, 3).abs().clamp_max(1.0);
            let rgb = efficientnet::standardised_rgb(faces.clone());
            let expected = net.backbone.features(if input_size == 48 { rgb } else { net.resize(rgb) });
            let got = net.features(faces.clone());
            assert_close(&got, &expected, 1e-4, &format!("{input_size} px"));
            let half = net.features(faces * 0.5);
            let moved = (half - expected).abs().max().into_data().try_to_vec::<f32>().unwrap()[0];
            assert!(moved > 0.1, "{input_size} px: the features hardly depend on the faces ({moved})");
        }
    }

    #[test]
    fn an_unknown_backbone_is_an_error_that_lists_the_known_ones() {
        let text = toml::to_string(&TransferSpec::vgg16()).unwrap().replace("\"vgg16\"", "\"resnet50\"");
        let err = toml::from_str::<TransferSpec>(&text).unwrap_err().to_string();
        assert!(err.contains("resnet50") && err.contains("efficientnet-lite0") && err.contains("vgg16"), "{err}");
    }
}
