//! A dense (fully connected) layer at inference for a few rows at a time (one face from a
//! photo, a video frame's faces), with its bias and activation applied as the output is written.
//!
//! Why: at batch 1 a dense layer is a matrix-vector product whose time is reading the weights
//! (cnn1's two wide layers are 18 M weights, 73 MB, per face; EfficientNet-Lite0's head
//! 1.3 M). Burn's matmul hands such a product to `gemm` on one thread, so one core streamed the
//! weights while the other waited. Here the weights are packed once per layer into panels of
//! [`PANEL`] outputs (each `[inputs][64]`, the last as narrow as the outputs allow; a
//! [`DensePack`] that the inference net keeps: `models::fold`), and each panel's sums for a
//! pass of rows stay in registers while the panel streams past once, in order: a load of weights
//! and a fused multiply-add per 16 sums, nothing else. The panels go to the threads in one
//! contiguous run per thread, the same runs on every call, so that at one face a core that takes
//! the same run again finds its part of the weights in its own cache where the part fits.
//! Until session 44 the weights were read as Burn keeps them (`[inputs, outputs]`), four rows
//! of weights added into every output's partial sum per pass, the sums loaded and stored again
//! on each pass and the threads' partial sums added afterwards: cnn3's and vgg-lite's 2304 x 256
//! layer at one face took 49 µs on one thread and 36 on two, in a loop that keeps its weights in
//! cache, against 26 and 16 in panels (`docs/speed.md`, session 44, AMD EPYC Zen 4).
//! Larger batches, and layers without a pack, go to Burn's matmul, whose GEMM reuses each
//! weight across the rows.
//!
//! Each output is its bias plus the sum over the inputs `k` in order, each term added by one
//! fused multiply-add, whatever the thread count or the rows beside it, so results do not
//! depend on the threads or the batch (they may differ from gemm's order in the last bits; the
//! test compares with Burn's layer within 1e-5).

use std::sync::{Arc, OnceLock};

use burn::backend::flex::{Flex, FlexTensor};
use burn::module::ParamId;
use burn::nn::Linear;
use burn::tensor::Tensor;
use multiversion::multiversion;

use super::epilogue::Activation;
use super::flex;
use super::{Isa, isa};

/// Rows (samples) up to which the product runs here (one face from a photo, a video frame's
/// faces); a pass over a panel serves [`ROWS_PER_PASS`] rows on AVX-512, one elsewhere.
const MAX_ROWS: usize = 8;
/// Rows whose sums one pass over a panel keeps in registers on AVX-512: 4 x 64 sums, 16 of its
/// 32 registers. AVX2's 16 registers hold one row's 64 sums (8 registers), so there a pass
/// serves one row.
const ROWS_PER_PASS: usize = 4;
/// Outputs per panel: the sums one pass keeps per row (4 AVX-512 registers, 8 AVX2 ones).
pub const PANEL: usize = 64;
/// A layer's last panel is as wide as its outputs rounded up to a multiple of this (one
/// AVX-512 register): a 7-output layer's panel is 16 wide, not 64, so its weights take 2.3
/// times their size rather than 9 (cnn1's output layer, read once per face from memory, took
/// 25 µs at 64 wide).
const LANES: usize = 16;
/// Weights from which the panels are split across the threads: smaller layers fit in a core's
/// cache, where splitting them costs more than it saves (EfficientNet-Lite0's 1024 -> 7 output
/// layer took 8-10 µs through Burn's layer at one face before session 43). Lowered
/// from 2^20 in session 35, when cnn3's and vgg-lite's 2304 x 256 layers (590 K weights) at
/// batch 1 were gemm's matrix-vector product on one thread, 13% of cnn3's inference of one face.
const MIN_WEIGHTS: usize = 1 << 18;

