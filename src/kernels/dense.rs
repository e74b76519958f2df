//! A dense (fully connected) layer at inference for a few rows at a time (one face from a
//! photo, a video frame's faces), with its activation applied as the output is written.
//!
//! Why: at batch 1 a dense layer is a matrix-vector product whose time is reading the weights
//! (cnn1's two wide layers are 18 M weights, 73 MB, per face; EfficientNet-Lite0's head
//! 1.3 M).
//! Burn's matmul hands such a product to `gemm` on one thread, so one core streamed the weights
//! while the other waited. Here the weight rows (one per input) are split into contiguous
//! blocks, handed to the threads in one contiguous run of blocks per thread, so both cores stream
//! memory at once; the blocks' partial sums are then added in block order. A layer below
//! [`MIN_WEIGHTS`] is one block, summed on the calling thread. (Splitting the output columns
//! instead, each task reading a short
//! piece of every row, was slower than gemm on one thread: cnn1 at batch 1 went from 64-83 to
//! 37-45 faces/s, as each piece sat on another page.)
//! Each task adds four weight rows per pass over its sums ([`add_products`], AVX2 / AVX-512 where
//! the CPU has them): a quarter of the loads and stores of the sums, and four streams of weights
//! in flight. cnn1 at batch 1 went from 190-258 to 237-313 faces/s (`ferkit bench --models
//! cnn1:1 --steps 40 --repeats 3 --infer-batches 1`, two binaries alternated twice, AMD EPYC,
//! session 31); eight rows per pass measured the same as four.
//! Larger batches go to Burn's matmul, whose GEMM reuses each weight across the rows.
//!
//! Each output is the bias plus the blocks' partial sums in block order, each partial summed in
//! the order of `k`, whatever the thread count, so results do not depend on the threads (they may differ from gemm's order in
//! the last bits; the test compares with Burn's layer within 1e-5).

use burn::backend::flex::{Flex, FlexTensor};
use burn::nn::Linear;
use burn::tensor::Tensor;
use multiversion::multiversion;
use rayon::prelude::*;

use super::flex;
use super::epilogue::Activation;

/// Rows (samples) up to which the product runs here: each weight is read once per call and used
/// for every row, so a few rows cost about what one does.
const MAX_ROWS: usize = 8;
/// Weights from which the product is split across the threads: smaller layers fit in a core's
/// cache, where splitting them costs more than it saves; their product runs in one block on the
/// calling thread (the pass that adds the bias and applies the activation is split by outputs
/// above [`OUTPUTS_PER_SUM_TASK`] values, as for every layer). Until session 43 they went to
/// Burn's layer, its matmul and then the bias added as a tensor op: 8-10 µs for
/// EfficientNet-Lite0's 1024 -> 7 output layer at one face, 1% of the net (timed in place, AMD
/// EPYC Zen 4). Lowered from 2^20 in session 35, when cnn3's and
/// vgg-lite's 2304 x 256 layers (590 K weights) at batch 1 were gemm's matrix-vector product on
/// one thread, 13% of cnn3's inference of one face (`perf`): `ferkit bench --models cnn3:1
/// --steps 100 --repeats 3 --infer-batches 1`, four rounds alternated (AMD EPYC Zen 4), 5427 /
/// 7865, 7875 / 7906, 6476 / 7816, 6687 / 8734 faces/s before / after.
const MIN_WEIGHTS: usize = 1 << 18;
/// Weight rows (inputs) per task: a contiguous block of the weights that each task streams
/// through once. The blocks depend on the shapes alone, so the order of the sums does too.
const INPUTS_PER_TASK: usize = 128;

/// `act(linear(x))` for `x` `[rows, inputs]` (f32): computed here at inference on Flex for up to
/// [`MAX_ROWS`] rows, otherwise as Burn's `Linear` and the activation's own layer.
pub fn linear_act(linear: &Linear, act: Option<Activation>, x: Tensor<2>) -> Tensor<2> {
    let [rows, _] = x.dims();
    if rows <= MAX_ROWS
        && let Some(out) = inference(linear, &x, act)
    {
        return Tensor::from_primitive::<Flex>(out);
    }
    let y = linear.forward(x);
    match act {
        Some(act) => act.layer(y),
        None => y,
    }
}

