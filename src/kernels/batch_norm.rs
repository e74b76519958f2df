//! Batch normalisation over axis 1 of `[batch, channels, ...]` Flex tensors: the training step
//! (batch statistics, with its backward step) and inference (running statistics).
//!
//! Why: Flex runs Burn's generic `batch_norm_train` as a chain of tensor ops, each a full pass
//! and two of them a transposing copy (`swap_dims(0, 1)` to reduce per channel); in a vgg-lite
//! step that was about a sixth of the time. Here each channel is one task that reads its
//! `batch` contiguous planes twice for the statistics and once to write the output, and the
//! backward step reads them twice. Sums run in a fixed order per channel, so results do not
//! depend on the thread count.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{Flex, FlexTensor};
use burn::nn::BatchNorm;
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

use super::flex::{self, TrackedTensor, TrainFlex};

/// `bn.forward(x)`, computed here when `x` and the parameters are Flex f32 tensors; in training
/// it also updates `bn`'s running statistics exactly as Burn's `BatchNorm` does.
pub fn batch_norm<const D: usize>(bn: &BatchNorm, x: Tensor<D>) -> Tensor<D> {
    let training = x.device().is_autodiff() && bn.training.is_enabled();
    if training {
        let (gamma, beta) = (bn.gamma.val(), bn.beta.val());
        let (Some(xt), Some(g), Some(b)) = (flex::tracked(&x), flex::tracked(&gamma), flex::tracked(&beta)) else {
            return bn.forward(x);
        };
        let (out, stats) = tracked_batch_norm(xt, g, b, bn.epsilon);
        update_running(bn, &stats, &x.device());
        return Tensor::from_primitive::<TrainFlex>(out);
    }
    if let (Some(xt), Some((scale, shift))) = (flex::plain(&x), inference_affine(bn)) {
        return Tensor::from_primitive::<Flex>(normalise(&xt, &scale, &shift));
    }
    bn.forward(x)
}

/// Batch norm at inference as the per-channel affine map `y = x * scale + shift` (running
/// statistics), `(scale, shift)` with one value per channel each; `None` when the parameters are
/// not Flex f32 tensors. [`batch_norm`]'s inference and the fused convolution
/// ([`super::fused::conv_bn_act`]) both normalise with these, so their outputs are the same bits.
pub(super) fn inference_affine(bn: &BatchNorm) -> Option<(Vec<f32>, Vec<f32>)> {
    let (g, b) = (flex::plain(&bn.gamma.val())?, flex::plain(&bn.beta.val())?);
    let (mean, var) = (flex::plain(&bn.running_mean.value())?, flex::plain(&bn.running_var.value())?);
    let inv_std = inverse_std(&flex::values(&var), bn.epsilon);
    Some(scale_and_shift(&flex::values(&g), &flex::values(&b), &flex::values(&mean), &inv_std))
}

/// The batch statistics of one training step, per channel.
#[derive(Debug, Clone)]
struct BatchStats {
    mean: Vec<f32>,
    /// Biased (divided by n), as Burn and Keras use for normalising and for the running variance.
    variance: Vec<f32>,
    inv_std: Vec<f32>,
}

/// `running = running * (1 - momentum) + batch * momentum`, as `BatchNorm::forward_train`.
fn update_running(bn: &BatchNorm, stats: &BatchStats, device: &burn::tensor::Device) {
    let channels = stats.mean.len();
    let blend = |running: Tensor<1>, batch: &[f32]| {
        let batch = Tensor::<1>::from_data(TensorData::new(batch.to_vec(), [channels]), device);
        running.to_device(device).mul_scalar(1.0 - bn.momentum).add(batch.mul_scalar(bn.momentum)).detach()
    };
    for (state, batch) in [(&bn.running_mean, &stats.mean), (&bn.running_var, &stats.variance)] {
        let running = synced(state);
        state.update(blend(running, batch));
        synced(state);
    }
}

/// The running state's value after folding in every thread's pending update. Burn keeps one
/// pending update per thread and `value_sync` folds in only the calling thread's, so a step run
/// on another pool thread than the step before (`util::on_pool` runs steps on whichever pool
/// thread is free) would read a stale value, and two pending updates would later be averaged.
/// Folding before reading and after writing keeps at most one pending update, so the chain of
/// values does not depend on which thread ran which step, and any thread reads the latest.
fn synced(state: &burn::module::RunningState<Tensor<1>>) -> Tensor<1> {
    use burn::module::Module;
    // `valid` folds every thread's pending update into the shared value (Burn 0.22.1,
    // `module/param/running.rs`: `sync`); the copy it returns is not needed.
    let _ = state.valid();
    state.value()
}

