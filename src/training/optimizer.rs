//! Which optimizer a run uses: Adam (the notebook's, with Keras' epsilon), AdamW (decoupled weight
//! decay, Loshchilov & Hutter 2019), or SGD with momentum, optionally Nesterov's, as the FER2013
//! literature trains VGG-style nets and ResNets from scratch (e.g. Khaireddin & Chen 2021:
//! SGD-Nesterov, momentum 0.9, weight decay 1e-4).
//!
//! All three follow Burn's (`burn::optim`): SGD is Burn's own, Adam and AdamW are Burn's formulas
//! and state with the update computed in one parallel pass on the CPU ([`super::adam`]). This
//! module names them, keeps their settings in a run's `config.toml`, and sets the defaults PyTorch
//! users expect (Burn's SGD momentum has a dampening of 0.1 by default, PyTorch's has none; Burn's
//! AdamW decay is 1e-4, PyTorch's 1e-2).

use crate::error::{Result, bail, ensure};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use super::adam::{FusedAdam, FusedAdamW};
use burn::optim::{ModuleOptimizer, SgdConfig};
use serde::{Deserialize, Serialize};

/// Keras' Adam epsilon (Burn's default is 1e-5); the notebook's recipe uses it.
pub const KERAS_ADAM_EPSILON: f32 = 1e-7;

/// PyTorch's `torch.optim.AdamW` default weight decay.
pub const ADAMW_DEFAULT_WEIGHT_DECAY: f64 = 1e-2;

/// SGD's default momentum (PyTorch's usual setting for image classification).
pub const SGD_DEFAULT_MOMENTUM: f64 = 0.9;

/// An optimizer and its settings, saved in `config.toml` (`[optimizer] kind = "sgd"`, ...).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OptimizerKind {
    /// Adam with Keras' epsilon 1e-7 (the notebook's); weight penalties come from the net's `l2`.
    #[default]
    Adam,
    /// AdamW: Adam with weight decay applied to the weights directly (`w -= lr * decay * w`),
    /// not through the gradient (epsilon 1e-8 as in PyTorch).
    AdamW { weight_decay: f64 },
    /// Stochastic gradient descent with momentum (no dampening) and L2 weight decay added to
    /// the gradient, as `torch.optim.SGD`; `nesterov` uses Nesterov's momentum.
    Sgd { momentum: f64, nesterov: bool, weight_decay: f64 },
}

impl OptimizerKind {
    /// Parses the command line: `--optimizer adam|adamw|sgd|sgd-nesterov` with optional
    /// `--momentum` (SGD only, default 0.9) and `--weight-decay` (AdamW default 0.01, SGD 0).
    ///
    /// Errors name the option: an unknown name, a momentum outside [0, 1), a negative or
    /// non-finite decay, or a setting the optimizer does not have.
    pub fn parse(name: &str, momentum: Option<f64>, weight_decay: Option<f64>) -> Result<Self> {
        if let Some(m) = momentum {
            ensure!(Config @ "momentum", (0.0..1.0).contains(&m), "momentum must be in [0, 1) (got {m})");
        }
        if let Some(d) = weight_decay {
            ensure!(Config @ "weight_decay", d >= 0.0 && d.is_finite(), "weight_decay must be a finite number >= 0 (got {d})");
        }
        let sgd = |nesterov: bool| -> Result<Self> {
            let momentum = momentum.unwrap_or(SGD_DEFAULT_MOMENTUM);
            ensure!(Config @ "optimizer", !nesterov || momentum > 0.0, "optimizer sgd-nesterov needs a momentum above 0");
            Ok(Self::Sgd { momentum, nesterov, weight_decay: weight_decay.unwrap_or(0.0) })
        };
        match name {
            "adam" => {
                ensure!(Config @ "momentum", momentum.is_none(), "momentum is for optimizer sgd or sgd-nesterov");
                ensure!(Config @ "weight_decay",
                    weight_decay.is_none(),
                    "weight_decay is for adamw and sgd; Adam's weight penalty is the net's `l2` (or use optimizer adamw)"
                );
                Ok(Self::Adam)
            }
            "adamw" => {
                ensure!(Config @ "momentum", momentum.is_none(), "momentum is for optimizer sgd or sgd-nesterov");
                Ok(Self::AdamW { weight_decay: weight_decay.unwrap_or(ADAMW_DEFAULT_WEIGHT_DECAY) })
            }
            "sgd" => sgd(false),
            "sgd-nesterov" => sgd(true),
            other => {
                bail!(Config @ "optimizer", "optimizer: unknown optimizer `{other}` (known: adam, adamw, sgd, sgd-nesterov)")
            }
        }
    }

    /// The optimizer for a whole module.
    pub fn init(&self) -> ModuleOptimizer {
        match *self {
            Self::Adam => FusedAdam::init(KERAS_ADAM_EPSILON),
            Self::AdamW { weight_decay } => FusedAdamW::init(1e-8, weight_decay as f32),
            Self::Sgd { momentum, nesterov, weight_decay } => {
                let momentum = (momentum > 0.0).then(|| MomentumConfig { momentum, dampening: 0.0, nesterov });
                let decay = (weight_decay > 0.0).then(|| WeightDecayConfig { penalty: weight_decay as f32 });
                SgdConfig::new().with_momentum(momentum).with_weight_decay(decay).init()
            }
        }
    }