/// A dense layer's weight packed in panels of [`PANEL`] outputs, and its bias, as
/// [`linear_act`] reads them at up to [`MAX_ROWS`] rows: made on the first such call and kept;
/// clones share them. The inference net holds one per dense layer (`models::fold`); it must not
/// outlive a change of that layer's weights, and a pack given another layer is not used (the
/// layer is recognised by its parameters' `ParamId`s), as `kernels::conv2d::WeightPack`.
/// Memory: a second copy of the layer's weights (cnn1: 73 MB) besides the module's own.
#[derive(Debug, Clone, Default)]
pub struct DensePack(Arc<OnceLock<Option<Panels>>>);

#[derive(Debug)]
struct Panels {
    /// Panel after panel, each `[inputs][width]` f32 ([`Panels::panel_width`]), zero past `outputs`.
    values: PanelMemory,
    /// `[outputs]` f32 (zeros for a layer without bias).
    bias: Vec<f32>,
    inputs: usize,
    outputs: usize,
    weight_id: ParamId,
    bias_id: Option<ParamId>,
}

impl DensePack {
    /// Whether the pack holds a layer's panels (for the tests of the nets that keep packs).
    #[cfg(test)]
    pub(crate) fn is_filled(&self) -> bool {
        matches!(self.0.get(), Some(Some(_)))
    }

    /// Whether two packs are one (clones of each other).
    #[cfg(test)]
    pub(crate) fn is_shared_with(&self, other: &DensePack) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// `linear`'s packed weights and bias, packed on the first call; `None` when its parameters
    /// are not plain Flex f32 tensors, or the pack holds another layer's.
    fn panels(&self, linear: &Linear) -> Option<&Panels> {
        let panels = self.0.get_or_init(|| Panels::of(linear)).as_ref()?;
        let bias_id = linear.bias.as_ref().map(|b| b.id);
        (panels.weight_id == linear.weight.id && panels.bias_id == bias_id).then_some(panels)
    }
}

impl Panels {
    fn of(linear: &Linear) -> Option<Panels> {
        let weight = flex::plain(&linear.weight.val())?;
        // Burn keeps a dense weight as [inputs, outputs].
        let [inputs, outputs] = [weight.layout().shape()[0], weight.layout().shape()[1]];
        let w = flex::values(&weight);
        let mut values = PanelMemory::zeroed(outputs.next_multiple_of(LANES) * inputs);
        let packed = values.values_mut();
        let width = |panel: usize| Panels::panel_width(outputs, panel);
        for (k, row) in w.chunks_exact(outputs.max(1)).enumerate() {
            for (j, &v) in row.iter().enumerate() {
                let panel = j / PANEL;
                packed[panel * PANEL * inputs + k * width(panel) + j % PANEL] = v;
            }
        }
        let bias = match &linear.bias {
            Some(b) => flex::values(&flex::plain(&b.val())?).into_owned(),
            None => vec![0.0; outputs],
        };
        let bias_id = linear.bias.as_ref().map(|b| b.id);
        Some(Panels { values, bias, inputs, outputs, weight_id: linear.weight.id, bias_id })
    }

    /// Panel `panel`'s width: [`PANEL`], or for the last the outputs left rounded up to a
    /// multiple of [`LANES`].
    fn panel_width(outputs: usize, panel: usize) -> usize {
        (outputs - panel * PANEL).next_multiple_of(LANES).min(PANEL)
    }

    /// Panel `panel`'s weights, `[inputs][width]`, and its width.
    fn panel(&self, panel: usize) -> (&[f32], usize) {
        let width = Panels::panel_width(self.outputs, panel);
        let start = panel * PANEL * self.inputs;
        (&self.values.values()[start..start + width * self.inputs], width)
    }
}

