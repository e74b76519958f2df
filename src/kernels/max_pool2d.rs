//! Max pooling, forward and backward, on Flex tensors `[batch, channels, height, width]`.

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{Flex, FlexTensor};
use burn::nn::pool::MaxPool2d;
use burn::tensor::Tensor;
use rayon::prelude::*;

use super::Sliding;
use super::flex::{self, TrackedTensor, TrainFlex};

/// `pool.forward(x)`, computed here when `x` is a Flex f32 tensor.
pub fn max_pool2d(pool: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    let [_, _, h, w] = x.dims();
    let geometry = if pool.dilation == [1, 1] && !pool.ceil_mode {
        Sliding::new(&pool.padding, [h, w], pool.kernel_size, pool.stride)
            // Every window must overlap the input for the forward pass below.
            .filter(|g| g.pad[0] < g.kernel[0] && g.pad[1] < g.kernel[1])
    } else {
        None
    };
    let Some(geometry) = geometry else { return pool.forward(x) };
    if let Some(t) = flex::tracked(&x) {
        return Tensor::from_primitive::<TrainFlex>(tracked_max_pool(t, geometry));
    }
    if let Some(t) = flex::plain(&x) {
        return Tensor::from_primitive::<Flex>(forward(&t, geometry).0);
    }
    pool.forward(x)
}

/// Max pooling's output and, for every output, the position of its maximum in its plane.
fn forward(x: &FlexTensor, g: Sliding) -> (FlexTensor, Vec<u32>) {
    let [n, c, h, w] = flex::dims4(x);
    let x = flex::values(x);
    let [oh, ow] = g.output;
    let mut out = vec![0f32; n * c * oh * ow];
    let mut argmax = vec![0u32; n * c * oh * ow];
    out.par_chunks_mut(oh * ow).zip(argmax.par_chunks_mut(oh * ow)).enumerate().for_each(|(p, (out, argmax))| {
        let plane = &x[p * h * w..(p + 1) * h * w];
        for oy in 0..oh {
            let rows = g.window(0, oy);
            for ox in 0..ow {
                let cols = g.window(1, ox);
                // Windows overlap the input: `max_pool2d` checked that padding < kernel.
                let mut best_at = rows.start * w + cols.start;
                let mut best = plane[best_at];
                for y in rows.clone() {
                    for (i, &v) in plane[y * w + cols.start..y * w + cols.end].iter().enumerate() {
                        if v > best {
                            best = v;
                            best_at = y * w + cols.start + i;
                        }
                    }
                }
                out[oy * ow + ox] = best;
                argmax[oy * ow + ox] = best_at as u32;
            }
        }
    });
    (flex::tensor(out, &[n, c, oh, ow]), argmax)
}

/// The input gradient: each output's gradient goes to the position of its maximum.
fn backward(grad: &FlexTensor, argmax: &[u32], input: [usize; 4]) -> FlexTensor {
    let [n, c, h, w] = input;
    let grad = flex::values(grad);
    let per_plane = grad.len() / (n * c);
    // Each plane's task zeroes its plane before adding into it (in parallel, while it is in
    // cache), rather than a zeroed vector (a pass of its own, on one thread).
    let write_plane = |_: &mut (), p: usize, dx: &mut [std::mem::MaybeUninit<f32>]| {
        let dx = flex::zeroed(dx);
        let (grad, argmax) = (&grad[p * per_plane..(p + 1) * per_plane], &argmax[p * per_plane..(p + 1) * per_plane]);
        for (&g, &at) in grad.iter().zip(argmax) {
            dx[at as usize] += g;
        }
    };
    // SAFETY: `write_plane` zeroes its whole plane first.
    let dx = unsafe { flex::write_in_parallel(n * c * h * w, h * w, || (), write_plane) };
    flex::tensor(dx, &input)
}

#[derive(Debug)]
struct MaxPoolBackward;

impl Backward<Flex, 1> for MaxPoolBackward {
    /// The input's shape and the position of each output's maximum.
    type State = ([usize; 4], Arc<Vec<u32>>);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [parent] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        if let Some(parent) = parent {
            let (input, argmax) = ops.state;
            grads.register::<Flex>(parent.id, backward(&grad, &argmax, input));
        }
    }
}

fn tracked_max_pool(x: TrackedTensor, g: Sliding) -> TrackedTensor {
    match MaxPoolBackward.prepare::<NoCheckpointing>([x.node()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let (out, argmax) = forward(x.primitive(), g);
            prep.finish((flex::dims4(x.primitive()), Arc::new(argmax)), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(x.primitive(), g).0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::tests::{assert_close, random_input};
    use burn::nn::PaddingConfig2d;
    use burn::nn::pool::MaxPool2dConfig;
    use burn::prelude::*;

    fn check(kernel: usize, stride: usize, padding: PaddingConfig2d, size: [usize; 4]) {
        let device = Device::flex().autodiff();
        let pool = MaxPool2dConfig::new([kernel, kernel]).with_strides([stride, stride]).with_padding(padding).init();
        let x = random_input(size, &device, 7).require_grad();
        let weights = random_input(pool.forward(x.clone()).dims(), &device, 8);

        // The kernel's path, not Burn's fallback, is what runs here.
        assert!(flex::tracked(&x).is_some() && flex::plain(&x.clone().inner()).is_some());
        let ours = max_pool2d(&pool, x.clone());
        let burns = pool.forward(x.clone());
        assert_close(&ours, &burns, 1e-6, "output");
        let ours_grad = x.grad(&(ours * weights.clone()).sum().backward()).unwrap();
        let burns_grad = x.grad(&(burns * weights).sum().backward()).unwrap();
        assert_close(&ours_grad, &burns_grad, 1e-6, "input gradient");

        // Inference (no autodiff) takes the same path.
        let plain = x.inner();
        assert_close(&max_pool2d(&pool, plain.clone()), &pool.forward(plain), 1e-6, "inference output");
    }

    #[test]
    fn matches_burn_for_the_notebook_pools() {
        check(2, 2, PaddingConfig2d::Same, [3, 4, 12, 12]);
        check(2, 2, PaddingConfig2d::Same, [2, 3, 7, 5]); // odd sizes: padding at the end
        check(4, 2, PaddingConfig2d::Same, [2, 3, 12, 12]); // overlapping windows
        check(3, 1, PaddingConfig2d::Valid, [2, 2, 9, 8]);
        check(3, 2, PaddingConfig2d::Explicit(1, 1, 1, 1), [2, 2, 9, 9]);
    }
}
