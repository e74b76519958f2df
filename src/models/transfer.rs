//! Transfer learning: an ImageNet backbone (EfficientNet-Lite0) under a new head, as the
//! notebook did with VGG16 (lower blocks frozen; dense 1024 relu, dropout 0.5, dense 7).
//!
//! Faces arrive as grey levels in [0, 1] (`Preprocess::UnitRange`); the net repeats them into
//! three channels, applies ImageNet's normalisation and resizes them to `input_size`.

use std::path::PathBuf;

use anyhow::{Result, bail};
use burn::nn::interpolate::{Interpolate2dConfig, InterpolateMode};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;
use serde::{Deserialize, Serialize};

use super::efficientnet::{EfficientNetLite0, FEATURES, IMAGENET_MEAN, IMAGENET_STD};
use crate::data::NUM_CLASSES;

/// Blocks in EfficientNet-Lite0 (`--freeze` counts the stem as block 0, then these).
pub const BACKBONE_BLOCKS: usize = 16;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferSpec {
    pub name: String,
    /// Only `efficientnet-lite0` for now.
    pub backbone: String,
    /// ImageNet weights (a PyTorch `.pth`); without them the backbone starts random.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<PathBuf>,
    /// Side the faces are resized to before the backbone (48 keeps them as they are).
    pub input_size: usize,
    /// Frozen from the bottom: the stem, then this many MBConv blocks (0..=16).
    pub frozen_blocks: usize,
    /// Hidden layers of the new head (ReLU), then dropout, then 7 outputs.
    pub head: Vec<usize>,
    pub dropout: f64,
    pub learning_rate: f64,
}

impl TransferSpec {
    /// The notebook's transfer recipe on EfficientNet-Lite0: all but the top stage frozen,
    /// head dense 1024 relu, dropout 0.5, dense 7; Adam 0.005.
    pub fn efficientnet_lite0() -> Self {
        TransferSpec {
            name: "efficientnet-lite0".into(),
            backbone: "efficientnet-lite0".into(),
            weights: None,
            input_size: 48,
            frozen_blocks: 11,
            head: vec![1024],
            dropout: 0.5,
            learning_rate: 0.005,
        }
    }

    pub fn check(&self) -> Result<()> {
        if self.backbone != "efficientnet-lite0" {
            bail!("backbone `{}` is not known (efficientnet-lite0)", self.backbone);
        }
        if self.frozen_blocks > BACKBONE_BLOCKS {
            bail!("frozen_blocks {} is more than the backbone's {BACKBONE_BLOCKS} blocks", self.frozen_blocks);
        }
        if self.input_size < 32 || self.input_size > 512 {
            bail!("input_size {} is outside 32..=512", self.input_size);
        }
        if !(0.0..1.0).contains(&self.dropout) || self.head.contains(&0) || !(self.learning_rate > 0.0) {
            bail!("the head needs non-zero widths, 0 <= dropout < 1 and a positive learning rate");
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
    pub backbone: EfficientNetLite0,
    pub head: Vec<Linear>,
    pub head_dropout: Dropout,
    pub output: Linear,
    pub input_size: usize,
}

impl TransferNet {
    /// Builds the net: the backbone with its ImageNet weights when the spec names them, the
    /// frozen part frozen, a fresh head.
    pub fn new(spec: &TransferSpec, device: &Device) -> Result<Self> {
        spec.check()?;
        let mut backbone = match &spec.weights {
            Some(path) => EfficientNetLite0::from_pytorch(path, device)?,
            None => EfficientNetLite0::new(super::efficientnet::IMAGENET_CLASSES, device),
        };
        backbone.conv_stem = backbone.conv_stem.freeze();
        backbone.bn0 = backbone.bn0.freeze();
        let blocks = std::mem::take(&mut backbone.blocks);
        backbone.blocks =
            blocks.into_iter().enumerate().map(|(i, b)| if i < spec.frozen_blocks { b.freeze() } else { b }).collect();
        if spec.frozen_blocks == BACKBONE_BLOCKS {
            backbone.conv_head = backbone.conv_head.freeze();
            backbone.bn1 = backbone.bn1.freeze();
        }
        let mut width = FEATURES;
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

    /// Logits `[batch, 7]` for grey faces in [0, 1], `[batch, 1, h, w]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let device = images.device();
        let [batch, _, h, w] = images.dims();
        let mean = Tensor::<1>::from_floats(IMAGENET_MEAN, &device).reshape([1, 3, 1, 1]);
        let std = Tensor::<1>::from_floats(IMAGENET_STD, &device).reshape([1, 3, 1, 1]);
        let mut x = (images.expand([batch, 3, h, w]) - mean) / std;
        if h != self.input_size || w != self.input_size {
            x = Interpolate2dConfig::new()
                .with_output_size(Some([self.input_size, self.input_size]))
                .with_mode(InterpolateMode::Linear)
                .init()
                .forward(x);
        }
        let mut z = self.backbone.features(x);
        for layer in &self.head {
            z = relu(layer.forward(z));
        }
        self.output.forward(self.head_dropout.forward(z))
    }
}