/// Zeroed f32 memory for a layer's panels: from [`HUGE_PAGES_FROM`] bytes (on Linux) an
/// anonymous mapping whose 2 MB-aligned part is advised for transparent huge pages
/// (`madvise(MADV_HUGEPAGE)`, through `memmap2`), otherwise the heap.
///
/// Why: at one face cnn1's two wide layers stream 73 MB of weights from memory on every call,
/// and on 4 KB pages the hardware's prefetchers stop at every page's end (and each page costs a
/// TLB entry): a pass over 54 MB of panels on 2 threads took 1632-2190 µs on 4 KB pages against
/// 1368-1817 on 2 MB ones, 5 of 6 alternated rounds faster (a scratch loop, the caches flushed
/// between passes, AMD EPYC Zen 4 with transparent huge pages on "madvise", session 44). Where
/// huge pages are off or unavailable the advice changes nothing and the mapping is plain memory.
enum PanelMemory {
    Heap(Vec<f32>),
    #[cfg(target_os = "linux")]
    Mapped {
        map: memmap2::MmapMut,
        /// Where the values start in `map`, in bytes (2 MB-aligned), and how many there are.
        start: usize,
        len: usize,
    },
}

/// Bytes of packed weights from which [`PanelMemory`] maps memory for 2 MB pages: one page.
const HUGE_PAGES_FROM: usize = 2 << 20;

impl PanelMemory {
    /// `len` zeros.
    fn zeroed(len: usize) -> PanelMemory {
        #[cfg(target_os = "linux")]
        if len * 4 >= HUGE_PAGES_FROM {
            // A mapping is zeroed; one 2 MB page more than the values leaves room to align them.
            // A failed mapping or advice leaves the heap (or plain pages).
            if let Ok(map) = memmap2::MmapMut::map_anon(len * 4 + HUGE_PAGES_FROM) {
                let start = map.as_ptr().align_offset(HUGE_PAGES_FROM);
                let _ = map.advise_range(memmap2::Advice::HugePage, start, len * 4);
                return PanelMemory::Mapped { map, start, len };
            }
        }
        PanelMemory::Heap(vec![0.0; len])
    }

    fn values(&self) -> &[f32] {
        match self {
            PanelMemory::Heap(v) => v,
            #[cfg(target_os = "linux")]
            PanelMemory::Mapped { map, start, len } => bytemuck::cast_slice(&map[*start..*start + len * 4]),
        }
    }

    fn values_mut(&mut self) -> &mut [f32] {
        match self {
            PanelMemory::Heap(v) => v,
            #[cfg(target_os = "linux")]
            PanelMemory::Mapped { map, start, len } => bytemuck::cast_slice_mut(&mut map[*start..*start + *len * 4]),
        }
    }
}

impl std::fmt::Debug for PanelMemory {
    // The length and where they live, not the values (a net's Debug would print megabytes).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let place = match self {
            PanelMemory::Heap(_) => "heap",
            #[cfg(target_os = "linux")]
            PanelMemory::Mapped { .. } => "mapping advised for 2 MB pages",
        };
        write!(f, "{} f32 values ({place})", self.values().len())
    }
}

/// `act(linear(x))` for `x` `[rows, inputs]` (f32): computed here from `pack` at inference on
/// Flex for up to [`MAX_ROWS`] rows, otherwise (or without a pack) as Burn's `Linear` and the
/// activation's own layer.
pub fn linear_act(linear: &Linear, pack: Option<&DensePack>, act: Option<Activation>, x: Tensor<2>) -> Tensor<2> {
    let [rows, _] = x.dims();
    if rows <= MAX_ROWS
        && let Some(pack) = pack
        && let Some(out) = inference(linear, pack, &x, act)
    {
        return Tensor::from_primitive::<Flex>(out);
    }
    let y = linear.forward(x);
    match act {
        Some(act) => act.layer(y),
        None => y,
    }
}

