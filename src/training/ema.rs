//! An exponential moving average (EMA) of a net's weights over the optimizer steps, used for
//! validation and for the kept checkpoint (timm's `ModelEmaV2`, EmoNeXt's recipe on FER2013).
//!
//! After every step, `ema = d * ema + (1 - d) * weights` for every parameter and every batch-norm
//! running statistic (as timm averages buffers too), with the decay warmed up as TensorFlow's
//! `ExponentialMovingAverage(num_updates=...)`: `d = min(decay, (1 + n) / (10 + n))` at update n,
//! so that a short run's average is not dominated by its random initial weights.
//!
//! Averaged weights do not fit averaged batch-norm statistics: weights that turn from step to
//! step average to shorter vectors than any of them, so the pre-normalisation activations of the
//! averaged net are smaller than the averaged running statistics expect, and the mismatch grows
//! layer by layer (measured: a vgg-lite run with decay 0.999 fell from 48% to 36% on PublicTest
//! between epochs 5 and 14 while the trained net improved; the same epoch-14 average with its
//! statistics recomputed scores 59.5%, the net itself 56.7%). As for stochastic weight averaging
//! (Izmailov et al. 2018; PyTorch's `torch.optim.swa_utils.update_bn`), the statistics of the net
//! that is validated and kept are therefore computed anew from training images:
//! [`recalibrate_batch_norm`].

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
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

    /// Folds `model`'s weights after one optimizer step into the average. Tensors are paired by
    /// their place in the module tree (both nets come from one spec), not by parameter id: a
    /// resumed run's average and net are loaded into separately built nets whose ids differ.
    pub fn update(&mut self, model: &Model) {
        let decay = self.current_decay();
        // On a kernel thread: see `util::on_pool`.
        let device = self.model.devices().first().cloned().unwrap_or_else(Device::flex);
        self.model = crate::util::on_pool(&device, || {
            let mut collect = Collect::default();
            model.valid().visit(&mut collect);
            let mut blend = Blend { current: collect.values.into_iter(), decay };
            // `map` writes batch-norm statistics in place; a copy keeps earlier clones of the average unchanged.
            self.model.valid().map(&mut blend)
        });
        self.updates += 1;
    }
}

/// Every float tensor of a module (parameters and batch-norm statistics), flattened, in the
/// module tree's order.
#[derive(Default)]
struct Collect {
    values: Vec<Tensor<1>>,
}

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        let n = value.shape().num_elements();
        self.values.push(value.reshape([n]));
    }
}

/// `d * average + (1 - d) * current`, tensor by tensor in the module tree's order.
struct Blend {
    current: std::vec::IntoIter<Tensor<1>>,
    decay: f64,
}

impl ModuleMapper for Blend {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let current = self.current.next().expect("the average and the net come from one spec");
        let decay = self.decay;
        param.map(|average| {
            let shape = average.shape();
            assert_eq!(
                shape.num_elements(),
                current.shape().num_elements(),
                "the average and the net come from one spec"
            );
            average.mul_scalar(decay) + current.reshape(shape).mul_scalar(1.0 - decay)
        })
    }
}

