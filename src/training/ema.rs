//! An exponential moving average (EMA) of a net's weights over the optimizer steps, used for
//! validation and for the kept checkpoint (timm's `ModelEmaV2`, EmoNeXt's recipe on FER2013).
//!
//! After every step, `ema = d * ema + (1 - d) * weights` for every parameter and every batch-norm
//! running statistic (as timm averages buffers too), with the decay warmed up as TensorFlow's
//! `ExponentialMovingAverage(num_updates=...)`: `d = min(decay, (1 + n) / (10 + n))` at update n,
//! so that a short run's average is not dominated by its random initial weights.

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::prelude::*;

use crate::models::Model;

/// The averaged net (on the plain, non-autodiff device) and how many updates it has seen.
#[derive(Clone, Debug)]
pub struct Ema {
    /// The target decay, e.g. 0.999.
    pub decay: f64,
    /// Optimizer steps averaged so far.
    pub updates: u64,
    /// The averaged weights, in inference mode.
    pub model: Model,
}

impl Ema {
    /// Starts the average at `model`'s weights (a training-device net is copied to the plain
    /// device), having seen `updates` steps (0 for a new run; the steps done for a resumed one).
    pub fn new(decay: f64, model: &Model, updates: u64) -> Self {
        Self { decay, updates, model: model.valid() }
    }

    /// The decay of the next update: `min(decay, (1 + n) / (10 + n))`.
    pub fn current_decay(&self) -> f64 {
        let n = self.updates as f64;
        self.decay.min((1.0 + n) / (10.0 + n))
    }

    /// Folds `model`'s weights after one optimizer step into the average.
    pub fn update(&mut self, model: &Model) {
        let decay = self.current_decay();
        let mut collect = Collect::default();
        model.valid().visit(&mut collect);
        let mut blend = Blend { current: collect.values, decay };
        // `map` writes batch-norm statistics in place; a copy keeps earlier clones of the average unchanged.
        self.model = self.model.valid().map(&mut blend);
        self.updates += 1;
    }
}

/// Every float tensor of a module, flattened, by parameter id.
#[derive(Default)]
struct Collect {
    values: HashMap<ParamId, Tensor<1>>,
}

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        let n = value.shape().num_elements();
        self.values.insert(param.id, value.reshape([n]));
    }
}

/// `d * average + (1 - d) * current` for every tensor whose id `current` has.
struct Blend {
    current: HashMap<ParamId, Tensor<1>>,
    decay: f64,
}

impl ModuleMapper for Blend {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(current) = self.current.get(&param.id) else { return param };
        let current = current.clone();
        let decay = self.decay;
        param.map(|average| {
            let shape = average.shape();
            average.mul_scalar(decay) + current.reshape(shape).mul_scalar(1.0 - decay)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::optim::{GradientsParams, SgdConfig};

    fn weights(model: &Model) -> Vec<f32> {
        let mut collect = Collect::default();
        model.visit(&mut collect);
        let mut ids: Vec<_> = collect.values.keys().copied().collect();
        ids.sort_by_key(|id| id.val());
        ids.iter().flat_map(|id| collect.values[id].clone().into_data().try_to_vec::<f32>().unwrap()).collect()
    }

    #[test]
    fn the_average_follows_the_formula_with_the_warmed_up_decay() {
        let device = Device::flex().autodiff();
        device.seed(5);
        let mut net = crate::models::resolve("cnn3").unwrap().build(&device).unwrap();
        let mut ema = Ema::new(0.9, &net, 0);
        let start = weights(&ema.model);
        assert_eq!(start, weights(&net.valid()));
        let mut optim = SgdConfig::new().init();
        let mut expected = start.clone();
        for step in 0..3u64 {
            let images = Tensor::<4>::random([4, 1, 48, 48], burn::tensor::Distribution::Default, &device);
            let loss = net.forward(images).square().mean();
            let grads = GradientsParams::from_grads(loss.backward(), &net);
            net = optim.step(0.5, net, grads);
            let d = 0.9f64.min((1.0 + step as f64) / (10.0 + step as f64));
            assert_eq!(ema.current_decay(), d);
            ema.update(&net);
            let now = weights(&net.valid());
            for (e, w) in expected.iter_mut().zip(&now) {
                *e = (d * *e as f64 + (1.0 - d) * *w as f64) as f32;
            }
        }
        let got = weights(&ema.model);
        let worst = got.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(worst < 1e-5, "largest difference {worst}");
        // The net moved, and the average lags behind it, so the check above can fail.
        let now = weights(&net.valid());
        assert!(got.iter().zip(&now).any(|(a, b)| (a - b).abs() > 1e-4));
        assert_eq!(ema.updates, 3);
        // The decay reaches its target once (1 + n) / (10 + n) passes it.
        let late = Ema { updates: 1000, ..ema };
        assert_eq!(late.current_decay(), 0.9);
    }
}