/// The layer's output when `x` and its parameters are plain (untracked) Flex f32 tensors: the
/// panels in one contiguous run per thread from [`MIN_WEIGHTS`] weights, all on the calling
/// thread below.
fn inference(linear: &Linear, pack: &DensePack, x: &Tensor<2>, act: Option<Activation>) -> Option<FlexTensor> {
    // On x86-64 without AVX2 and FMA (before 2013, some VMs' CPU models) [`rows_sums`] would
    // run its plain form, where `mul_add` is a library call per term: Burn's layer is far
    // faster there, and the weights are not packed. Other architectures fuse natively.
    let rows_per_pass = match isa() {
        Some(Isa::Avx512) => ROWS_PER_PASS,
        Some(Isa::Avx2) => 1,
        None if cfg!(target_arch = "x86_64") => return None,
        None => 1,
    };
    let xt = flex::plain(x)?;
    let panels = pack.panels(linear)?;
    let (inputs, outputs) = (panels.inputs, panels.outputs);
    // A width that does not match goes to Burn's layer, which says so; so do empty layers.
    let [rows, width] = x.dims();
    if width != inputs || inputs == 0 || outputs == 0 || rows == 0 {
        return None;
    }
    let x = flex::values(&xt);
    let n_panels = outputs.div_ceil(PANEL);
    let runs = if inputs * outputs < MIN_WEIGHTS { 1 } else { rayon::current_num_threads().clamp(1, n_panels) };
    let write = |_: &mut (), run: usize, parts: flex::UninitParts| {
        for panel in run * n_panels / runs..(run + 1) * n_panels / runs {
            let (weights, width) = panels.panel(panel);
            let columns = panel * PANEL..((panel + 1) * PANEL).min(outputs);
            for first in (0..rows).step_by(rows_per_pass) {
                let pass = first..(first + rows_per_pass).min(rows);
                let mut sums = [[0f32; PANEL]; ROWS_PER_PASS];
                panel_sums(weights, width, &x[pass.start * inputs..pass.end * inputs], &mut sums[..pass.len()]);
                for (row, sums) in pass.zip(&sums) {
                    // SAFETY: this panel's columns of each row belong to this run alone.
                    let dst = unsafe { parts.part(row * outputs + columns.start, columns.len()) };
                    for ((d, &s), &b) in dst.iter_mut().zip(sums).zip(&panels.bias[columns.clone()]) {
                        let v = b + s;
                        d.write(act.map_or(v, |a| a.apply(v)));
                    }
                }
            }
        }
    };
    // SAFETY: the runs' panels tile the columns, and each writes every row of its columns.
    Some(flex::tensor(unsafe { flex::write_parts_in_parallel(rows * outputs, runs, || (), write) }, &[rows, outputs]))
}

/// For each row `r` of `xs` (`[sums.len(), inputs]`, at most [`ROWS_PER_PASS`] rows) and each
/// lane `j < width` of one panel: `sums[r][j] = sum over k in order of xs[r][k] *
/// weights[k][j]`, each term added by a fused multiply-add; `weights` is the panel, `[inputs]
/// [width]`, `width` a multiple of [`LANES`] up to [`PANEL`].
fn panel_sums(weights: &[f32], width: usize, xs: &[f32], sums: &mut [[f32; PANEL]]) {
    macro_rules! widths {
        ($r:literal, $rows:expr) => {
            match width {
                16 => rows_sums::<$r, 16>(weights, xs, $rows),
                32 => rows_sums::<$r, 32>(weights, xs, $rows),
                48 => rows_sums::<$r, 48>(weights, xs, $rows),
                PANEL => rows_sums::<$r, PANEL>(weights, xs, $rows),
                _ => unreachable!("a multiple of LANES up to PANEL"),
            }
        };
    }
    match sums {
        [a] => widths!(1, [a]),
        [a, b] => widths!(2, [a, b]),
        [a, b, c] => widths!(3, [a, b, c]),
        [a, b, c, d] => widths!(4, [a, b, c, d]),
        _ => unreachable!("1 to ROWS_PER_PASS rows"),
    }
}

