//! Any trainable model: a layer-list net from a TOML spec, a transfer net on an ImageNet
//! backbone, or an ensemble of such nets (their class probabilities averaged). Training,
//! evaluation and run directories work with these types only.

use crate::error::Result;
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
    Ensemble(EnsembleSpec),
}

/// Several nets whose class probabilities are averaged (`ferkit export RUN1 RUN2 ...` writes
/// one). Each member reads the faces preprocessed its own way ([`ModelSpec::preprocess`] of the
/// member: a layer-list net standardises each face, a transfer net reads grey levels in [0, 1]),
/// so an ensemble runs through [`ModelSpec::into_members`]; [`Model::forward`] feeds every member
/// the same tensor and is right only when [`ModelSpec::reads_one_preprocessing`] holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnsembleSpec {
    pub name: String,
    pub members: Vec<ModelSpec>,
}

impl ModelSpec {
    pub fn name(&self) -> &str {
        match self {
            ModelSpec::Layers(s) => &s.name,
            ModelSpec::Transfer(s) => &s.name,
            ModelSpec::Ensemble(s) => &s.name,
        }
    }

    /// The learning rate that goes with the model unless the command line overrides it.
    pub fn learning_rate(&self) -> f64 {
        match self {
            ModelSpec::Layers(s) => s.learning_rate,
            ModelSpec::Transfer(s) => s.learning_rate,
            ModelSpec::Ensemble(s) => s.members.first().map_or(1e-3, ModelSpec::learning_rate),
        }
    }

    /// (trainable, non-trainable) parameters, Keras-style.
    pub fn param_counts(&self) -> Result<(usize, usize)> {
        match self {
            ModelSpec::Layers(s) => s.param_counts(),
            ModelSpec::Transfer(s) => s.param_counts(),
            ModelSpec::Ensemble(s) => s.members.iter().try_fold((0, 0), |(t, n), m| {
                let (mt, mn) = m.param_counts()?;
                Ok((t + mt, n + mn))
            }),
        }
    }

    /// Multiply-adds per image of a layer-list net ([`NetSpec::arithmetic`]); `None` for
    /// transfer nets and ensembles, which are not counted.
    pub fn arithmetic(&self) -> Option<super::spec::Arithmetic> {
        match self {
            ModelSpec::Layers(net) => net.arithmetic().ok(),
            ModelSpec::Transfer(_) | ModelSpec::Ensemble(_) => None,
        }
    }

    /// How images are scaled before the model sees them (an ensemble: its first member's; see
    /// [`ModelSpec::reads_one_preprocessing`]).
    pub fn preprocess(&self) -> Preprocess {
        match self {
            ModelSpec::Layers(_) => Preprocess::PerImage,
            ModelSpec::Transfer(_) => Preprocess::UnitRange,
            ModelSpec::Ensemble(s) => s.members.first().map_or(Preprocess::PerImage, ModelSpec::preprocess),
        }
    }

    /// Whether one preprocessed tensor suits the whole model: always for a single net; for an
    /// ensemble, when every member reads faces preprocessed the same way. Training, ONNX export
    /// and [`Model::forward`] need it; evaluation and prediction run each member on its own
    /// preprocessing ([`ModelSpec::into_members`]).
    pub fn reads_one_preprocessing(&self) -> bool {
        match self {
            ModelSpec::Ensemble(s) => s.members.iter().all(|m| m.preprocess() == self.preprocess()),
            _ => true,
        }
    }

    /// `net` (built from this spec) as the nets to run and the preprocessing each one reads: an
    /// ensemble's members, or the net itself. What [`crate::evaluation::inference`] takes.
    ///
    /// Panics when `net` is not of this spec's kind (an ensemble spec with another net).
    pub fn into_members(&self, net: Model) -> Vec<(Model, Preprocess)> {
        match (self, net) {
            (ModelSpec::Ensemble(s), Model::Ensemble(e)) => {
                assert_eq!(s.members.len(), e.members.len(), "the ensemble's spec and nets differ in length");
                e.members.into_iter().zip(&s.members).map(|(net, spec)| (net, spec.preprocess())).collect()
            }
            (ModelSpec::Ensemble(_), _) => panic!("an ensemble spec with a single net"),
            (spec, net) => vec![(net, spec.preprocess())],
        }
    }

    /// Checks the spec (shapes, ranges) without building the model.
    pub fn check(&self) -> Result<()> {
        match self {
            ModelSpec::Layers(s) => s.layer_infos().map(|_| ()),
            ModelSpec::Transfer(s) => s.check(),
            ModelSpec::Ensemble(s) => {
                crate::ensure!(Model, !s.members.is_empty(), "ensemble `{}` has no members", s.name);
                for (i, member) in s.members.iter().enumerate() {
                    crate::ensure!(
                        Model,
                        !matches!(member, ModelSpec::Ensemble(_)),
                        "ensemble `{}`: member {} is an ensemble itself; list its nets instead",
                        s.name,
                        i + 1
                    );
                    member.check().map_err(|e| crate::err!(Model, "ensemble `{}`, member {}: {e:#}", s.name, i + 1))?;
                }
                Ok(())
            }
        }
    }