/// The layer's output when `x` and its parameters are plain (untracked) Flex f32 tensors: in
/// blocks of [`INPUTS_PER_TASK`] weight rows on the threads from [`MIN_WEIGHTS`] weights, in one
/// block on the calling thread below.
fn inference(linear: &Linear, x: &Tensor<2>, act: Option<Activation>) -> Option<FlexTensor> {
    let (xt, wt) = (flex::plain(x)?, flex::plain(&linear.weight.val())?);
    let bias = match &linear.bias {
        Some(b) => Some(flex::plain(&b.val())?),
        None => None,
    };
    let shape = wt.layout().shape();
    // Burn keeps a dense weight as [inputs, outputs].
    let (inputs, outputs) = (shape[0], shape[1]);
    // A width that does not match goes to Burn's layer, which says so; so do empty layers.
    let [rows, width] = x.dims();
    if width != inputs || inputs == 0 || outputs == 0 {
        return None;
    }
    let per_task = inputs_per_block(inputs, outputs);
    let (x, w) = (flex::values(&xt), flex::values(&wt));
    let bias = bias.as_ref().map(|b| flex::values(b).into_owned()).unwrap_or_else(|| vec![0.0; outputs]);
    // One task per block of weight rows (inputs), each a contiguous run of memory streamed once;
    // its partial sums for every output are then added in block order. The blocks go to the
    // threads in as many contiguous runs as there are threads, so that at one face each core
    // reads the same part of the weights on every call, from its own cache where the part fits
    // (cnn3's 2304 x 256 layer: 1.2 MB a core of 2 MB L2s). Left to rayon's splitting, the
    // blocks went to either core from call to call: that layer took 36.3-36.7 µs, 27.7-33.2 µs
    // in runs of 2 (timed in a loop of 20,000 calls, 2 threads, AMD EPYC Zen 4, session 43).
    // The blocks and their sums are the same either way.
    let tasks = inputs.div_ceil(per_task);
    let threads = rayon::current_num_threads().min(tasks).max(1);
    let block_sums = |task: usize| {
        let ks = task * per_task..((task + 1) * per_task).min(inputs);
        let mut sums = vec![0f32; rows * outputs];
        // Four weight rows per pass over the sums: a quarter of the loads and stores of the
        // sums, and four streams of weights in flight at once. Each sum still adds its terms
        // in the order of `k` (Rust does not fuse or reorder the float operations).
        let mut k = ks.start;
        while k < ks.end {
            let n = (ks.end - k).min(ROWS_PER_PASS);
            let weights = &w[k * outputs..(k + n) * outputs];
            for (r, sums) in sums.chunks_exact_mut(outputs).enumerate() {
                add_products(sums, weights, &x[r * inputs + k..r * inputs + k + n]);
            }
            k += n;
        }
        sums
    };
    let partials: Vec<Vec<f32>> = (0..threads)
        .into_par_iter()
        .flat_map_iter(|t| (t * tasks / threads..(t + 1) * tasks / threads).map(&block_sums))
        .collect();
    // The partial sums added in block order, split over the threads by outputs (on one thread
    // this pass was 3% of cnn1's inference of one face: `perf`, session 35).
    let mut out = vec![0f32; rows * outputs];
    out.par_chunks_mut(OUTPUTS_PER_SUM_TASK).enumerate().for_each(|(task, out)| {
        for (i, o) in (task * OUTPUTS_PER_SUM_TASK..).zip(out) {
            let mut v = bias[i % outputs];
            for part in &partials {
                v += part[i];
            }
            *o = act.map_or(v, |a| a.apply(v));
        }
    });
    Some(flex::tensor(out, &[rows, outputs]))
}

/// Weight rows (inputs) per block of a layer of `inputs` x `outputs` weights: the whole layer below
/// [`MIN_WEIGHTS`], [`INPUTS_PER_TASK`] from there.
fn inputs_per_block(inputs: usize, outputs: usize) -> usize {
    if inputs * outputs < MIN_WEIGHTS { inputs } else { INPUTS_PER_TASK }
}

/// Outputs per task when the blocks' partial sums are added.
const OUTPUTS_PER_SUM_TASK: usize = 1024;

/// Weight rows added to the sums per pass in [`add_products`].
const ROWS_PER_PASS: usize = 4;

