//! The forward pass of a convolution on a small map whose "same" padding is a large share of
//! its taps, computed without multiplying the kernel rows that fall wholly in the padding:
//! [`super::forward`]'s product `W * cols`, split by kernel row, each kernel row's product
//! covering only the output rows it reads input for.
//!
//! Why: cnn1's 5 x 5 convolution on its 6 x 6 map reads the padding with 6 of its 30 (output
//! row, kernel row) pairs, so a fifth of its multiply-adds, and of the im2col copies feeding
//! them, were by zero; ONNX Runtime's direct convolutions skip them the same way (MLAS,
//! `onnxruntime/core/mlas/lib/snchwc.cpp`: `EffectiveKernelHeight`). Kernel columns in the
//! padding are still multiplied: skipping them too would split every product by kernel column.
//!
//! Layout: the weights reordered `[c_out, kh, c_in, kw]`, so that kernel row `ky`'s weights are
//! one block of `c_in * kw` columns; the im2col rows `(ky, c, kx)` and its columns `(oy,
//! sample, ox)`, so that the output rows kernel row `ky` reads input for are one block of
//! columns for all of a task's samples at once. Each output value is the sum of its kernel
//! rows' products in a fixed order (the first kernel row valid for every output row, then the
//! others from the top), each product summed over `c_in * kw` values in gemm's order, which
//! [`applies`] checks does not depend on the product's width: the same bits however the
//! output rows are split into bands (on any thread count).

use std::borrow::Cow;
use std::ops::Range;

use burn::backend::flex::FlexTensor;

use super::super::Sliding;
use super::super::epilogue::Epilogue;
use super::super::flex;
use super::super::matmul::{matmul_into, same_sums_at_any_width};
use super::{Bands, PartialSums, Shapes, Wanted, gemm_parallelism, sum_in_order};

/// At least this share of (output row, kernel row) pairs in the padding: the kernel rows'
/// products are narrower than the whole one and each adds into the output, which costs more
/// than a few zeros (vgg-lite's 3 x 3 layers on 12 x 12 maps: 2 of 36, left to the whole product).
const MIN_PADDED_SHARE: f64 = 0.1;

/// At least this many columns in each kernel row's product, counted for a whole group of samples
/// and the whole map (a group's samples times the output rows that kernel row reads input for,
/// times the row's width; a smaller last group, or a band of rows when a group is split across
/// the threads, gives narrower ones). One face through cnn1 (products of 24 columns) ran at 113
/// and 133 faces/s this way against 143 and 144 with the whole product (`ferkit bench --models
/// cnn1:512 --infer-batches 1,256`, AMD EPYC, session 29).
const MIN_COLUMNS: usize = 64;

/// At least this many values in a kernel row's sum (`c_in * kw`): each kernel row's product reads
/// and writes the whole output once more, which only pays when it also does this many
/// multiply-adds per output value (a first layer on grey faces, `c_in` 1, has 5 for a 5 x 5 window).
const MIN_ROW_SUM: usize = 64;

/// Whether [`forward`] and [`backward`] compute this convolution (`g` on the batch and channels
/// of `s`): enough of its kernel rows fall in the padding, the kernel rows' products are wide
/// ([`MIN_COLUMNS`]; counted before any split into bands, so that the choice does not depend on
/// the thread count) and deep enough ([`MIN_ROW_SUM`]), some kernel row reads input for every
/// output row (the "same" padding's centre row: its product writes the output, the others add to
/// it), and gemm sums a kernel row's `c_in * kw` values in the same order at any width.
pub(super) fn applies(s: &Shapes, g: &Sliding) -> bool {
    let ([kh, kw], [oh, ow]) = (g.kernel, g.output);
    let valid_rows: Vec<usize> = (0..kh).map(|ky| g.taps_inside(0, ky).len()).collect();
    let padded: usize = valid_rows.iter().map(|rows| oh - rows).sum();
    let fewest_rows = valid_rows.iter().copied().filter(|&rows| rows > 0).min().unwrap_or(0);
    kh > 1
        && padded as f64 >= MIN_PADDED_SHARE * (kh * oh) as f64
        && s.group.min(s.batch) * fewest_rows * ow >= MIN_COLUMNS
        && s.c_in * kw >= MIN_ROW_SUM
        && first_row(g).is_some()
        && same_sums_at_any_width(s.c_out, s.c_in * kw, 0)
}

