//! Adam and AdamW as Burn defines them (burn-optim 0.22.1), with the update of a CPU parameter
//! computed in one parallel pass ([`crate::kernels::adam`]) instead of Burn's thirteen serial
//! tensor operations. The state is Burn's own (`AdamState`, `AdamWState`: step count and both
//! moments), so a run's `optimizer.bin` is written and read as before, and a run checkpointed
//! with Burn's optimizers resumes with these. On another backend (the `gpu` feature) the step is
//! Burn's own optimizer's.
//!
//! AMSGrad, Burn's cautious weight decay and Adam's coupled weight decay are not offered: ferkit's
//! recipes use none of them (Adam's weight penalty is the net's `l2`).

use burn::optim::{
    Adam, AdamConfig, AdamState, AdamW, AdamWConfig, AdamWState, AdaptiveMomentumState, ModuleOptimizer, Optimizer,
};
use burn::tensor::{Device, Tensor};

use crate::kernels::adam::{AdamHyper, step_on_cpu};

/// Adam (Kingma & Ba 2015) with Burn's formulas and state.
#[derive(Clone)]
pub struct FusedAdam {
    hyper: AdamHyper,
    /// Burn's optimizer with the same settings, for tensors off the CPU.
    burn: Adam,
}

/// AdamW (Loshchilov & Hutter 2019) with Burn's formulas and state.
#[derive(Clone)]
pub struct FusedAdamW {
    hyper: AdamHyper,
    burn: AdamW,
}

impl FusedAdam {
    /// Betas 0.9 and 0.999 (Burn's and Keras' defaults) and `epsilon`, as a whole-module optimizer.
    pub fn init(epsilon: f32) -> ModuleOptimizer {
        let hyper = AdamHyper { beta_1: 0.9, beta_2: 0.999, epsilon, decoupled_weight_decay: None };
        ModuleOptimizer::from(Self { hyper, burn: AdamConfig::new().with_epsilon(epsilon).build() })
    }
}

impl FusedAdamW {
    /// Betas 0.9 and 0.999, `epsilon` and the decoupled `weight_decay`, as a whole-module optimizer.
    pub fn init(epsilon: f32, weight_decay: f32) -> ModuleOptimizer {
        let hyper = AdamHyper { beta_1: 0.9, beta_2: 0.999, epsilon, decoupled_weight_decay: Some(weight_decay) };
        let burn = AdamWConfig::new().with_epsilon(epsilon).with_weight_decay(weight_decay).build();
        ModuleOptimizer::from(Self { hyper, burn })
    }
}

/// One step on the CPU: the new weights and moment state, or everything back when the tensors
/// are not CPU tensors.
#[allow(clippy::type_complexity)]
fn fused<const D: usize>(
    hyper: &AdamHyper,
    lr: f64,
    tensor: Tensor<D>,
    grad: Tensor<D>,
    state: Option<AdaptiveMomentumState<D>>,
) -> Result<(Tensor<D>, AdaptiveMomentumState<D>), (Tensor<D>, Tensor<D>, Option<AdaptiveMomentumState<D>>)> {
    // Burn's AMSGrad state (never written by ferkit's recipes) goes to Burn's step.
    if state.as_ref().is_some_and(|s| s.max_moment_2.is_some()) {
        return Err((tensor, grad, state));
    }
    let time = state.as_ref().map_or(1, |s| s.time + 1);
    let moments = state.map(|s| (s.moment_1, s.moment_2));
    match step_on_cpu(hyper, lr, time, tensor, &grad, moments) {
        Ok([tensor, moment_1, moment_2]) => {
            Ok((tensor, AdaptiveMomentumState { time, moment_1, moment_2, max_moment_2: None }))
        }
        Err((tensor, moments)) => {
            let state = moments.map(|(moment_1, moment_2)| AdaptiveMomentumState {
                time: time - 1,
                moment_1,
                moment_2,
                max_moment_2: None,
            });
            Err((tensor, grad, state))
        }
    }
}

impl Optimizer for FusedAdam {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<AdamState<D>>,
    ) -> (Tensor<D>, Option<AdamState<D>>) {
        match fused(&self.hyper, lr, tensor, grad, state.map(|s| s.momentum)) {
            Ok((tensor, momentum)) => (tensor, Some(AdamState::new(momentum))),
            Err((tensor, grad, momentum)) => self.burn.step(lr, tensor, grad, momentum.map(AdamState::new)),
        }
    }

    fn to_device<const D: usize>(state: AdamState<D>, device: &Device) -> AdamState<D> {
        <Adam as Optimizer>::to_device(state, device)
    }
}

impl Optimizer for FusedAdamW {
    type State<const D: usize> = AdamWState<D>;

