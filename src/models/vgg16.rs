//! VGG16's convolutional part (Simonyan and Zisserman, 2015; configuration D), shaped to load
//! ImageNet weights saved from torchvision (`torchvision.models.vgg16().state_dict()`), the
//! backbone the notebook fine-tuned.
//!
//! Five blocks of 3x3 "same" convolutions with ReLU, each closed by a 2x2 max pool; the
//! features are the last block's output averaged over its positions (at the notebook's 48x48
//! input that output is 1x1x512, so this is Keras' `Flatten`). torchvision's classifier
//! (`classifier.*`, 120 M parameters) is not loaded: transfer learning replaces it.

use std::path::Path;

use crate::error::Result;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::prelude::*;

use crate::kernels::fused::{Activation, conv_bn_act};
use crate::kernels::max_pool2d::max_pool2d;

/// Output channels of each block's convolutions.
pub const BLOCKS: [&[usize]; 5] = [&[64, 64], &[128, 128], &[256, 256, 256], &[512, 512, 512], &[512, 512, 512]];
pub const FEATURES: usize = 512;

#[derive(Module, Debug)]
pub struct VggBlock {
    pub convs: Vec<Conv2d>,
    pub pool: MaxPool2d,
}

#[derive(Module, Debug)]
pub struct Vgg16 {
    pub blocks: Vec<VggBlock>,
}

impl Vgg16 {
    /// Freshly initialised (Burn's default initialisation).
    pub fn new(device: &Device) -> Self {
        let mut channels = 3;
        let blocks = BLOCKS
            .iter()
            .map(|widths| {
                let convs = widths
                    .iter()
                    .map(|&width| {
                        let conv = Conv2dConfig::new([channels, width], [3, 3])
                            .with_padding(PaddingConfig2d::Same)
                            .init(device);
                        channels = width;
                        conv
                    })
                    .collect();
                VggBlock { convs, pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init() }
            })
            .collect();
        Vgg16 { blocks }
    }

    /// torchvision's names for each convolution: `features.N` counts every layer of its
    /// `nn.Sequential`, ReLUs and pools included.
    pub fn torchvision_names() -> Vec<(String, String)> {
        let mut names = Vec::new();
        let mut index = 0;
        for (b, widths) in BLOCKS.iter().enumerate() {
            for c in 0..widths.len() {
                names.push((format!("features.{index}"), format!("blocks.{b}.convs.{c}")));
                index += 2; // the convolution and its ReLU
            }
            index += 1; // the block's max pool
        }
        names
    }

    /// The net with the weights of a torchvision VGG16 state dict.
    pub fn from_pytorch(path: &Path, device: &Device) -> Result<Self> {
        let mut net = Self::new(device);
        let names = Self::torchvision_names();
        let patterns: Vec<(String, String)> =
            names.iter().map(|(torch, ours)| (format!(r"^{}\.", regex_escape(torch)), format!("{ours}."))).collect();
        let remaps: Vec<(&str, &str)> = patterns.iter().map(|(p, r)| (p.as_str(), r.as_str())).collect();
        super::pytorch_weights::load(&mut net, path, "VGG16 (torchvision)", &remaps, |k| k.starts_with("classifier."))?;
        Ok(net)
    }

    /// Features `[batch, 512]` for ImageNet-normalised images `[batch, 3, h, w]` (h, w >= 32).
    pub fn features(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = images;
        for block in &self.blocks {
            for conv in &block.convs {
                x = conv_bn_act(conv, None, Some(Activation::Relu), x);
            }
            x = max_pool2d(&block.pool, x);
        }
        let [batch, channels, _, _] = x.dims();
        x.mean_dim(3).mean_dim(2).reshape([batch, channels])
    }
}

fn regex_escape(text: &str) -> String {
    text.replace('.', r"\.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_torchvision() {
        let names = Vgg16::torchvision_names();
        let torch: Vec<&str> = names.iter().map(|(t, _)| t.as_str()).collect();
        // torchvision.models.vgg16().features: convolutions at these indices.
        let expected = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28].map(|i| format!("features.{i}"));
        assert_eq!(torch, expected);
        assert_eq!(names[12].1, "blocks.4.convs.2");
    }

    #[test]
    fn has_vgg16s_convolutional_parameter_count() {
        use burn::module::Module;
        // 138,357,544 in all, less the classifier's 123,642,856.
        assert_eq!(Vgg16::new(&Device::flex()).num_params(), 14_714_688);
    }
}