/// The first kernel row that reads input for every output row.
fn first_row(g: &Sliding) -> Option<usize> {
    (0..g.kernel[0]).find(|&ky| g.taps_inside(0, ky).len() == g.output[0])
}

/// The output of a convolution [`applies`] accepted, for input `x` (`[batch, c_in, h, w]`
/// values), weights `[c_out, c_in, kh, kw]` and one bias per output channel, each value written
/// through `epilogue`: `[batch, c_out, oh, ow]`, as [`super::forward`] computes it up to rounding.
pub(super) fn forward(
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    s: Shapes,
    g: Sliding,
    epilogue: &Epilogue,
) -> FlexTensor {
    let ([kh, kw], ow) = (g.kernel, g.output[1]);
    let row_k = s.c_in * kw;
    let weight = by_kernel_rows(weight, [s.c_out, s.c_in, kh, kw]);
    let first = first_row(&g).expect("applies() found a kernel row valid for every output row");
    let order: Vec<usize> = std::iter::once(first).chain((0..kh).filter(|&ky| ky != first)).collect();
    let in_len = s.input_len(&g);
    let groups = s.batch.div_ceil(s.group);
    // Every product sums over one kernel row's `row_k` values: the bands' rule for that sum.
    let bands = Bands::new(&Shapes { k: row_k, ..s }, g.output, groups);
    let columns = (s.group.min(s.batch) * bands.rows * ow).max(2);
    let parallelism = gemm_parallelism(groups * bands.count);
    let write_task = |(cols, product): &mut (Vec<f32>, Vec<f32>), task: usize, out: flex::UninitParts| {
        let (samples, rows) = (s.samples(task / bands.count), bands.rows(task % bands.count));
        let n = samples.len();
        let width = rows.len() * n * ow;
        cols.resize(s.k * columns, 0.0);
        let product = &mut product[..s.c_out * width];
        for &ky in &order {
            let valid = intersection(g.taps_inside(0, ky), rows.clone());
            if valid.is_empty() {
                continue;
            }
            // Y[:, span] (+)= W_ky [c_out x row_k] * cols_ky [row_k x span], span: the columns
            // of output rows `valid`, every sample.
            let span = (valid.start - rows.start) * n * ow..(valid.end - rows.start) * n * ow;
            let block = &mut cols[ky * row_k * columns..(ky + 1) * row_k * columns];
            im2col_kernel_row(x, &g, s.c_in, in_len, ky, samples.clone(), valid, rows.start, block, columns);
            let lhs = &weight[ky * row_k..];
            let (dst, rhs) = (&mut product[span.start..], &block[span.start..]);
            matmul_into(
                parallelism,
                [s.c_out, span.len(), row_k],
                dst,
                width,
                ky != first,
                lhs,
                (s.k, 1),
                rhs,
                (columns, 1),
            );
        }
        // Back to [sample, channel, position], adding the bias and applying the epilogue.
        for (j, sample) in samples.enumerate() {
            for (c, &b) in bias.iter().enumerate() {
                // SAFETY: these rows of this plane belong to this task alone (one task per group
                // of samples and band of rows).
                let dst = unsafe { out.part((sample * s.c_out + c) * s.p + rows.start * ow, rows.len() * ow) };
                for (r, dst_row) in dst.chunks_exact_mut(ow).enumerate() {
                    epilogue.write(c, b, &product[c * width + (r * n + j) * ow..][..ow], dst_row);
                }
            }
        }
    };
    let scratch = || (Vec::new(), vec![0f32; s.c_out * columns]);
    // SAFETY: the groups cover the samples, the bands the rows, and each task writes all c_out
    // channels of its rows of its samples (the loop above).
    let out =
        unsafe { flex::write_parts_in_parallel(s.batch * s.c_out * s.p, groups * bands.count, scratch, write_task) };
    flex::tensor(out, &[s.batch, s.c_out, g.output[0], g.output[1]])
}

/// The weights `[c_out, c_in, kh, kw]` reordered `[c_out, kh, c_in, kw]`.
fn by_kernel_rows(weight: &[f32], [c_out, c_in, kh, kw]: [usize; 4]) -> Vec<f32> {
    let mut out = Vec::with_capacity(weight.len());
    for o in 0..c_out {
        for ky in 0..kh {
            for c in 0..c_in {
                let start = ((o * c_in + c) * kh + ky) * kw;
                out.extend_from_slice(&weight[start..start + kw]);
            }
        }
    }
    out
}