    /// A short description for run summaries, e.g. "SGD (Nesterov momentum 0.9, weight decay 0.0001)".
    pub fn describe(&self) -> String {
        match *self {
            Self::Adam => "Adam".into(),
            Self::AdamW { weight_decay } => format!("AdamW (weight decay {weight_decay})"),
            Self::Sgd { momentum, nesterov, weight_decay } => format!(
                "SGD ({}momentum {momentum}, weight decay {weight_decay})",
                if nesterov { "Nesterov " } else { "" }
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::{Module, Param};
    use burn::optim::GradientsParams;
    use burn::prelude::*;

    #[derive(Module, Debug)]
    struct One {
        w: Param<Tensor<1>>,
    }

    /// Runs `steps` steps of the optimizer on f(w) = w^2 / 2 (gradient w) from w = 1 at rate 0.1.
    fn trajectory(kind: OptimizerKind, steps: usize) -> Vec<f64> {
        let device = Device::flex().autodiff();
        let mut module = One { w: Param::from_tensor(Tensor::from_floats([1.0], &device)) };
        let mut optim = kind.init();
        let mut out = Vec::new();
        for _ in 0..steps {
            let loss = module.w.val().square().sum().div_scalar(2.0);
            let grads = GradientsParams::from_grads(loss.backward(), &module);
            module = optim.step(0.1, module, grads);
            out.push(module.w.val().into_scalar::<f32>() as f64);
        }
        out
    }

    /// The same updates as `torch.optim.SGD`'s documented algorithm, written out by hand.
    fn reference_sgd(momentum: f64, nesterov: bool, decay: f64, steps: usize) -> Vec<f64> {
        let (mut w, mut v, lr) = (1.0f64, 0.0f64, 0.1);
        let mut out = Vec::new();
        for t in 0..steps {
            let g = w + decay * w;
            v = if t == 0 { g } else { momentum * v + g };
            let step = if nesterov { g + momentum * v } else { v };
            w -= lr * step;
            out.push(w);
        }
        out
    }

    #[test]
    fn sgd_follows_pytorchs_update_rule() {
        for (nesterov, decay) in [(false, 0.0), (true, 0.0), (true, 0.05)] {
            let got = trajectory(OptimizerKind::Sgd { momentum: 0.9, nesterov, weight_decay: decay }, 6);
            let want = reference_sgd(0.9, nesterov, decay, 6);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-5, "nesterov {nesterov}, decay {decay}: {got:?} vs {want:?}");
            }
        }
        // Nesterov does move differently, so the comparison above can fail.
        assert!((reference_sgd(0.9, true, 0.0, 3)[2] - reference_sgd(0.9, false, 0.0, 3)[2]).abs() > 1e-3);
    }

    #[test]
    fn adamw_decays_the_weights_directly() {
        // With the gradient's Adam step fixed (first step: lr * sign(g) = 0.1), AdamW also takes
        // lr * decay * w off the weight: 1 - 0.1 * 0.5 * 1 - 0.1 = 0.85 (PyTorch applies the decay first).
        let got = trajectory(OptimizerKind::AdamW { weight_decay: 0.5 }, 1)[0];
        assert!((got - 0.85).abs() < 1e-4, "{got}");
        let plain = trajectory(OptimizerKind::Adam, 1)[0];
        assert!((plain - 0.9).abs() < 1e-4, "{plain}");
    }

    #[test]
    fn parse_sets_pytorch_defaults_and_names_the_option() {
        assert_eq!(OptimizerKind::parse("adam", None, None).unwrap(), OptimizerKind::Adam);
        assert_eq!(
            OptimizerKind::parse("adamw", None, None).unwrap(),
            OptimizerKind::AdamW { weight_decay: ADAMW_DEFAULT_WEIGHT_DECAY }
        );
        assert_eq!(
            OptimizerKind::parse("sgd-nesterov", None, Some(1e-4)).unwrap(),
            OptimizerKind::Sgd { momentum: 0.9, nesterov: true, weight_decay: 1e-4 }
        );
        for (name, m, d, expected) in [
            ("adam", Some(0.9), None, "momentum"),
            ("adam", None, Some(0.1), "weight_decay"),
            ("sgd", Some(1.0), None, "[0, 1)"),
            ("sgd", None, Some(f64::NAN), "weight_decay"),
            ("sgd-nesterov", Some(0.0), None, "above 0"),
            ("rmsprop", None, None, "known: adam"),
        ] {
            let err = OptimizerKind::parse(name, m, d).unwrap_err().to_string();
            assert!(err.contains(expected), "{name}: {err}");
        }
    }

    #[test]
    fn the_notebooks_adam_is_the_default_and_is_not_written_out() {
        assert_eq!(OptimizerKind::default(), OptimizerKind::Adam);
        let sgd = OptimizerKind::Sgd { momentum: 0.9, nesterov: true, weight_decay: 1e-4 };
        let text = toml::to_string(&Wrapper { optimizer: sgd }).unwrap();
        assert_eq!(toml::from_str::<Wrapper>(&text).unwrap().optimizer, sgd);
    }

    #[derive(Serialize, Deserialize)]
    struct Wrapper {
        optimizer: OptimizerKind,
    }
}