    fn step<const D: usize>(
        &self,
        lr: f64,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<AdamWState<D>>,
    ) -> (Tensor<D>, Option<AdamWState<D>>) {
        match fused(&self.hyper, lr, tensor, grad, state.map(|s| s.momentum)) {
            Ok((tensor, momentum)) => (tensor, Some(AdamWState::new(momentum))),
            Err((tensor, grad, momentum)) => self.burn.step(lr, tensor, grad, momentum.map(AdamWState::new)),
        }
    }

    fn to_device<const D: usize>(state: AdamWState<D>, device: &Device) -> AdamWState<D> {
        <AdamW as Optimizer>::to_device(state, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::GradientsParams;
    use burn::tensor::Distribution;

    /// `steps` optimizer steps on a linear layer (`inputs` x `outputs`; above 16,384 weights the
    /// update runs in parallel chunks) from one seed, the loss fixed by the step number; returns
    /// every weight and bias after each step.
    fn run(make: &dyn Fn() -> ModuleOptimizer, inputs: usize, outputs: usize, steps: usize) -> Vec<Vec<f32>> {
        let device = Device::flex().autodiff();
        device.seed(7);
        let mut layer: Linear = LinearConfig::new(inputs, outputs).init(&device);
        let mut optim = make();
        let mut out = Vec::new();
        for step in 0..steps {
            let x = Tensor::<2>::ones([3, inputs], &device).mul_scalar(0.1 * (step + 1) as f32);
            let loss = layer.forward(x).sin().sum();
            let grads = GradientsParams::from_grads(loss.backward(), &layer);
            layer = crate::util::on_pool(&device, || optim.step(1e-2, layer, grads));
            let mut values = layer.weight.val().into_data().try_to_vec::<f32>().unwrap();
            values.extend(layer.bias.as_ref().unwrap().val().into_data().try_to_vec::<f32>().unwrap());
            out.push(values);
        }
        out
    }

    #[test]
    fn the_fused_update_gives_burns_adam_and_adamw_bit_for_bit() {
        for (inputs, outputs) in [(5, 3), (150, 200)] {
            let ours = run(&|| FusedAdam::init(1e-7), inputs, outputs, 4);
            let burn = run(&|| AdamConfig::new().with_epsilon(1e-7).init(), inputs, outputs, 4);
            assert_eq!(ours, burn, "Adam, {inputs} x {outputs}");
            let ours = run(&|| FusedAdamW::init(1e-8, 0.05), inputs, outputs, 4);
            let burn =
                run(&|| AdamWConfig::new().with_epsilon(1e-8).with_weight_decay(0.05).init(), inputs, outputs, 4);
            assert_eq!(ours, burn, "AdamW, {inputs} x {outputs}");
            // The weights do move every step, so the comparisons above can fail.
            assert!(ours.windows(2).all(|w| w[0] != w[1]));
        }
    }

    #[test]
    fn the_fused_update_runs_on_cpu_tensors() {
        // The comparisons with Burn's optimizers above hold trivially if every step fell back to
        // Burn's: on the CPU it must not.
        let device = Device::flex();
        let hyper = AdamHyper { beta_1: 0.9, beta_2: 0.999, epsilon: 1e-7, decoupled_weight_decay: None };
        let [w, g] = [0, 1].map(|_| Tensor::<2>::random([20, 30], Distribution::Default, &device));
        let Ok((w, state)) = fused(&hyper, 1e-2, w, g.clone(), None) else { panic!("the first step fell back") };
        assert!(fused(&hyper, 1e-2, w, g, Some(state)).is_ok(), "the second step fell back");
    }

    #[test]
    fn a_state_saved_by_burns_adam_resumes_in_the_fused_one() {
        // Two steps with Burn's Adam, its record loaded into the fused Adam, two more steps: the
        // same weights as four steps of Burn's Adam (a checkpoint written before this optimizer).
        let device = Device::flex().autodiff();
        let mut results = Vec::new();
        for switch in [false, true] {
            device.seed(3);
            let mut layer: Linear = LinearConfig::new(4, 6).init(&device);
            let mut optim = AdamConfig::new().with_epsilon(1e-7).init();
            for step in 0..4 {
                if step == 2 && switch {
                    optim = FusedAdam::init(1e-7).load_record(optim.to_record());
                }
                let x = Tensor::<2>::ones([2, 4], &device).mul_scalar(0.3 * (step + 1) as f32);
                let grads = GradientsParams::from_grads(layer.forward(x).cos().sum().backward(), &layer);
                layer = optim.step(1e-2, layer, grads);
            }
            results.push(layer.weight.val().into_data().try_to_vec::<f32>().unwrap());
        }
        assert_eq!(results[0], results[1]);
    }
}
