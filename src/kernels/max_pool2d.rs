//! Max pooling, forward and backward, on Flex tensors `[batch, channels, height, width]`.

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{Flex, FlexTensor};
use burn::nn::pool::MaxPool2d;
use burn::tensor::Tensor;
use multiversion::multiversion;
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

/// Max pooling's output and, for every output, the position of its maximum in its plane (the
/// first in row-major order among equal values, the order in which PyTorch's CPU kernel scans).
///
/// Each band of output rows is pooled in two steps: down the window's rows for every input
/// column at once (contiguous, so vectorised: each column's maximum and the first row holding
/// it), then along each window's columns of those maxima, where a tie goes to the smaller row,
/// then the smaller column. That is the row-major first maximum, with `kh + kw` comparisons per
/// output instead of `kh * kw` one by one: the notebook search's 4 x 4 pools were a tenth of a
/// `tuned_cnn` training step value by value (`perf`, AMD EPYC, session 30). A NaN in a
/// window's first row can hide the rest of its column (the value-by-value loop let only the
/// window's first value hide the others); inputs without NaN pool exactly as before.
fn forward(x: &FlexTensor, g: Sliding) -> (FlexTensor, Vec<u32>) {
    let [n, c, h, w] = flex::dims4(x);
    let x = flex::values(x);
    let [oh, ow] = g.output;
    let mut out = vec![0f32; n * c * oh * ow];
    let mut argmax = vec![0u32; n * c * oh * ow];
    // Per task: each input column's maximum down the window's rows, and its row.
    let columns = || (vec![0f32; w], vec![0u32; w]);
    out.par_chunks_mut(oh * ow).zip(argmax.par_chunks_mut(oh * ow)).enumerate().for_each_init(
        columns,
        |(col_max, col_row), (p, (out, argmax))| {
            let plane = &x[p * h * w..(p + 1) * h * w];
            for oy in 0..oh {
                // Windows overlap the input: `max_pool2d` checked that padding < kernel.
                let rows = g.window(0, oy);
                col_max.copy_from_slice(&plane[rows.start * w..(rows.start + 1) * w]);
                col_row.fill(rows.start as u32);
                for y in rows.start + 1..rows.end {
                    fold_row(&plane[y * w..(y + 1) * w], y as u32, col_max, col_row);
                }
                for ox in 0..ow {
                    let cols = g.window(1, ox);
                    let (mut best, mut best_row, mut best_col) = (col_max[cols.start], col_row[cols.start], cols.start);
                    for x in cols.start + 1..cols.end {
                        let (v, r) = (col_max[x], col_row[x]);
                        let take = v > best || (v == best && r < best_row);
                        best_row = if take { r } else { best_row };
                        best_col = if take { x } else { best_col };
                        best = if take { v } else { best };
                    }
                    out[oy * ow + ox] = best;
                    argmax[oy * ow + ox] = best_row * w as u32 + best_col as u32;
                }
            }
        },
    );
    (flex::tensor(out, &[n, c, oh, ow]), argmax)
}

/// Folds input row `y` into each column's maximum so far and the row holding it (a strictly
/// greater value takes its place, so ties keep the earlier row). The choice is a bit mask, not a
/// branch or a conditional store, so that the loop vectorises (with conditional stores, LLVM
/// extracted the comparison's lanes one by one); compiled for AVX2 and AVX-512 too.
#[cfg_attr(feature = "avx512", multiversion(targets("x86_64+avx512f+avx2+avx", "x86_64+avx2+avx")))]
#[cfg_attr(not(feature = "avx512"), multiversion(targets("x86_64+avx2+avx")))]
fn fold_row(row: &[f32], y: u32, col_max: &mut [f32], col_row: &mut [u32]) {
    for ((m, r), &v) in col_max.iter_mut().zip(col_row.iter_mut()).zip(row) {
        let take = 0u32.wrapping_sub((v > *m) as u32);
        *r ^= (*r ^ y) & take;
        *m = f32::from_bits(m.to_bits() ^ ((m.to_bits() ^ v.to_bits()) & take));
    }
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

    /// The position of each window's first maximum in row-major order, value by value.
    fn first_maxima(x: &[f32], [h, w]: [usize; 2], g: Sliding) -> Vec<u32> {
        let mut at = Vec::new();
        for oy in 0..g.output[0] {
            for ox in 0..g.output[1] {
                let mut best: Option<(f32, usize)> = None;
                for y in g.window(0, oy) {
                    for x_ in g.window(1, ox) {
                        if best.is_none_or(|(b, _)| x[y * w + x_] > b) {
                            best = Some((x[y * w + x_], y * w + x_));
                        }
                    }
                }
                at.push(best.unwrap().1 as u32);
            }
        }
        assert_eq!(at.len(), g.output[0] * g.output[1], "{h} x {w}");
        at
    }

    /// Ties (after a ReLU, a map is mostly zeros) go to the first maximum in row-major order,
    /// as value by value, for overlapping and padded windows.
    #[test]
    fn ties_go_to_the_first_maximum_in_row_major_order() {
        for (kernel, stride, size) in [(4, 2, [12, 12]), (2, 2, [7, 5]), (3, 1, [9, 8]), (5, 2, [11, 6])] {
            let g = Sliding::new(&PaddingConfig2d::Same, size, [kernel, kernel], [stride, stride]).unwrap();
            // Three levels only: every window has ties.
            let values: Vec<f32> = (0..2 * size[0] * size[1]).map(|i| ((i * 7919 + i / 3) % 3) as f32).collect();
            let x = flex::tensor(values.clone(), &[1, 2, size[0], size[1]]);
            let (_, argmax) = forward(&x, g);
            let plane = size[0] * size[1];
            let expected: Vec<u32> =
                (0..2).flat_map(|p| first_maxima(&values[p * plane..(p + 1) * plane], size, g)).collect();
            assert_eq!(argmax, expected, "kernel {kernel}, stride {stride}, {size:?}");
        }
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