/// [`panel_sums`] for `R` rows of a panel `W` wide, compiled for AVX-512 and AVX2 + FMA (the
/// same operations, so the same bits; `mul_add` is fused on every target, and [`inference`]
/// does not come here on an x86-64 CPU without them, where the plain form would call the
/// library's `fmaf` per term).
#[cfg_attr(feature = "avx512", multiversion(targets("x86_64+avx512f+avx2+avx+fma", "x86_64+avx2+avx+fma")))]
#[cfg_attr(not(feature = "avx512"), multiversion(targets("x86_64+avx2+avx+fma")))]
fn rows_sums<const R: usize, const W: usize>(weights: &[f32], xs: &[f32], sums: [&mut [f32; PANEL]; R]) {
    let inputs = xs.len() / R;
    let mut acc = [[0f32; W]; R];
    for (k, w) in weights.chunks_exact(W).take(inputs).enumerate() {
        for (r, acc) in acc.iter_mut().enumerate() {
            let x = xs[r * inputs + k];
            for (a, &w) in acc.iter_mut().zip(w) {
                *a = x.mul_add(w, *a);
            }
        }
    }
    for (s, a) in sums.into_iter().zip(acc) {
        s[..W].copy_from_slice(&a);
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
    /// sum over the inputs in order, one fused multiply-add per term, plus the bias.
    fn in_input_order(linear: &Linear, x: &Tensor<2>) -> Vec<f32> {
        let w = linear.weight.val().into_data().try_to_vec::<f32>().unwrap();
        let [inputs, outputs] = linear.weight.val().dims();
        let bias = linear.bias.as_ref().map_or(vec![0.0; outputs], |b| b.val().into_data().try_to_vec::<f32>().unwrap());
        let x = x.clone().into_data().try_to_vec::<f32>().unwrap();
        let mut out = Vec::new();
        for row in x.chunks_exact(inputs) {
            for j in 0..outputs {
                out.push(bias[j] + (0..inputs).fold(0f32, |s, k| row[k].mul_add(w[k * outputs + j], s)));
            }
        }
        out
    }

    /// One row and a few (a pass of [`ROWS_PER_PASS`] and a partial one), panels on the threads
    /// and on the calling thread alone, last panels 16, 32 and 48 wide, with and without bias, ReLU and
    /// sigmoid: Burn's layer's values within 1e-5, the same bits on 1, 2 and 3 threads and for a
    /// row alone as beside others, the sums in [`in_input_order`]'s order, and Burn's own path
    /// past [`MAX_ROWS`] and without a pack.
    #[test]
    fn matches_burns_layer_and_does_not_depend_on_the_threads_or_the_rows() {
        let device = Device::flex();
        // [`MIN_WEIGHTS`] and more (panels on the threads: 5 panels, the last partial), fewer.
        let wide = 4 * PANEL + 7;
        let cases = [
            (1, MIN_WEIGHTS / wide + 3, wide),
            (6, MIN_WEIGHTS / wide + 3, wide), // a pass of 4 rows and one of 2
            (MAX_ROWS, 300, wide),
            (MAX_ROWS + 1, 300, wide),
            (1, 40, 7),
            (2, 90, 84),  // a last panel 32 wide
            (1, 64, 40),  // one panel 48 wide
            (1, MIN_WEIGHTS / PANEL + 4, PANEL), // one whole panel: one run however many threads
            (2, 2304, 256), // cnn3's and vgg-lite's layer: over 2 MB packed (mapped memory)
            (3, 1024, 7), // EfficientNet-Lite0's output layer
        ];
        for (rows, inputs, outputs) in cases {
            for bias in [true, false] {
                let linear = LinearConfig::new(inputs, outputs).with_bias(bias).init(&device);
                let pack = DensePack::default();
                let x = random_input([rows, inputs], &device, rows as u64);
                if rows <= MAX_ROWS {
                    // The layer goes to the packed kernel: the same bits as the kernel itself
                    // (with a pack of its own), and the pack filled by that call.
                    let ours = linear_act(&linear, Some(&pack), None, x.clone()).into_data();
                    assert!(pack.is_filled());
                    let kernel = inference(&linear, &DensePack::default(), &x, None).unwrap();
                    assert_eq!(ours, Tensor::<2>::from_primitive::<Flex>(kernel).into_data());
                }
                for act in [None, Some(Activation::Relu), Some(Activation::Sigmoid)] {
                    let burns = linear.forward(x.clone());
                    let burns = match act {
                        Some(Activation::Relu) => activation::relu(burns),
                        Some(Activation::Sigmoid) => activation::sigmoid(burns),
                        _ => burns,
                    };
                    let ours = linear_act(&linear, Some(&pack), act, x.clone());
                    if rows > MAX_ROWS && act != Some(Activation::Sigmoid) {
                        // Past MAX_ROWS it is Burn's layer itself, to the bit (and ferkit's
                        // own sigmoid, Burn's within 1e-6).
                        assert_eq!(ours.clone().into_data(), burns.clone().into_data(), "{rows} rows");
                    }
                    if act != Some(Activation::Sigmoid) {
                        let unpacked = linear_act(&linear, None, act, x.clone());
                        assert_eq!(unpacked.into_data(), burns.clone().into_data(), "without a pack: Burn's layer");
                    }
                    assert_close(&ours, &burns, 1e-5, &format!("{rows} rows, bias {bias}, {act:?}"));
                    let on = |threads: usize| {
                        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                        pool.install(|| linear_act(&linear, Some(&pack), act, x.clone()).into_data().try_to_vec::<f32>().unwrap())
                    };
                    // Two threads take several panels each (one contiguous run per thread).
                    assert_eq!(on(1), on(2));
                    assert_eq!(on(1), on(3));
                    if act.is_none() && rows <= MAX_ROWS {
                        assert_eq!(on(1), in_input_order(&linear, &x), "{rows} rows, bias {bias}: the sums' order");
                        let last = x.clone().slice([rows - 1..rows, 0..inputs]);
                        let alone = linear_act(&linear, Some(&pack), act, last).into_data().try_to_vec::<f32>().unwrap();
                        assert_eq!(alone[..], on(1)[(rows - 1) * outputs..], "{rows} rows: the last row alone");
                    }
                }
            }
        }
    }

    /// Memory for the panels: zeros, from [`HUGE_PAGES_FROM`] bytes a mapping (on Linux) whose
    /// values start on a 2 MB boundary, and what is written reads back.
    #[test]
    fn panel_memory_is_zeroed_and_large_packs_are_mapped_on_2_mb_boundaries() {
        for len in [10, HUGE_PAGES_FROM / 4 + 5] {
            let mut memory = PanelMemory::zeroed(len);
            assert_eq!(memory.values().len(), len);
            assert!(memory.values().iter().all(|&v| v == 0.0));
            memory.values_mut()[len - 1] = 3.5;
            assert_eq!(memory.values()[len - 1], 3.5);
            let mapped = !matches!(memory, PanelMemory::Heap(_));
            assert_eq!(mapped, cfg!(target_os = "linux") && len * 4 >= HUGE_PAGES_FROM, "{len} values: {memory:?}");
            if mapped {
                assert_eq!(memory.values().as_ptr() as usize % HUGE_PAGES_FROM, 0);
            }
        }
    }

    /// A pack made for one layer is not used for another of the same shape (recognised by the
    /// parameters' `ParamId`s): that layer goes to Burn's path and gets its own values.
    #[test]
    fn another_layers_pack_of_the_same_shape_is_not_used() {
        let device = Device::flex();
        let (a, b) = (LinearConfig::new(50, 9).init(&device), LinearConfig::new(50, 9).init(&device));
        let x = random_input([1, 50], &device, 4);
        let pack = DensePack::default();
        let _ = linear_act(&a, Some(&pack), None, x.clone());
        assert!(inference(&b, &pack, &x, None).is_none());
        assert_close(&linear_act(&b, Some(&pack), None, x.clone()), &b.forward(x), 1e-6, "layer b with a's pack");
    }
}