fn intersection(a: Range<usize>, b: Range<usize>) -> Range<usize> {
    let start = a.start.max(b.start);
    start..a.end.min(b.end).max(start)
}

/// Fills kernel row `ky`'s block of im2col rows (row `c * kw + kx`, `ld` apart) for the output
/// rows `valid` (each reading input through `ky`) of `samples` of `x` (`in_len` values each): the
/// value output position `(oy, ox)` of the `j`-th sample reads, at column `((oy - top) *
/// samples.len() + j) * ow + ox`, zero where the kernel column falls in the padding.
#[allow(clippy::too_many_arguments)]
fn im2col_kernel_row(
    x: &[f32],
    g: &Sliding,
    c_in: usize,
    in_len: usize,
    ky: usize,
    samples: Range<usize>,
    valid: Range<usize>,
    top: usize,
    block: &mut [f32],
    ld: usize,
) {
    let ([h, w], kw, ow, [stride, pad]) = (g.input, g.kernel[1], g.output[1], [g.stride[1], g.pad[1]]);
    let n = samples.len();
    for c in 0..c_in {
        for kx in 0..kw {
            let inside = g.taps_inside(1, kx);
            let row = &mut block[(c * kw + kx) * ld..][..ld];
            for oy in valid.clone() {
                let iy = g.source(0, oy, ky).expect("the valid output rows read input through ky");
                for (j, sample) in samples.clone().enumerate() {
                    let src = &x[sample * in_len + (c * h + iy) * w..][..w];
                    let dst = &mut row[((oy - top) * n + j) * ow..][..ow];
                    dst[..inside.start].fill(0.0);
                    dst[inside.end..].fill(0.0);
                    // (A kernel column can fall in the padding for every output column: a 5 x 5
                    // window on a 1 x 1 map.)
                    if stride == 1 && !inside.is_empty() {
                        let from = inside.start + kx - pad;
                        dst[inside.clone()].copy_from_slice(&src[from..from + inside.len()]);
                    } else {
                        for ox in inside.clone() {
                            dst[ox] = src[ox * stride + kx - pad];
                        }
                    }
                }
            }
        }
    }
}