/// The layout of `[batch, channels, rest...]`: channel `c` of sample `n` is the `plane` values
/// from `(n * channels + c) * plane`.
#[derive(Debug, Clone, Copy)]
struct Planes {
    batch: usize,
    channels: usize,
    plane: usize,
}

impl Planes {
    fn of(t: &FlexTensor) -> Self {
        let shape = t.layout().shape();
        let (batch, channels) = (shape[0], shape[1]);
        Planes { batch, channels, plane: shape.num_elements() / (batch * channels).max(1) }
    }

    /// The values of channel `c`, one slice per sample.
    fn of_channel<'a>(&self, v: &'a [f32], c: usize) -> impl Iterator<Item = &'a [f32]> + 'a {
        let Planes { batch, channels, plane } = *self;
        (0..batch).map(move |n| &v[(n * channels + c) * plane..(n * channels + c + 1) * plane])
    }

    /// Where channel `c` of sample `n` starts.
    fn start(&self, n: usize, c: usize) -> usize {
        (n * self.channels + c) * self.plane
    }

    fn count(&self) -> f64 {
        (self.batch * self.plane) as f64
    }
}

/// `sum(f(a_i, b_i))` with eight running sums, which the compiler turns into vector code (a
/// single running sum would pin the order of every addition and stay scalar).
#[inline]
fn sum_of(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f64 {
    let mut lanes = [0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let (a_rest, b_rest) = (a8.remainder(), b8.remainder());
    for (x, y) in a8.zip(b8) {
        for i in 0..8 {
            lanes[i] += f(x[i], y[i]);
        }
    }
    let tail: f32 = a_rest.iter().zip(b_rest).map(|(&x, &y)| f(x, y)).sum();
    lanes.iter().map(|&v| v as f64).sum::<f64>() + tail as f64
}

fn inverse_std(variance: &[f32], epsilon: f64) -> Vec<f32> {
    variance.iter().map(|&v| (1.0 / (v as f64 + epsilon).sqrt()) as f32).collect()
}

/// Per channel, `y = x * scale + shift` is `(x - mean) * inv_std * gamma + beta`.
fn scale_and_shift(gamma: &[f32], beta: &[f32], mean: &[f32], inv_std: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let scale: Vec<f32> = gamma.iter().zip(inv_std).map(|(g, s)| g * s).collect();
    let shift = beta.iter().zip(mean).zip(&scale).map(|((b, m), s)| b - m * s).collect();
    (scale, shift)
}

/// `x * scale[c] + shift[c]` for every channel `c`.
fn normalise(x: &FlexTensor, scale: &[f32], shift: &[f32]) -> FlexTensor {
    let p = Planes::of(x);
    let values = flex::values(x);
    // One chunk per (sample, channel) plane: chunk i is channel i % channels.
    let out = flex::map_in_parallel(&values, p.plane, |i| {
        let (scale, shift) = (scale[i % p.channels], shift[i % p.channels]);
        move |v| v * scale + shift
    });
    flex::tensor(out, x.layout().shape())
}

/// The batch statistics of `x`, per channel.
fn statistics(x: &[f32], p: Planes, epsilon: f64) -> BatchStats {
    let (mean, variance): (Vec<f32>, Vec<f32>) = (0..p.channels)
        .into_par_iter()
        .map(|c| {
            let mean = p.of_channel(x, c).map(|v| sum_of(v, v, |a, _| a)).sum::<f64>() / p.count();
            let m = mean as f32;
            let variance = p.of_channel(x, c).map(|v| sum_of(v, v, |a, _| (a - m) * (a - m))).sum::<f64>() / p.count();
            (m, variance as f32)
        })
        .unzip();
    let inv_std = inverse_std(&variance, epsilon);
    BatchStats { mean, variance, inv_std }
}

fn forward(x: &FlexTensor, gamma: &FlexTensor, beta: &FlexTensor, epsilon: f64) -> (FlexTensor, BatchStats) {
    let stats = statistics(&flex::values(x), Planes::of(x), epsilon);
    let (scale, shift) = scale_and_shift(&flex::values(gamma), &flex::values(beta), &stats.mean, &stats.inv_std);
    (normalise(x, &scale, &shift), stats)
}

/// Gradients of the input, gamma and beta. With `xhat = (x - mean) * inv_std` and `m` values
/// per channel: `dbeta = sum(dy)`, `dgamma = sum(dy * xhat)`,
/// `dx = gamma * inv_std * (dy - dbeta / m - xhat * dgamma / m)`.
fn backward(x: &FlexTensor, gamma: &[f32], stats: &BatchStats, grad: &FlexTensor) -> (FlexTensor, Vec<f32>, Vec<f32>) {
    let p = Planes::of(x);
    let (x_values, dy) = (flex::values(x), flex::values(grad));
    // Each channel's task writes every value of its planes of dx: the vector is not zeroed first
    // (a pass on one thread before the parallel work, in every batch norm's backward step).
    let write_channel = |_: &mut (), c: usize, dx: flex::UninitParts| {
        let (mean, inv_std) = (stats.mean[c], stats.inv_std[c]);
        let (mut dbeta, mut dgamma) = (0f64, 0f64);
        for (x, dy) in p.of_channel(&x_values, c).zip(p.of_channel(&dy, c)) {
            dbeta += sum_of(dy, dy, |g, _| g);
            dgamma += sum_of(x, dy, |x, g| (x - mean) * g);
        }
        let dgamma = dgamma * inv_std as f64;
        let (mean_dy, mean_dy_xhat) = ((dbeta / p.count()) as f32, (dgamma / p.count()) as f32);
        let scale = gamma[c] * inv_std;
        for n in 0..p.batch {
            let start = p.start(n, c);
            // SAFETY: channel c's planes of dx belong to this task alone.
            let dx = unsafe { dx.part(start, p.plane) };
            let (x, dy) = (&x_values[start..start + p.plane], &dy[start..start + p.plane]);
            for ((d, &x), &g) in dx.iter_mut().zip(x).zip(dy) {
                d.write(scale * (g - mean_dy - (x - mean) * inv_std * mean_dy_xhat));
            }
        }
        (dgamma as f32, dbeta as f32)
    };
    // SAFETY: the channels' tasks write every value of their own planes, which cover the vector.
    let (dx, sums) = unsafe { flex::write_parts_and_collect(x_values.len(), p.channels, || (), write_channel) };
    let (dgamma, dbeta): (Vec<f32>, Vec<f32>) = sums.into_iter().unzip();
    (flex::tensor(dx, x.layout().shape()), dgamma, dbeta)
}

#[derive(Debug)]
struct BatchNormBackward;

impl Backward<Flex, 3> for BatchNormBackward {
    /// The input, gamma's values and the batch statistics.
    type State = (FlexTensor, Vec<f32>, BatchStats);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (x, gamma, stats) = ops.state;
        let (dx, dgamma, dbeta) = backward(&x, &gamma, &stats, &grad);
        let channels = [gamma.len()];
        for (node, grad) in
            [(node_x, dx), (node_gamma, flex::tensor(dgamma, &channels)), (node_beta, flex::tensor(dbeta, &channels))]
        {
            if let Some(node) = node {
                grads.register::<Flex>(node.id, grad);
            }
        }
    }
}

fn tracked_batch_norm(
    x: TrackedTensor,
    gamma: TrackedTensor,
    beta: TrackedTensor,
    epsilon: f64,
) -> (TrackedTensor, BatchStats) {
    let (out, stats) = forward(x.primitive(), gamma.primitive(), beta.primitive(), epsilon);
    let prepared =
        BatchNormBackward.prepare::<NoCheckpointing>([x.node(), gamma.node(), beta.node()]).compute_bound().stateful();
    let out = match prepared {
        OpsKind::Tracked(prep) => {
            let gamma_values = flex::values(gamma.primitive()).into_owned();
            prep.finish((x.primitive().clone(), gamma_values, stats.clone()), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(out),
    };
    (out, stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::tests::{assert_close, random_input};
    use burn::module::Module;
    use burn::nn::BatchNormConfig;
    use burn::prelude::*;

    /// Steps run on different threads (as `util::on_pool` may run them) give the running
    /// statistics of steps run on one thread, and any thread reads the latest value.
    #[test]
    fn running_statistics_do_not_depend_on_the_thread_of_each_step() {
        let device = Device::flex().autodiff();
        let module = || BatchNormConfig::new(3).with_momentum(0.3).init(&device);
        let (one, two) = (module(), module());
        for step in 0..3 {
            let x = random_input([4, 3, 5, 5], &device, 30 + step).mul_scalar(2.0).add_scalar(1.0);
            let _ = batch_norm(&one, x.clone());
            // Every step of `two` on a thread of its own.
            std::thread::scope(|s| {
                s.spawn(|| {
                    let _ = batch_norm(&two, x);
                });
            });
        }
        let values = |t: Tensor<1>| t.into_data().try_to_vec::<f32>().unwrap();
        for (a, b) in [(&one.running_mean, &two.running_mean), (&one.running_var, &two.running_var)] {
            let (a, b) = (values(a.value_sync()), values(b.value_sync()));
            assert_eq!(a, b);
            assert!(a.iter().any(|&v| v != 0.0 && v != 1.0), "the statistics moved: {a:?}");
        }
    }

    /// Our training step and Burn's agree on output, the three gradients and the running
    /// statistics after two steps; so do the inference outputs afterwards.
    fn check<const D: usize>(shape: [usize; D]) {
        let device = Device::flex().autodiff();
        // Two modules with their own running statistics (a clone would share them), the same
        // non-trivial gamma and beta.
        let module = || {
            let bn = BatchNormConfig::new(shape[1]).with_momentum(0.3).with_epsilon(1e-3).init(&device);
            BatchNorm {
                gamma: bn.gamma.map(|_| random_input([shape[1]], &device, 11).require_grad()),
                beta: bn.beta.map(|_| random_input([shape[1]], &device, 12).require_grad()),
                ..bn
            }
        };
        let (ours, burns) = (module(), module());
        let weights = random_input(shape, &device, 13);
        for step in 0..2 {
            // Shifted and scaled so that mean and variance are far from 0 and 1.
            let x = random_input(shape, &device, 20 + step).mul_scalar(3.0).add_scalar(5.0).require_grad();
            let (a, b) = (batch_norm(&ours, x.clone()), burns.forward(x.clone()));
            assert_close(&a, &b, 1e-4, "output");
            let ga = (a * weights.clone()).sum().backward();
            let gb = (b * weights.clone()).sum().backward();
            assert_close(&x.grad(&ga).unwrap(), &x.grad(&gb).unwrap(), 1e-4, "input gradient");
            for (a, b, what) in
                [(&ours.gamma, &burns.gamma, "gamma gradient"), (&ours.beta, &burns.beta, "beta gradient")]
            {
                assert_close(&a.val().grad(&ga).unwrap(), &b.val().grad(&gb).unwrap(), 1e-4, what);
            }
        }
        // `value_sync`: Burn's own module leaves its last update pending (`value` is one behind).
        assert_close(&ours.running_mean.value_sync(), &burns.running_mean.value_sync(), 1e-5, "running mean");
        assert_close(&ours.running_var.value_sync(), &burns.running_var.value_sync(), 1e-5, "running variance");
        let (ours, burns) = (ours.valid(), burns.valid());
        let x = random_input(shape, &Device::flex(), 30);
        assert!(flex::plain(&x).is_some());
        assert_close(&batch_norm(&ours, x.clone()), &burns.forward(x), 1e-4, "inference output");
    }

    #[test]
    fn matches_burn_on_images_and_on_flat_features() {
        check([5, 3, 7, 6]);
        check([4, 2, 1, 1]);
        check([9, 6]);
    }

    #[test]
    fn gradients_do_not_depend_on_the_thread_count() {
        let device = Device::flex().autodiff();
        let bn = BatchNormConfig::new(3).init(&device);
        let x = random_input([6, 3, 5, 5], &device, 4).require_grad();
        let input_grad = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let grads = batch_norm(&bn, x.clone()).powi_scalar(3).sum().backward();
                x.grad(&grads).unwrap().into_data().try_to_vec::<f32>().unwrap()
            })
        };
        assert_eq!(input_grad(1), input_grad(3));
    }
}