/// `sums[j] += xs[0] * weights[0][j]`, then `xs[1] * weights[1][j]`, ... in that order, for the
/// `xs.len()` (at most [`ROWS_PER_PASS`]) rows of `weights`, each `sums.len()` long.
#[cfg_attr(feature = "avx512", multiversion(targets("x86_64+avx512f+avx2+avx", "x86_64+avx2+avx")))]
#[cfg_attr(not(feature = "avx512"), multiversion(targets("x86_64+avx2+avx")))]
fn add_products(sums: &mut [f32], weights: &[f32], xs: &[f32]) {
    let n = sums.len();
    if let &[x0, x1, x2, x3] = xs {
        let (w0, rest) = weights.split_at(n);
        let (w1, rest) = rest.split_at(n);
        let (w2, w3) = rest.split_at(n);
        for ((((s, &a), &b), &c), &d) in sums.iter_mut().zip(w0).zip(w1).zip(w2).zip(&w3[..n]) {
            *s = *s + x0 * a + x1 * b + x2 * c + x3 * d;
        }
    } else {
        for (&xk, row) in xs.iter().zip(weights.chunks_exact(n)) {
            sums.iter_mut().zip(row).for_each(|(s, &wv)| *s += xk * wv);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::tests::{assert_close, random_input};
    use burn::nn::LinearConfig;
    use burn::prelude::*;
    use burn::tensor::activation;

    /// The layer's output summed as the module's doc says, one value at a time: per output, the
    /// bias plus each block's partial sum (its inputs in order) in block order (one block below
    /// [`MIN_WEIGHTS`]).
    fn in_block_order(linear: &Linear, x: &Tensor<2>) -> Vec<f32> {
        let w = linear.weight.val().into_data().try_to_vec::<f32>().unwrap();
        let [inputs, outputs] = linear.weight.val().dims();
        let bias = linear.bias.as_ref().map_or(vec![0.0; outputs], |b| b.val().into_data().try_to_vec::<f32>().unwrap());
        let x = x.clone().into_data().try_to_vec::<f32>().unwrap();
        let mut out = Vec::new();
        for row in x.chunks_exact(inputs) {
            for j in 0..outputs {
                let mut v = bias[j];
                for block in (0..inputs).collect::<Vec<_>>().chunks(inputs_per_block(inputs, outputs)) {
                    v += block.iter().fold(0f32, |s, &k| s + row[k] * w[k * outputs + j]);
                }
                out.push(v);
            }
        }
        out
    }

    /// One row and a few, inputs over several tasks with a partial last one, with and without
    /// bias, ReLU and sigmoid: Burn's layer's values within 1e-5, the same bits on 1 and 3
    /// threads, the sums in [`in_block_order`]'s order (below [`MIN_WEIGHTS`] too, in one block),
    /// and Burn's own path past [`MAX_ROWS`].
    #[test]
    fn matches_burns_layer_and_does_not_depend_on_the_thread_count() {
        let device = Device::flex();
        // [`MIN_WEIGHTS`] and more (blocks on the threads), fewer (one block).
        let big = MIN_WEIGHTS / (2 * INPUTS_PER_TASK) + 1;
        let cases = [
            (1, 2 * INPUTS_PER_TASK + 5, big),
            (2, 2 * INPUTS_PER_TASK + 6, big), // a last block of 4 + 2 rows
            (MAX_ROWS, 2 * INPUTS_PER_TASK, big),
            (MAX_ROWS + 1, 2 * INPUTS_PER_TASK, big),
            (1, 40, 7),
            (3, 1024, 7), // EfficientNet-Lite0's output layer
        ];
        for (rows, inputs, outputs) in cases {
            for bias in [true, false] {
                let linear = LinearConfig::new(inputs, outputs).with_bias(bias).init(&device);
                let x = random_input([rows, inputs], &device, rows as u64);
                assert!(inference(&linear, &x, None).is_some());
                for act in [None, Some(Activation::Relu), Some(Activation::Sigmoid)] {
                    let burns = linear.forward(x.clone());
                    let burns = match act {
                        Some(Activation::Relu) => activation::relu(burns),
                        Some(Activation::Sigmoid) => activation::sigmoid(burns),
                        _ => burns,
                    };
                    let ours = linear_act(&linear, act, x.clone());
                    if rows > MAX_ROWS {
                        // Past MAX_ROWS it is Burn's layer itself, to the bit (and ferkit's
                        // own sigmoid, Burn's within 1e-6).
                        if act != Some(Activation::Sigmoid) {
                            assert_eq!(ours.clone().into_data(), burns.clone().into_data(), "{rows} rows");
                        }
                    }
                    assert_close(&ours, &burns, 1e-5, &format!("{rows} rows, bias {bias}, {act:?}"));
                    let on = |threads: usize| {
                        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                        pool.install(|| linear_act(&linear, act, x.clone()).into_data().try_to_vec::<f32>().unwrap())
                    };
                    // Two threads take several blocks each (one contiguous run per thread).
                    assert_eq!(on(1), on(2));
                    assert_eq!(on(1), on(3));
                    if act.is_none() && rows <= MAX_ROWS {
                        assert_eq!(on(1), in_block_order(&linear, &x), "{rows} rows, bias {bias}: the sums' order");
                    }
                }
            }
        }
    }
}
