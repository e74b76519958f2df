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
    let Some(geometry) = geometry(pool, [h, w]) else { return pool.forward(x) };
    if let Some(t) = flex::tracked(&x) {
        return Tensor::from_primitive::<TrainFlex>(tracked_max_pool(t, geometry));
    }
    if let Some(t) = flex::plain(&x) {
        return Tensor::from_primitive::<Flex>(forward_values(&t, geometry));
    }
    pool.forward(x)
}

/// The window geometry of `pool` on maps of `[h, w]`, where the kernels here cover it; `None`
/// (Burn's op) for dilation, ceil mode, or a window wholly in the padding.
pub(super) fn geometry(pool: &MaxPool2d, [h, w]: [usize; 2]) -> Option<Sliding> {
    if pool.dilation != [1, 1] || pool.ceil_mode {
        return None;
    }
    Sliding::new(&pool.padding, [h, w], pool.kernel_size, pool.stride)
        // Every window must overlap the input for the forward pass below: the first (the
        // padding before it is less than the kernel) and the last (explicit padding after
        // the input could be larger).
        .filter(|g| (0..2).all(|a| g.pad[a] < g.kernel[a] && !g.window(a, g.output[a] - 1).is_empty()))
}

/// Max pooling's output and, for every output, the position of its maximum in its plane (the
/// first in row-major order among equal values, the order in which PyTorch's CPU kernel scans).
///
/// Each output row at least [`TWO_STEPS_FROM`] wide, of windows larger than 2 x 2, is pooled in
/// two steps: down the window's rows for every input
/// column at once (contiguous, so vectorised: each column's maximum and the first row holding
/// it), then along each window's columns of those maxima, where a tie goes to the smaller row,
/// then the smaller column. That is the row-major first maximum, with `kh + kw` comparisons per
/// output instead of `kh * kw` one by one: the notebook search's 4 x 4 pools were a tenth of a
/// `tuned_cnn` training step value by value (`perf`, AMD EPYC, session 30). A NaN in a
/// window's first row can hide the rest of its column (the value-by-value loop let only the
/// window's first value hide the others). Without NaN, the positions are the same as value by
/// value, and so are the values, up to the sign of a zero tied with a zero of the other sign.
fn forward(x: &FlexTensor, g: Sliding) -> (FlexTensor, Vec<u32>) {
    let [n, c, h, w] = flex::dims4(x);
    let x = flex::values(x);
    let [oh, ow] = g.output;
    let [kh, kw] = g.kernel;
    let mut out = vec![0f32; n * c * oh * ow];
    let mut argmax = vec![0u32; n * c * oh * ow];
    let planes = out.par_chunks_mut(oh * ow).zip(argmax.par_chunks_mut(oh * ow)).enumerate();
    if ow < TWO_STEPS_FROM || kh + kw >= kh * kw {
        planes.for_each(|(p, (out, argmax))| pool_value_by_value(&x[p * h * w..(p + 1) * h * w], w, g, out, argmax));
        return (flex::tensor(out, &[n, c, oh, ow]), argmax);
    }
    // Per task: each input column's maximum down the window's rows, and its row.
    let columns = || (vec![0f32; w], vec![0u32; w]);
    planes.for_each_init(columns, |(col_max, col_row), (p, (out, argmax))| {
        let plane = &x[p * h * w..(p + 1) * h * w];
        for oy in 0..oh {
            // Windows overlap the input: `max_pool2d` checked that padding < kernel.
            let rows = g.window(0, oy);
            col_max.copy_from_slice(&plane[rows.start * w..(rows.start + 1) * w]);
            col_row.fill(rows.start as u32);
            for y in rows.start + 1..rows.end {
                fold_row(&plane[y * w..(y + 1) * w], y as u32, col_max, col_row);
            }
            let row = oy * ow..(oy + 1) * ow;
            pool_columns(col_max, col_row, g, &mut out[row.clone()], &mut argmax[row]);
        }
    });
    (flex::tensor(out, &[n, c, oh, ow]), argmax)
}

/// Output rows at least this wide are pooled in two steps (see [`forward`]) when the window is
/// larger than 2 x 2 (`kh + kw < kh * kw`: fewer comparisons); narrower rows and 2 x 2 windows
/// value by value, where the two steps' work per output row (a copy, the column maxima, a call
/// per row) costs more than they save. Timed on one thread, alternating, with a throwaway test
/// (not kept; AMD EPYC, session 30, idle machine), ms per pooling of the planes: 4 x 4 windows of
/// stride 2 on 48 x 48 maps (the search's), 1,792 planes: 14.2 / 13.1 in two steps against 17.2
/// / 17.1 value by value; on 24 x 24, 4,096 planes: 8.0 / 7.9 against 10.1 / 9.7; 2 x 2 on 24 x 24
/// (cnn3's), 3,072 planes: 4.7 / 3.9 against 4.0 / 3.7, no gain; 2 x 2 on 12 x 12 (cnn2's),
/// 6,144 planes, under load: 6.8-7.0 against 2.9-5.1, a loss.
const TWO_STEPS_FROM: usize = 12;