/// [`super::backward`] for a convolution [`applies`] accepted (and whose input gradient is not
/// Winograd's): the gradients of the input (`[batch, c_in, h, w]`), of the weights (`[c_out,
/// c_in, kh, kw]`) and of the bias, each when wanted, from the output gradient `grad`
/// (`[batch, c_out, oh, ow]`), by the same kernel rows' products as [`forward`]:
/// `dW_ky = dY[:, span] * cols_ky[:, span]^T` and `dcols_ky = W_ky^T * dY[:, span]`, with `span`
/// the output rows kernel row `ky` reads input for. Each task (a group of samples) sums its own
/// weight and bias gradients; the tasks' sums are added in task order ([`super::sum_in_order`]).
pub(super) fn backward(
    x: &[f32],
    weight: &[f32],
    grad: &[f32],
    s: Shapes,
    g: Sliding,
    wanted: Wanted,
) -> (Option<Vec<f32>>, Option<Vec<f32>>, Option<Vec<f32>>) {
    let ([h, w], [kh, kw], [oh, ow]) = (g.input, g.kernel, g.output);
    let row_k = s.c_in * kw;
    let weight = by_kernel_rows(weight, [s.c_out, s.c_in, kh, kw]);
    let in_len = s.input_len(&g);
    let tasks = s.batch.div_ceil(s.group);
    let parallelism = gemm_parallelism(tasks);
    let dx_len = if wanted.input { s.batch * in_len } else { 0 };
    let write_task = |_: &mut (), task: usize, dx: flex::UninitParts| -> PartialSums {
        let samples = s.samples(task);
        let n = samples.len();
        let width = n * s.p;
        // dY of the group as [c_out x (oy, sample, ox)], the layout of the forward product; a
        // single sample's gradient already has that layout.
        let dy: Cow<[f32]> = if n == 1 {
            Cow::Borrowed(&grad[samples.start * s.c_out * s.p..samples.end * s.c_out * s.p])
        } else {
            let mut dy = vec![0f32; s.c_out * width];
            for (j, sample) in samples.clone().enumerate() {
                for c in 0..s.c_out {
                    for oy in 0..oh {
                        let src = &grad[((sample * s.c_out + c) * oh + oy) * ow..][..ow];
                        dy[c * width + (oy * n + j) * ow..][..ow].copy_from_slice(src);
                    }
                }
            }
            Cow::Owned(dy)
        };
        let spans: Vec<(usize, Range<usize>)> =
            (0..kh).map(|ky| (ky, g.taps_inside(0, ky))).filter(|(_, valid)| !valid.is_empty()).collect();
        let columns = |valid: &Range<usize>| valid.start * n * ow..valid.end * n * ow;
        let mut cols = vec![0f32; s.k * width];
        let mut dw = Vec::new();
        if wanted.weight {
            // Weights no output row reads input through stay zero.
            dw = vec![0f32; s.c_out * s.k];
            for (ky, valid) in &spans {
                let span = columns(valid);
                let block = &mut cols[ky * row_k * width..(ky + 1) * row_k * width];
                im2col_kernel_row(x, &g, s.c_in, in_len, *ky, samples.clone(), valid.clone(), 0, block, width);
                // dW_ky [c_out x row_k] = dY[:, span] * cols_ky[:, span]^T
                let (lhs, rhs) = (&dy[span.start..], &block[span.start..]);
                let dst = &mut dw[ky * row_k..];
                matmul_into(
                    parallelism,
                    [s.c_out, row_k, span.len()],
                    dst,
                    s.k,
                    false,
                    lhs,
                    (width, 1),
                    rhs,
                    (1, width),
                );
            }
        }
        let db = if wanted.bias { dy.chunks(width).map(|row| row.iter().sum::<f32>()).collect() } else { Vec::new() };
        if wanted.input {
            // dcols_ky [row_k x span] = W_ky^T [row_k x c_out] * dY[:, span], then back onto the
            // inputs the taps came from.
            for (ky, valid) in &spans {
                let span = columns(valid);
                let block = &mut cols[ky * row_k * width + span.start..];
                let (lhs, rhs) = (&weight[ky * row_k..], &dy[span.start..]);
                matmul_into(
                    parallelism,
                    [row_k, span.len(), s.c_out],
                    block,
                    width,
                    false,
                    lhs,
                    (1, s.k),
                    rhs,
                    (width, 1),
                );
            }
            for (j, sample) in samples.enumerate() {
                // SAFETY: sample `sample`'s slice of dx belongs to this task alone.
                let dx_n = flex::zeroed(unsafe { dx.part(sample * in_len, in_len) });
                for (ky, valid) in &spans {
                    for c in 0..s.c_in {
                        for kx in 0..kw {
                            let inside = g.taps_inside(1, kx);
                            let row = &cols[(ky * row_k + c * kw + kx) * width..][..width];
                            for oy in valid.clone() {
                                let iy = g.source(0, oy, *ky).expect("the valid output rows read input through ky");
                                let taps = &row[(oy * n + j) * ow..][..ow];
                                let plane_row = &mut dx_n[(c * h + iy) * w..][..w];
                                for ox in inside.clone() {
                                    plane_row[ox * g.stride[1] + kx - g.pad[1]] += taps[ox];
                                }
                            }
                        }
                    }
                }
            }
        }
        (dw, db)
    };
    // SAFETY: each task zeroes the whole slice of each of its samples, and the tasks' samples
    // cover the batch (or dx is empty).
    let (dx, partial_sums) = unsafe { flex::write_parts_and_collect(dx_len, tasks, || (), write_task) };
    let dw = wanted.weight.then(|| by_channels(&sum_in_order(&partial_sums, |p| &p.0), [s.c_out, s.c_in, kh, kw]));
    let db = wanted.bias.then(|| sum_in_order(&partial_sums, |p| &p.1));
    (wanted.input.then_some(dx), dw, db)
}

/// The inverse of [`by_kernel_rows`]: weights `[c_out, kh, c_in, kw]` back to `[c_out, c_in, kh, kw]`.
fn by_channels(by_rows: &[f32], [c_out, c_in, kh, kw]: [usize; 4]) -> Vec<f32> {
    let mut out = vec![0f32; by_rows.len()];
    for o in 0..c_out {
        for ky in 0..kh {
            for c in 0..c_in {
                let from = ((o * kh + ky) * c_in + c) * kw;
                let to = ((o * c_in + c) * kh + ky) * kw;
                out[to..to + kw].copy_from_slice(&by_rows[from..from + kw]);
            }
        }
    }
    out
}
