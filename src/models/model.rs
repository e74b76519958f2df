//! Any trainable model: a layer-list net from a TOML spec, or a transfer net on an ImageNet
//! backbone. Training, evaluation and run directories work with these two types only.

use anyhow::Result;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::net::Net;
use super::spec::NetSpec;
use super::transfer::{TransferNet, TransferSpec};
use crate::data::batch::Preprocess;

/// What to build, as saved in a run's `config.toml` (`type = "layers"` or `"transfer"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ModelSpec {
    Layers(NetSpec),
    Transfer(TransferSpec),
}

impl ModelSpec {
    pub fn name(&self) -> &str {
        match self {
            ModelSpec::Layers(s) => &s.name,
            ModelSpec::Transfer(s) => &s.name,
        }
    }

    /// The learning rate that goes with the model unless the command line overrides it.
    pub fn learning_rate(&self) -> f64 {
        match self {
            ModelSpec::Layers(s) => s.learning_rate,
            ModelSpec::Transfer(s) => s.learning_rate,
        }
    }

    /// (trainable, non-trainable) parameters, Keras-style.
    pub fn param_counts(&self) -> Result<(usize, usize)> {
        match self {
            ModelSpec::Layers(s) => s.param_counts(),
            ModelSpec::Transfer(s) => s.param_counts(),
        }
    }

    /// How images are scaled before the model sees them.
    pub fn preprocess(&self) -> Preprocess {
        match self {
            ModelSpec::Layers(_) => Preprocess::PerImage,
            ModelSpec::Transfer(_) => Preprocess::UnitRange,
        }
    }

    /// Checks the spec (shapes, ranges) without building the model.
    pub fn check(&self) -> Result<()> {
        match self {
            ModelSpec::Layers(s) => s.layer_infos().map(|_| ()),
            ModelSpec::Transfer(s) => s.check(),
        }
    }

    pub fn summary(&self) -> Result<String> {
        match self {
            ModelSpec::Layers(s) => super::summary::summary(s),
            ModelSpec::Transfer(s) => super::summary::transfer_summary(s),
        }
    }

    /// The same model without pretrained weights to load, for building a net whose weights
    /// come from a run directory anyway.
    pub fn without_pretrained(&self) -> ModelSpec {
        match self {
            ModelSpec::Transfer(s) => ModelSpec::Transfer(TransferSpec { weights: None, ..s.clone() }),
            other => other.clone(),
        }
    }

    /// A fresh model (transfer nets load their backbone weights here).
    pub fn build(&self, device: &Device) -> Result<Model> {
        Ok(match self {
            ModelSpec::Layers(s) => Model::Layers(Net::new(s, device)?),
            ModelSpec::Transfer(s) => Model::Transfer(TransferNet::new(s, device)?),
        })
    }
}

#[derive(Module, Debug)]
pub enum Model {
    Layers(Net),
    Transfer(TransferNet),
}

impl Model {
    /// Logits `[batch, 7]` for preprocessed images `[batch, 1, 48, 48]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        match self {
            Model::Layers(m) => m.forward(images),
            Model::Transfer(m) => m.forward(images),
        }
    }

    /// The L2 penalty Keras adds to the loss, if the model has one.
    pub fn l2_penalty(&self) -> Option<Tensor<1>> {
        match self {
            Model::Layers(m) => m.l2_penalty(),
            Model::Transfer(_) => None,
        }
    }
}