/// Whether output row `rows` (its input rows) is 2 x 2 windows of stride 2 over two whole input
/// rows with no padding before the row: the rows [`pool_2x2_row_with_positions`] (training) and
/// [`pool_2x2_row`] (inference) pool in one pass. One test for both, so that the two paths take
/// the same rows.
fn whole_2x2_row(g: Sliding, rows: &std::ops::Range<usize>) -> bool {
    g.kernel == [2, 2] && g.stride == [2, 2] && g.pad[1] == 0 && rows.len() == 2
}

/// A plane's pooling value by value: for each output, every value of its window in row-major
/// order, the first maximum kept.
fn pool_value_by_value(plane: &[f32], w: usize, g: Sliding, out: &mut [f32], argmax: &mut [u32]) {
    let ow = g.output[1];
    for oy in 0..g.output[0] {
        let rows = g.window(0, oy);
        if whole_2x2_row(g, &rows) {
            let (y, row) = (rows.start, oy * ow..(oy + 1) * ow);
            let (r0, r1) = (&plane[y * w..(y + 1) * w], &plane[(y + 1) * w..(y + 2) * w]);
            pool_2x2_row_with_positions(r0, r1, (y * w) as u32, w as u32, &mut out[row.clone()], &mut argmax[row]);
            continue;
        }
        for ox in 0..ow {
            let cols = g.window(1, ox);
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
}

/// One output row of 2 x 2 windows of stride 2 from input rows `r0` and `r1` (the notebook
/// nets' pools, no padding before the row; `r0` starts at position `first` of a plane of width
/// `w`), value by value in row-major order as [`pool_value_by_value`] (the same values and
/// positions), but each choice a bit mask instead of a branch, so that the loop vectorises
/// (AVX2 / AVX-512 where the CPU has them): value by value, cnn3's 2 x 2 pools were 12% of its
/// training step, their branches mispredicting on real maps (`perf`, AMD EPYC, session 31).
#[cfg_attr(feature = "avx512", multiversion(targets("x86_64+avx512f+avx2+avx", "x86_64+avx2+avx")))]
#[cfg_attr(not(feature = "avx512"), multiversion(targets("x86_64+avx2+avx")))]
fn pool_2x2_row_with_positions(r0: &[f32], r1: &[f32], first: u32, w: u32, out: &mut [f32], argmax: &mut [u32]) {
    // `if v > best { (best, at) = (v, p) }` without a branch.
    #[inline(always)]
    fn keep_larger((best, at): (f32, u32), (v, p): (f32, u32)) -> (f32, u32) {
        let take = 0u32.wrapping_sub((v > best) as u32);
        (f32::from_bits(best.to_bits() ^ ((best.to_bits() ^ v.to_bits()) & take)), at ^ ((at ^ p) & take))
    }
    let whole = out.len().min(r0.len() / 2);
    assert!(out.len() <= whole + 1, "pool_2x2_row_with_positions: {} outputs from {} columns", out.len(), r0.len());
    let outputs = out[..whole].iter_mut().zip(&mut argmax[..whole]);
    for (i, ((o, a), (top, bottom))) in outputs.zip(r0.chunks_exact(2).zip(r1.chunks_exact(2))).enumerate() {
        let x = first + 2 * i as u32;
        let best = keep_larger((top[0], x), (top[1], x + 1));
        let best = keep_larger(best, (bottom[0], x + w));
        (*o, *a) = keep_larger(best, (bottom[1], x + w + 1));
    }
    // A last window clipped to one column (an odd row, "same" padding after it).
    if whole < out.len() {
        let x = first + 2 * whole as u32;
        (out[whole], argmax[whole]) = keep_larger((r0[2 * whole], x), (r1[2 * whole], x + w));
    }
}

/// One output row from its columns' maxima (`col_max`, with the row of each in `col_row`): each
/// window's maximum along its columns and its position in the plane.
///
/// Windows wholly inside the row (all but the padded ends) are taken as slices of the row
/// (`windows(kw).step_by(stride)`), without working out each window's bounds or checking each
/// index: per output that bookkeeping cost more than the comparisons (cnn3's 2 x 2 pools).
fn pool_columns(col_max: &[f32], col_row: &[u32], g: Sliding, out: &mut [f32], argmax: &mut [u32]) {
    let (w, ow) = (g.input[1], g.output[1]);
    let (kw, stride, pad) = (g.kernel[1], g.stride[1], g.pad[1]);
    let (inner_start, inner_end) = inner_columns(g);
    for ox in (0..inner_start).chain(inner_end..ow) {
        let cols = g.window(1, ox);
        (out[ox], argmax[ox]) = first_maximum(&col_max[cols.clone()], &col_row[cols.clone()], cols.start, w);
    }
    if inner_end > inner_start {
        let x0 = inner_start * stride - pad;
        let values = col_max[x0..].windows(kw).step_by(stride);
        let rows = col_row[x0..].windows(kw).step_by(stride);
        let outputs = out[inner_start..inner_end].iter_mut().zip(&mut argmax[inner_start..inner_end]);
        for (i, ((v, r), (o, a))) in values.zip(rows).zip(outputs).enumerate() {
            (*o, *a) = first_maximum(v, r, x0 + i * stride, w);
        }
    }
}

/// The output columns `inner_start..inner_end` whose windows lie wholly inside the row
/// (`ox * stride >= pad` and `ox * stride - pad + kw <= w`): taken as slices of the row, without
/// working out each window's bounds.
fn inner_columns(g: Sliding) -> (usize, usize) {
    let (w, ow) = (g.input[1], g.output[1]);
    let (kw, stride, pad) = (g.kernel[1], g.stride[1], g.pad[1]);
    let inner_start = pad.div_ceil(stride).min(ow);
    let inner_end = if w + pad >= kw { ((w + pad - kw) / stride + 1).min(ow) } else { 0 }.max(inner_start);
    (inner_start, inner_end)
}

/// Max pooling's output alone, at inference, where no backward pass needs the positions of the
/// maxima: in two steps for every window, as [`forward`] pools large windows (each input
/// column's maximum down the window's rows, vectorised: `maxps`; then each window's maximum
/// along those; 2 x 2 windows of stride 2 make the same comparisons in one pass,
/// [`pool_2x2_row`]), with no position to keep and so no branch or select per value.
///
/// Why: value by value, with the position of the first maximum kept, cnn3's 2 x 2 pools were
/// 30% of its inference at batch 256 (`perf record ferkit bench --models cnn3:256
/// --infer-batches 256`, AMD EPYC, session 31): the comparisons branched, and real maps
/// mispredict. The values are [`forward`]'s (the same maximum of each window) except where a
/// window holds a NaN, or zeros of both signs as its maximum: then either may come out.
fn forward_values(x: &FlexTensor, g: Sliding) -> FlexTensor {
    let [n, c, h, w] = flex::dims4(x);
    let x = flex::values(x);
    let [oh, ow] = g.output;
    let write_plane = |col_max: &mut Vec<f32>, p: usize, out: &mut [std::mem::MaybeUninit<f32>]| {
        let plane = &x[p * h * w..(p + 1) * h * w];
        for (oy, out) in out.chunks_exact_mut(ow).enumerate() {
            // Windows overlap the input: `max_pool2d` checked that padding < kernel.
            let rows = g.window(0, oy);
            if whole_2x2_row(g, &rows) {
                let row = |y: usize| &plane[y * w..(y + 1) * w];
                pool_2x2_row(row(rows.start), row(rows.start + 1), out);
                continue;
            }
            col_max.copy_from_slice(&plane[rows.start * w..(rows.start + 1) * w]);
            for y in rows.start + 1..rows.end {
                fold_row_values(&plane[y * w..(y + 1) * w], col_max);
            }
            pool_columns_values(col_max, g, out);
        }
    };
    // SAFETY: `write_plane` writes every output of its plane, each row through `pool_2x2_row`
    // or `pool_columns_values` (both write every value of the row they are given).
    let out = unsafe { flex::write_in_parallel(n * c * oh * ow, oh * ow, || vec![0f32; w], write_plane) };
    flex::tensor(out, &[n, c, oh, ow])
}

/// Folds input row `row` into each column's maximum so far: `if v > m { v } else { m }`, which
/// x86 computes as `maxps` (a NaN in the row is passed over, one already kept stays).
#[cfg_attr(feature = "avx512", multiversion(targets("x86_64+avx512f+avx2+avx", "x86_64+avx2+avx")))]
#[cfg_attr(not(feature = "avx512"), multiversion(targets("x86_64+avx2+avx")))]
pub(super) fn fold_row_values(row: &[f32], col_max: &mut [f32]) {
    for (m, &v) in col_max.iter_mut().zip(row) {
        *m = if v > *m { v } else { *m };
    }
}

/// One output row of 2 x 2 windows of stride 2 from input rows `r0` and `r1` (the notebook
/// nets' pools, no padding before the row): the same comparisons in the same order as the two
/// steps (each column's maximum of its two rows, then the window's of its two columns), in one
/// pass that the compiler vectorises (AVX2 / AVX-512 where the CPU has them), with no copy of the
/// first row. A last window clipped to one column (an odd row: "same" padding after it) is
/// that column's maximum.
#[cfg_attr(feature = "avx512", multiversion(targets("x86_64+avx512f+avx2+avx", "x86_64+avx2+avx")))]
#[cfg_attr(not(feature = "avx512"), multiversion(targets("x86_64+avx2+avx")))]
fn pool_2x2_row(r0: &[f32], r1: &[f32], out: &mut [std::mem::MaybeUninit<f32>]) {
    let larger = |v: f32, m: f32| if v > m { v } else { m };
    let pairs = r0.chunks_exact(2).zip(r1.chunks_exact(2));
    let whole = out.len().min(r0.len() / 2);
    // Every value of `out` is written (the caller counts on it): `max_pool2d` refuses geometries
    // whose last window would be empty, so at most one window is clipped.
    assert!(out.len() <= whole + 1, "pool_2x2_row: {} outputs from {} columns", out.len(), r0.len());
    for (o, (a, b)) in out[..whole].iter_mut().zip(pairs) {
        o.write(larger(larger(b[1], a[1]), larger(b[0], a[0])));
    }
    if let Some(o) = out.get_mut(whole) {
        o.write(larger(r1[2 * whole], r0[2 * whole]));
    }
}

/// One output row from its columns' maxima: each window's maximum along its columns, the first
/// kept among equals.
fn pool_columns_values(col_max: &[f32], g: Sliding, out: &mut [std::mem::MaybeUninit<f32>]) {
    let (kw, stride, pad) = (g.kernel[1], g.stride[1], g.pad[1]);
    let maximum = |values: &[f32]| values[1..].iter().fold(values[0], |best, &v| if v > best { v } else { best });
    let (inner_start, inner_end) = inner_columns(g);
    for ox in (0..inner_start).chain(inner_end..g.output[1]) {
        out[ox].write(maximum(&col_max[g.window(1, ox)]));
    }
    if inner_end > inner_start {
        let x0 = inner_start * stride - pad;
        let windows = col_max[x0..].windows(kw).step_by(stride);
        for (o, values) in out[inner_start..inner_end].iter_mut().zip(windows) {
            o.write(maximum(values));
        }
    }
}

/// The maximum of one window's column maxima `values` (their rows in `rows`, the first column
/// at `x`) and its position in a plane of width `w`: a tie goes to the smaller position (the
/// smaller row, then the smaller column). `values` is not empty.
#[inline(always)]
fn first_maximum(values: &[f32], rows: &[u32], x: usize, w: usize) -> (f32, u32) {
    let at = |i: usize| rows[i] * w as u32 + (x + i) as u32;
    let (mut best, mut best_at) = (values[0], at(0));
    for (i, &v) in values.iter().enumerate().skip(1) {
        let p = at(i);
        // Conditional moves, not a branch: LLVM branched on `if` and on bit masks alike, and
        // on real maps those branches mispredicted (a third of cnn3's inference went here).
        let take = (v > best) | ((v == best) & (p < best_at));
        best_at = std::hint::select_unpredictable(take, p, best_at);
        // The value is the plain maximum (a tie keeps it): one `maxss`; a select of floats on
        // `take` still branched.
        best = if v > best { v } else { best };
    }
    (best, best_at)
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

        // Inference (no autodiff): the values alone.
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

    /// (kernel, stride, map size, padding) for the pooling tests: the notebook nets' 2 x 2
    /// windows (value by value with positions, and the one-pass rows; odd sizes, padding before
    /// and after), overlapping, apart and padded windows, and rows of TWO_STEPS_FROM and more
    /// with windows past 2 x 2 (two steps).
    fn geometries() -> Vec<(usize, usize, [usize; 2], PaddingConfig2d)> {
        vec![
            (2, 2, [24, 24], PaddingConfig2d::Same),               // cnn3's
            (2, 2, [7, 5], PaddingConfig2d::Same),                 // the last row and column clipped
            (2, 2, [6, 35], PaddingConfig2d::Same),                // one-pass rows, an odd tail
            (2, 2, [5, 9], PaddingConfig2d::Valid),                // the last row and column left out
            (2, 2, [7, 8], PaddingConfig2d::Explicit(1, 0, 0, 0)), // a row of padding on top
            (2, 2, [4, 5], PaddingConfig2d::Explicit(0, 0, 0, 2)), // two columns after
            (4, 2, [12, 12], PaddingConfig2d::Same),
            (3, 1, [9, 8], PaddingConfig2d::Same),
            (3, 1, [9, 8], PaddingConfig2d::Valid),
            (5, 2, [11, 6], PaddingConfig2d::Same),
            (2, 3, [10, 11], PaddingConfig2d::Valid), // windows apart
            (3, 2, [9, 9], PaddingConfig2d::Explicit(1, 1, 1, 1)),
            (4, 2, [26, 24], PaddingConfig2d::Same),
            (3, 1, [14, 13], PaddingConfig2d::Same),
            (3, 3, [10, 38], PaddingConfig2d::Valid),
            (3, 2, [9, 27], PaddingConfig2d::Explicit(1, 1, 1, 1)),
            (5, 2, [28, 26], PaddingConfig2d::Same),
            (3, 4, [10, 50], PaddingConfig2d::Valid), // windows apart
            (5, 1, [14, 16], PaddingConfig2d::Same),  // two windows clipped at each end
        ]
    }

    /// Ties (after a ReLU, a map is mostly zeros) go to the first maximum in row-major order,
    /// as value by value, for overlapping and padded windows.
    #[test]
    fn ties_go_to_the_first_maximum_in_row_major_order() {
        for (kernel, stride, size, padding) in geometries() {
            let g = Sliding::new(&padding, size, [kernel, kernel], [stride, stride]).unwrap();
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

    /// At inference the values alone ([`forward_values`]): the same bits as [`forward`]'s, on
    /// every geometry of [`geometries`], on random maps and on maps of three levels (ties
    /// everywhere, zeros as after a ReLU).
    #[test]
    fn inference_values_are_the_forward_passes() {
        let device = Device::flex();
        for (kernel, stride, size, padding) in geometries() {
            let g = Sliding::new(&padding, size, [kernel, kernel], [stride, stride]).unwrap();
            let random = random_input([2, 3, size[0], size[1]], &device, 9).into_data().try_to_vec::<f32>().unwrap();
            let levels: Vec<f32> = (0..random.len()).map(|i| ((i * 7919 + i / 3) % 3) as f32).collect();
            for values in [random, levels] {
                let x = flex::tensor(values, &[2, 3, size[0], size[1]]);
                let bits = |t: FlexTensor| flex::values(&t).iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                let what = format!("kernel {kernel}, stride {stride}, {size:?}");
                assert_eq!(bits(forward_values(&x, g)), bits(forward(&x, g).0), "{what}");
            }
        }
    }

    #[test]
    fn matches_burn_for_the_notebook_pools() {
        check(2, 2, PaddingConfig2d::Same, [3, 4, 12, 12]);
        check(2, 2, PaddingConfig2d::Same, [2, 3, 7, 5]); // odd sizes: padding at the end
        check(4, 2, PaddingConfig2d::Same, [2, 3, 12, 12]); // overlapping windows
        check(3, 1, PaddingConfig2d::Valid, [2, 2, 9, 8]);
        check(3, 2, PaddingConfig2d::Explicit(1, 1, 1, 1), [2, 2, 9, 9]);
        // Output rows of TWO_STEPS_FROM and more, windows past 2 x 2 (pooled in two steps).
        check(4, 2, PaddingConfig2d::Same, [2, 3, 26, 24]);
        check(3, 2, PaddingConfig2d::Explicit(1, 1, 1, 1), [2, 2, 9, 25]);
        check(3, 4, PaddingConfig2d::Valid, [2, 2, 10, 50]); // windows apart
        check(5, 1, PaddingConfig2d::Same, [2, 2, 14, 16]);
        // Padding after the input as large as the kernel: the last windows would be empty, so
        // Burn's pool runs (no panic).
        let pool = MaxPool2dConfig::new([2, 2])
            .with_strides([2, 2])
            .with_padding(PaddingConfig2d::Explicit(0, 0, 2, 2))
            .init();
        let x = random_input([1, 1, 4, 4], &Device::flex(), 3);
        assert_eq!(max_pool2d(&pool, x.clone()).dims(), pool.forward(x).dims());
        check(3, 1, PaddingConfig2d::Valid, [2, 2, 9, 16]);
    }
}