    pub fn summary(&self) -> Result<String> {
        match self {
            ModelSpec::Layers(s) => super::summary::summary(s),
            ModelSpec::Transfer(s) => super::summary::transfer_summary(s),
            ModelSpec::Ensemble(s) => {
                let mut out =
                    format!("Ensemble \"{}\": the mean of {} nets' class probabilities\n", s.name, s.members.len());
                for (i, member) in s.members.iter().enumerate() {
                    out += &format!("\nMember {}:\n{}", i + 1, member.summary()?);
                }
                Ok(out)
            }
        }
    }

    /// The same model without pretrained weights to load, for building a net whose weights
    /// come from a run directory anyway.
    pub fn without_pretrained(&self) -> ModelSpec {
        match self {
            ModelSpec::Transfer(s) => ModelSpec::Transfer(TransferSpec { weights: None, ..s.clone() }),
            ModelSpec::Ensemble(s) => ModelSpec::Ensemble(EnsembleSpec {
                name: s.name.clone(),
                members: s.members.iter().map(ModelSpec::without_pretrained).collect(),
            }),
            other => other.clone(),
        }
    }

    /// A fresh model (transfer nets load their backbone weights here).
    pub fn build(&self, device: &Device) -> Result<Model> {
        Ok(match self {
            ModelSpec::Layers(s) => Model::Layers(Net::new(s, device)?),
            ModelSpec::Transfer(s) => Model::Transfer(TransferNet::new(s, device)?),
            ModelSpec::Ensemble(s) => {
                self.check()?;
                let members = s.members.iter().map(|m| m.build(device)).collect::<Result<Vec<_>>>()?;
                Model::Ensemble(Ensemble { members })
            }
        })
    }
}

#[derive(Module, Debug)]
pub enum Model {
    Layers(Net),
    Transfer(TransferNet),
    Ensemble(Ensemble),
}

/// The nets of an [`EnsembleSpec`].
#[derive(Module, Debug)]
pub struct Ensemble {
    pub members: Vec<Model>,
}

impl Model {
    /// Logits `[batch, 7]` for preprocessed images `[batch, 1, 48, 48]`. An ensemble feeds every
    /// member the same images: right only for one that [`ModelSpec::reads_one_preprocessing`]
    /// (otherwise run its members, [`ModelSpec::into_members`]).
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        match self {
            Model::Layers(m) => m.forward(images),
            Model::Transfer(m) => m.forward(images),
            // The log of the mean probability is a logit whose softmax is that mean.
            Model::Ensemble(e) => {
                let n = e.members.len() as f64;
                e.members
                    .iter()
                    .map(|m| burn::tensor::activation::softmax(m.forward(images.clone()), 1))
                    .reduce(|a, b| a + b)
                    .expect("check() refuses an empty ensemble")
                    .div_scalar(n)
                    .clamp_min(f32::MIN_POSITIVE as f64)
                    .log()
            }
        }
    }

    /// Every batch-norm layer of the net, in forward order (none for nets without them), for
    /// code that changes their settings, such as the EMA's statistics recalibration.
    pub fn batch_norms_mut(&mut self) -> Vec<&mut burn::nn::BatchNorm> {
        use super::net::Layer;
        use super::transfer::Backbone;
        let mut out = Vec::new();
        match self {
            Model::Layers(net) => {
                for layer in &mut net.layers {
                    match layer {
                        Layer::BatchNorm(bn) => out.push(bn),
                        Layer::Residual(r) => {
                            out.push(&mut r.bn1);
                            out.push(&mut r.bn2);
                            if let Some(p) = &mut r.projection {
                                out.push(&mut p.bn);
                            }
                        }
                        // Named one by one so that a new kind of layer must be placed here.
                        Layer::Dense(_)
                        | Layer::Conv(_)
                        | Layer::MaxPool(_)
                        | Layer::Dropout(_)
                        | Layer::Flatten(_)
                        | Layer::Activation(_)
                        | Layer::GlobalAvgPool(_) => {}
                    }
                }
            }
            Model::Transfer(t) => match &mut t.backbone {
                Backbone::EfficientNetLite0(e) => out.extend(e.batch_norms_mut()),
                // VGG16 has no batch norm.
                Backbone::Vgg16(_) => {}
            },
            Model::Ensemble(e) => {
                for member in &mut e.members {
                    out.extend(member.batch_norms_mut());
                }
            }
        }
        out
    }

    /// The L2 penalty Keras adds to the loss, if the model has one.
    pub fn l2_penalty(&self) -> Option<Tensor<1>> {
        match self {
            Model::Layers(m) => m.l2_penalty(),
            Model::Transfer(_) => None,
            Model::Ensemble(e) => e.members.iter().filter_map(Model::l2_penalty).reduce(|a, b| a + b),
        }
    }
}