/// `model` (on the plain device) with every trainable batch-norm layer's running mean and
/// variance replaced by the equal-weight mean, over `batches`, of that layer's batch statistics
/// (PyTorch's `torch.optim.swa_utils.update_bn`, 2.x): each batch is run through the net in
/// training mode (dropout on, as `update_bn` runs it) with the layer's momentum set to
/// `1 / k` for the k-th batch. `batches` are preprocessed images `[n, 1, 48, 48]` (f32) on
/// `train_device`, the autodiff form of the model's device. Frozen layers keep their statistics.
/// With no batches the statistics are left as they are. `model` itself is not changed.
pub fn recalibrate_batch_norm(model: &Model, batches: impl IntoIterator<Item = Tensor<4>>) -> Model {
    // `valid` gives fresh running-state cells (a clone would share them with `model`); `train`
    // puts the tensors on the autodiff device and turns the layers' training flags back on;
    // without gradients no autodiff graph is kept (with them each batch's graph stays alive,
    // as no backward pass frees it).
    let mut net = model.valid().train().set_require_grad(false);
    // Without a trainable batch-norm layer there is nothing to compute (the batches are not read).
    if !net.batch_norms_mut().iter().any(|bn| bn.training.is_enabled()) {
        return net.valid();
    }
    let momenta: Vec<f64> = net.batch_norms_mut().iter().map(|bn| bn.momentum).collect();
    for (k, images) in batches.into_iter().enumerate() {
        for bn in net.batch_norms_mut() {
            bn.momentum = 1.0 / (k + 1) as f64;
        }
        let _ = crate::util::on_pool(&images.device(), || net.forward(images));
    }
    for (bn, momentum) in net.batch_norms_mut().into_iter().zip(momenta) {
        bn.momentum = momentum;
    }
    net.valid()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::optim::{GradientsParams, SgdConfig};

    fn weights(model: &Model) -> Vec<f32> {
        let mut collect = Collect::default();
        model.visit(&mut collect);
        collect.values.into_iter().flat_map(|v| v.into_data().try_to_vec::<f32>().unwrap()).collect()
    }

    #[test]
    fn the_average_follows_the_formula_with_the_warmed_up_decay() {
        let device = Device::flex().autodiff();
        device.seed(5);
        let mut net = crate::models::resolve("cnn3").unwrap().build(&device).unwrap();
        // The average starts from a twin with other parameter ids, as after a resume (the two
        // are loaded into separately built nets).
        struct FreshIds;
        impl ModuleMapper for FreshIds {
            fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
                Param::initialized(burn::module::ParamId::new(), param.val())
            }
        }
        let twin = net.valid().map(&mut FreshIds);
        let mut ema = Ema::new(0.9, &twin, 0);
        let start = weights(&ema.model);
        assert_eq!(start, weights(&net.valid()));
        let mut optim = SgdConfig::new().init();
        let mut expected = start.clone();
        for step in 0..3u64 {
            let images = Tensor::<4>::from_inner(crate::kernels::tests::random_input(
                [4, 1, 48, 48],
                &Device::flex(),
                20 + step,
            ));
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

    /// After recalibration on batches A and B, each channel's running mean and (biased) variance
    /// are the mean of its statistics on A and on B, whatever they were before; the model given
    /// is left unchanged and the layer's momentum is restored.
    #[test]
    fn recalibrated_statistics_are_the_mean_of_the_batch_statistics() {
        use crate::kernels::tests::random_input;
        use crate::models::net::Layer;
        let text = "name = \"bn\"\ninput = [48, 48, 1]\n\
            [[layers]]\nkind = \"conv2d\"\nfilters = 3\nkernel = 1\n\
            [[layers]]\nkind = \"batchnorm\"\n\
            [[layers]]\nkind = \"flatten\"\n[[layers]]\nkind = \"dense\"\nunits = 7\n";
        let spec = crate::models::ModelSpec::Layers(crate::models::NetSpec::from_toml(text, "bn").unwrap());
        let plain = Device::flex();
        let model = spec.build(&plain).unwrap().valid();
        let stats = |m: &Model| {
            let Model::Layers(net) = m else { unreachable!() };
            let Layer::BatchNorm(bn) = &net.layers[1] else { panic!("batch norm second") };
            let read = |t: Tensor<1>| t.into_data().try_to_vec::<f32>().unwrap();
            (read(bn.running_mean.value()), read(bn.running_var.value()), bn.momentum)
        };
        let before = stats(&model);
        let batches: Vec<_> = [(3usize, 11u64, 3.0, 2.0), (5, 12, 0.5, -1.0)]
            .iter()
            .map(|&(n, seed, scale, shift)| {
                random_input([n, 1, 48, 48], &plain, seed).mul_scalar(scale).add_scalar(shift)
            })
            .collect();
        let Model::Layers(net) = &model else { unreachable!() };
        let Layer::Conv(conv) = &net.layers[0] else { panic!("a convolution first") };
        let plane = 48 * 48;
        let mut want = vec![(0.0f64, 0.0f64); 3];
        for x in &batches {
            let n = x.shape()[0];
            let out = crate::kernels::conv2d::conv2d(&conv.conv, x.clone()).into_data().try_to_vec::<f32>().unwrap();
            for (c, w) in want.iter_mut().enumerate() {
                let v: Vec<f64> = (0..n)
                    .flat_map(|i| out[(i * 3 + c) * plane..(i * 3 + c + 1) * plane].iter().map(|&v| v as f64))
                    .collect();
                let m = v.iter().sum::<f64>() / v.len() as f64;
                w.0 += m / 2.0;
                w.1 += v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64 / 2.0;
            }
        }
        let recalibrated = recalibrate_batch_norm(&model, batches.into_iter().map(Tensor::from_inner));
        let (mean, var, momentum) = stats(&recalibrated);
        for (c, (m, v)) in want.iter().enumerate() {
            assert!((mean[c] as f64 - m).abs() < 1e-4, "channel {c}: mean {} vs {m}", mean[c]);
            assert!((var[c] as f64 - v).abs() < 1e-3 * v.max(1.0), "channel {c}: variance {} vs {v}", var[c]);
        }
        assert_eq!(momentum, before.2, "the momentum is restored");
        assert_eq!(stats(&model), before, "the model given is unchanged");
        assert_ne!(mean, before.0, "the statistics moved, so the check above can fail");
    }
}
