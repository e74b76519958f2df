//! MTCNN (Zhang et al., 2016), the three-network face detector, computed as facenet-pytorch 2.6
//! computes it with its own weights (`pnet.pt`, `rnet.pt`, `onet.pt`; tests/mtcnn_reference.rs
//! compares the two): P-Net proposes faces on an image pyramid, R-Net and O-Net re-score and
//! refine them on 24x24 and 48x48 crops, with non-maximum suppression between the stages.
//! Slower than the Haar cascade, it finds turned and tilted faces that the cascade misses and
//! gives five landmarks (eyes, nose, mouth corners) per face.

use std::path::Path;

use crate::error::Result;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, LinearConfig, PRelu, PReluConfig};
use burn::prelude::*;
use burn::tensor::activation::softmax;

use crate::kernels::conv2d::conv2d;
use crate::models::pytorch_weights;

/// MTCNN's settings (facenet-pytorch's defaults, except the smallest face).
#[derive(Clone, Copy, Debug)]
pub struct MtcnnOptions {
    /// Smallest face side in pixels.
    pub min_size: f64,
    /// Score each stage needs (P-Net, R-Net, O-Net).
    pub thresholds: [f64; 3],
    /// Pyramid step: each level is this fraction of the one before.
    pub factor: f64,
}

impl Default for MtcnnOptions {
    fn default() -> Self {
        Self { min_size: 20.0, thresholds: [0.6, 0.7, 0.7], factor: 0.709 }
    }
}

/// A face found by MTCNN: its box corners in photo pixels (fractional), score, and landmarks
/// (left eye, right eye, nose, left and right mouth corners) as (x, y).
#[derive(Clone, Debug)]
pub struct MtcnnFace {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
    pub score: f32,
    pub landmarks: [[f32; 2]; 5],
}

#[derive(Module, Debug)]
struct PNet {
    conv1: Conv2d,
    prelu1: PRelu,
    pool1: MaxPool2d,
    conv2: Conv2d,
    prelu2: PRelu,
    conv3: Conv2d,
    prelu3: PRelu,
    conv4_1: Conv2d,
    conv4_2: Conv2d,
}

#[derive(Module, Debug)]
struct RNet {
    conv1: Conv2d,
    prelu1: PRelu,
    pool1: MaxPool2d,
    conv2: Conv2d,
    prelu2: PRelu,
    pool2: MaxPool2d,
    conv3: Conv2d,
    prelu3: PRelu,
    dense4: Linear,
    prelu4: PRelu,
    dense5_1: Linear,
    dense5_2: Linear,
}

#[derive(Module, Debug)]
struct ONet {
    conv1: Conv2d,
    prelu1: PRelu,
    pool1: MaxPool2d,
    conv2: Conv2d,
    prelu2: PRelu,
    pool2: MaxPool2d,
    conv3: Conv2d,
    prelu3: PRelu,
    pool3: MaxPool2d,
    conv4: Conv2d,
    prelu4: PRelu,
    dense5: Linear,
    prelu5: PRelu,
    dense6_1: Linear,
    dense6_2: Linear,
    dense6_3: Linear,
}

fn conv(input: usize, output: usize, kernel: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([input, output], [kernel, kernel]).init(device)
}

fn prelu(channels: usize, device: &Device) -> PRelu {
    PReluConfig::new().with_num_parameters(channels).init(device)
}

/// PyTorch's `MaxPool2d(kernel, 2, ceil_mode=True)`.
fn pool(kernel: usize) -> MaxPool2d {
    MaxPool2dConfig::new([kernel, kernel]).with_strides([2, 2]).with_ceil_mode(true).init()
}

fn dense(input: usize, output: usize, device: &Device) -> Linear {
    LinearConfig::new(input, output).init(device)
}

/// PyTorch flattens R-Net's and O-Net's maps as `[batch, width, height, channels]` (the
/// weights came from Caffe).
fn flatten_transposed(x: Tensor<4>) -> Tensor<2> {
    x.permute([0, 3, 2, 1]).flatten(1, 3)
}

impl PNet {
    fn new(device: &Device) -> Self {
        Self {
            conv1: conv(3, 10, 3, device),
            prelu1: prelu(10, device),
            pool1: pool(2),
            conv2: conv(10, 16, 3, device),
            prelu2: prelu(16, device),
            conv3: conv(16, 32, 3, device),
            prelu3: prelu(32, device),
            conv4_1: conv(32, 2, 1, device),
            conv4_2: conv(32, 4, 1, device),
        }
    }

    /// (box offsets `[1, 4, h, w]`, face probability `[1, 2, h, w]`).
    fn forward(&self, x: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let x = self.pool1.forward(self.prelu1.forward(conv2d(&self.conv1, x)));
        let x = self.prelu2.forward(conv2d(&self.conv2, x));
        let x = self.prelu3.forward(conv2d(&self.conv3, x));
        (conv2d(&self.conv4_2, x.clone()), softmax(conv2d(&self.conv4_1, x), 1))
    }
}

impl RNet {
    fn new(device: &Device) -> Self {
        Self {
            conv1: conv(3, 28, 3, device),
            prelu1: prelu(28, device),
            pool1: pool(3),
            conv2: conv(28, 48, 3, device),
            prelu2: prelu(48, device),
            pool2: pool(3),
            conv3: conv(48, 64, 2, device),
            prelu3: prelu(64, device),
            dense4: dense(576, 128, device),
            prelu4: prelu(128, device),
            dense5_1: dense(128, 2, device),
            dense5_2: dense(128, 4, device),
        }
    }

    /// (box offsets `[n, 4]`, face probability `[n, 2]`) for 24x24 crops.
    fn forward(&self, x: Tensor<4>) -> (Tensor<2>, Tensor<2>) {
        let x = self.pool1.forward(self.prelu1.forward(conv2d(&self.conv1, x)));
        let x = self.pool2.forward(self.prelu2.forward(conv2d(&self.conv2, x)));
        let x = self.prelu3.forward(conv2d(&self.conv3, x));
        let x = self.prelu4.forward(self.dense4.forward(flatten_transposed(x)));
        (self.dense5_2.forward(x.clone()), softmax(self.dense5_1.forward(x), 1))
    }
}

impl ONet {
    fn new(device: &Device) -> Self {
        Self {
            conv1: conv(3, 32, 3, device),
            prelu1: prelu(32, device),
            pool1: pool(3),
            conv2: conv(32, 64, 3, device),
            prelu2: prelu(64, device),
            pool2: pool(3),
            conv3: conv(64, 64, 3, device),
            prelu3: prelu(64, device),
            pool3: pool(2),
            conv4: conv(64, 128, 2, device),
            prelu4: prelu(128, device),
            dense5: dense(1152, 256, device),
            prelu5: prelu(256, device),
            dense6_1: dense(256, 2, device),
            dense6_2: dense(256, 4, device),
            dense6_3: dense(256, 10, device),
        }
    }

    /// (box offsets `[n, 4]`, landmarks `[n, 10]` (five x then five y), face probability `[n, 2]`)
    /// for 48x48 crops.
    fn forward(&self, x: Tensor<4>) -> (Tensor<2>, Tensor<2>, Tensor<2>) {
        let x = self.pool1.forward(self.prelu1.forward(conv2d(&self.conv1, x)));
        let x = self.pool2.forward(self.prelu2.forward(conv2d(&self.conv2, x)));
        let x = self.pool3.forward(self.prelu3.forward(conv2d(&self.conv3, x)));
        let x = self.prelu4.forward(conv2d(&self.conv4, x));
        let x = self.prelu5.forward(self.dense5.forward(flatten_transposed(x)));
        (self.dense6_2.forward(x.clone()), self.dense6_3.forward(x.clone()), softmax(self.dense6_1.forward(x), 1))
    }
}

/// The three networks with facenet-pytorch's weights.
pub struct Mtcnn {
    pnet: PNet,
    rnet: RNet,
    onet: ONet,
    device: Device,
}

impl Mtcnn {
    /// Reads `pnet.pt`, `rnet.pt` and `onet.pt` from `dir` (facenet-pytorch's state dicts).
    pub fn load(dir: &Path) -> Result<Self> {
        let device = Device::flex();
        // PyTorch calls a PReLU's slopes `weight`; Burn calls them `alpha`.
        let remaps = [(r"^(prelu\d+)\.weight$", "$1.alpha")];
        let mut pnet = PNet::new(&device);
        pytorch_weights::load(&mut pnet, &dir.join("pnet.pt"), "MTCNN P-Net", &remaps, |_| false)?;
        let mut rnet = RNet::new(&device);
        pytorch_weights::load(&mut rnet, &dir.join("rnet.pt"), "MTCNN R-Net", &remaps, |_| false)?;
        let mut onet = ONet::new(&device);
        pytorch_weights::load(&mut onet, &dir.join("onet.pt"), "MTCNN O-Net", &remaps, |_| false)?;
        Ok(Self { pnet, rnet, onet, device })
    }

    /// Faces in an RGB photo (`width x height`, interleaved), most confident first.
    pub fn detect(&self, rgb: &[u8], width: usize, height: usize, options: &MtcnnOptions) -> Vec<MtcnnFace> {
        let image = Planes::from_rgb(rgb, width, height);
        let candidates = self.propose(&image, options);
        let candidates = self.refine(&image, candidates, options.thresholds[1] as f32);
        self.output(&image, candidates, options.thresholds[2] as f32)
    }

    /// Stage 1: P-Net over the pyramid; boxes after suppression within and across levels,
    /// moved by their offsets and made square.
    fn propose(&self, image: &Planes, options: &MtcnnOptions) -> Vec<Candidate> {
        let (h, w) = (image.height as f64, image.width as f64);
        let m = 12.0 / options.min_size;
        let mut min_side = h.min(w) * m;
        let mut scale = m;
        let mut all = Vec::new();
        while min_side >= 12.0 {
            let (sh, sw) = ((h * scale + 1.0) as usize, (w * scale + 1.0) as usize);
            let level = image.resize_area(0, 0, image.width, image.height, sw, sh);
            let (reg, prob) = self.pnet.forward(level.into_tensor(&self.device));
            let boxes = level_candidates(reg, prob, scale as f32, options.thresholds[0] as f32);
            let keep = nms(&boxes, 0.5, Overlap::Union);
            all.extend(keep.into_iter().map(|i| boxes[i]));
            scale *= options.factor;
            min_side *= options.factor;
        }
        let keep = nms(&all, 0.7, Overlap::Union);
        keep.into_iter()
            .map(|i| {
                let c = all[i];
                let (bw, bh) = (c.b[2] - c.b[0], c.b[3] - c.b[1]);
                let b =
                    [c.b[0] + c.reg[0] * bw, c.b[1] + c.reg[1] * bh, c.b[2] + c.reg[2] * bw, c.b[3] + c.reg[3] * bh];
                Candidate { b: square(b), score: c.score, reg: [0.0; 4] }
            })
            .collect()
    }

    /// Stage 2: R-Net on 24x24 crops keeps those scoring above `threshold`, suppresses
    /// overlaps, applies its offsets and squares the boxes.
    fn refine(&self, image: &Planes, candidates: Vec<Candidate>, threshold: f32) -> Vec<Candidate> {
        let (candidates, crops) = crops(image, candidates, 24, &self.device);
        let Some(crops) = crops else { return Vec::new() };
        let (reg, prob) = self.rnet.forward(crops);
        let (reg, prob) = (rows(reg), rows(prob));
        let passed: Vec<Candidate> = candidates
            .iter()
            .zip(reg.iter().zip(&prob))
            .filter(|(_, (_, p))| p[1] > threshold)
            .map(|(c, (r, p))| Candidate { b: c.b, score: p[1], reg: [r[0], r[1], r[2], r[3]] })
            .collect();
        nms(&passed, 0.7, Overlap::Union)
            .into_iter()
            .map(|i| passed[i])
            .map(|c| Candidate { b: square(c.shifted()), ..c })
            .collect()
    }

    /// Stage 3: O-Net on 48x48 crops: the final scores, boxes and landmarks, with overlaps
    /// suppressed by intersection over the smaller box.
    fn output(&self, image: &Planes, candidates: Vec<Candidate>, threshold: f32) -> Vec<MtcnnFace> {
        let (candidates, crops) = crops(image, candidates, 48, &self.device);
        let Some(crops) = crops else { return Vec::new() };
        let (reg, points, prob) = self.onet.forward(crops);
        let (reg, points, prob) = (rows(reg), rows(points), rows(prob));
        let mut passed = Vec::new();
        let mut landmarks = Vec::new();
        for (i, c) in candidates.iter().enumerate() {
            if prob[i][1] <= threshold {
                continue;
            }
            let (bw, bh) = (c.b[2] - c.b[0] + 1.0, c.b[3] - c.b[1] + 1.0);
            let p = &points[i];
            landmarks.push(std::array::from_fn(|k| [bw * p[k] + c.b[0] - 1.0, bh * p[k + 5] + c.b[1] - 1.0]));
            let r = &reg[i];
            let moved = Candidate { b: c.b, score: prob[i][1], reg: [r[0], r[1], r[2], r[3]] };
            passed.push(Candidate { b: moved.shifted(), ..moved });
        }
        nms(&passed, 0.7, Overlap::Min)
            .into_iter()
            .map(|i| {
                let c = passed[i];
                MtcnnFace { x1: c.b[0], y1: c.b[1], x2: c.b[2], y2: c.b[3], score: c.score, landmarks: landmarks[i] }
            })
            .collect()
    }
}

/// A box `[x1, y1, x2, y2]`, its score and its regression offsets.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    b: [f32; 4],
    score: f32,
    reg: [f32; 4],
}

impl Candidate {
    /// The box moved by its offsets, in units of its size counted inclusively (facenet's `bbreg`).
    fn shifted(&self) -> [f32; 4] {
        let (w, h) = (self.b[2] - self.b[0] + 1.0, self.b[3] - self.b[1] + 1.0);
        [
            self.b[0] + self.reg[0] * w,
            self.b[1] + self.reg[1] * h,
            self.b[2] + self.reg[2] * w,
            self.b[3] + self.reg[3] * h,
        ]
    }
}

/// The square of the longer side with the same centre (facenet's `rerec`).
fn square(b: [f32; 4]) -> [f32; 4] {
    let (w, h) = (b[2] - b[0], b[3] - b[1]);
    let l = w.max(h);
    let (x1, y1) = (b[0] + w * 0.5 - l * 0.5, b[1] + h * 0.5 - l * 0.5);
    [x1, y1, x1 + l, y1 + l]
}

/// P-Net's cells scoring at least `threshold`, in photo pixels: each output cell sees a 12x12
/// window at stride 2 of the level.
fn level_candidates(reg: Tensor<4>, prob: Tensor<4>, scale: f32, threshold: f32) -> Vec<Candidate> {
    let [_, _, h, w] = prob.dims();
    let prob = prob.into_data().convert::<f32>().try_into_vec::<f32>().expect("floats");
    let reg = reg.into_data().convert::<f32>().try_into_vec::<f32>().expect("floats");
    let plane = h * w;
    let mut out = Vec::new();
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            let score = prob[plane + i];
            if score >= threshold {
                let (fx, fy) = (x as f32, y as f32);
                out.push(Candidate {
                    b: [
                        ((2.0 * fx + 1.0) / scale).floor(),
                        ((2.0 * fy + 1.0) / scale).floor(),
                        ((2.0 * fx + 12.0) / scale).floor(),
                        ((2.0 * fy + 12.0) / scale).floor(),
                    ],
                    score,
                    reg: std::array::from_fn(|k| reg[k * plane + i]),
                });
            }
        }
    }
    out
}

#[derive(Clone, Copy, PartialEq)]
enum Overlap {
    /// Intersection over union, box sides as given (torchvision's `nms`).
    Union,
    /// Intersection over the smaller box, sides counted inclusively (+1; facenet's `nms_numpy`).
    Min,
}

/// Greedy non-maximum suppression: the indices kept, most confident first.
fn nms(boxes: &[Candidate], threshold: f32, overlap: Overlap) -> Vec<usize> {
    let mut order: Vec<usize> = (0..boxes.len()).collect();
    order.sort_by(|&a, &b| boxes[b].score.total_cmp(&boxes[a].score));
    let one = if overlap == Overlap::Min { 1.0 } else { 0.0 };
    let area = |c: &Candidate| (c.b[2] - c.b[0] + one) * (c.b[3] - c.b[1] + one);
    let mut suppressed = vec![false; boxes.len()];
    let mut keep = Vec::new();
    for (k, &i) in order.iter().enumerate() {
        if suppressed[i] {
            continue;
        }
        keep.push(i);
        let a = &boxes[i];
        for &j in &order[k + 1..] {
            let b = &boxes[j];
            let iw = (a.b[2].min(b.b[2]) - a.b[0].max(b.b[0]) + one).max(0.0);
            let ih = (a.b[3].min(b.b[3]) - a.b[1].max(b.b[1]) + one).max(0.0);
            let inter = iw * ih;
            let o = match overlap {
                Overlap::Union => inter / (area(a) + area(b) - inter),
                Overlap::Min => inter / area(a).min(area(b)),
            };
            if o > threshold {
                suppressed[j] = true;
            }
        }
    }
    keep
}

/// Each candidate's box cut out of the photo (clipped as facenet's `pad` clips it) and
/// resized to `side` x `side`, as one batch; candidates whose box lies outside are dropped.
fn crops(
    image: &Planes,
    candidates: Vec<Candidate>,
    side: usize,
    device: &Device,
) -> (Vec<Candidate>, Option<Tensor<4>>) {
    let mut kept = Vec::new();
    let mut data = Vec::new();
    for c in candidates {
        let [x, y, ex, ey] = c.b.map(|v| v.trunc() as i64);
        let (x, y) = (x.max(1), y.max(1));
        let (ex, ey) = (ex.min(image.width as i64), ey.min(image.height as i64));
        if ey > y - 1 && ex > x - 1 {
            let crop = image.resize_area((x - 1) as usize, (y - 1) as usize, ex as usize, ey as usize, side, side);
            data.extend(crop.values);
            kept.push(c);
        }
    }
    if kept.is_empty() {
        return (kept, None);
    }
    let n = kept.len();
    (kept, Some(Tensor::from_data(TensorData::new(data, [n, 3, side, side]), device)))
}

fn rows(t: Tensor<2>) -> Vec<Vec<f32>> {
    let [_, cols] = t.dims();
    let values = t.into_data().convert::<f32>().try_into_vec::<f32>().expect("floats");
    values.chunks(cols).map(|r| r.to_vec()).collect()
}

/// An RGB image as three float planes (0..255), the network's layout.
struct Planes {
    width: usize,
    height: usize,
    values: Vec<f32>,
}

impl Planes {
    fn from_rgb(rgb: &[u8], width: usize, height: usize) -> Self {
        let mut values = vec![0.0; 3 * width * height];
        for (p, px) in rgb.chunks_exact(3).enumerate() {
            for c in 0..3 {
                values[c * width * height + p] = px[c] as f32;
            }
        }
        Self { width, height, values }
    }

    /// The region `[x0, x1) x [y0, y1)` resized to `w` x `h` by averaging, as PyTorch's
    /// `interpolate(mode="area")` (adaptive average pooling), then scaled as MTCNN's input:
    /// `(v - 127.5) / 128`.
    fn resize_area(&self, x0: usize, y0: usize, x1: usize, y1: usize, w: usize, h: usize) -> Planes {
        let (rw, rh) = (x1 - x0, y1 - y0);
        let span = |i: usize, out: usize, len: usize| ((i * len) / out, ((i + 1) * len).div_ceil(out));
        let xs: Vec<(usize, usize)> = (0..w).map(|i| span(i, w, rw)).collect();
        let mut values = Vec::with_capacity(3 * w * h);
        for c in 0..3 {
            let plane = &self.values[c * self.width * self.height..];
            for oy in 0..h {
                let (ya, yb) = span(oy, h, rh);
                for &(xa, xb) in &xs {
                    let mut sum = 0.0f32;
                    for y in ya..yb {
                        let row = &plane[(y0 + y) * self.width + x0..];
                        for v in &row[xa..xb] {
                            sum += v;
                        }
                    }
                    // Divided as PyTorch divides: by the rows, then by the columns.
                    let mean = sum / (yb - ya) as f32 / (xb - xa) as f32;
                    values.push((mean - 127.5) * 0.0078125);
                }
            }
        }
        Planes { width: w, height: h, values }
    }

    fn into_tensor(self, device: &Device) -> Tensor<4> {
        Tensor::from_data(TensorData::new(self.values, [1, 3, self.height, self.width]), device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(b: [f32; 4], score: f32) -> Candidate {
        Candidate { b, score, reg: [0.0; 4] }
    }

    #[test]
    fn suppression_keeps_the_best_of_overlapping_boxes() {
        let boxes = [c([0.0, 0.0, 10.0, 10.0], 0.8), c([1.0, 1.0, 11.0, 11.0], 0.9), c([20.0, 20.0, 30.0, 30.0], 0.7)];
        // IoU of the first two: 81 / 119 = 0.68.
        assert_eq!(nms(&boxes, 0.5, Overlap::Union), vec![1, 2]);
        assert_eq!(nms(&boxes, 0.7, Overlap::Union), vec![1, 0, 2]);
        // A small box inside a big one: low IoU, but all of the small one is covered.
        let nested = [c([0.0, 0.0, 99.0, 99.0], 0.9), c([10.0, 10.0, 29.0, 29.0], 0.8)];
        assert_eq!(nms(&nested, 0.7, Overlap::Union), vec![0, 1]);
        assert_eq!(nms(&nested, 0.7, Overlap::Min), vec![0]);
    }

    #[test]
    fn area_resizing_averages_blocks() {
        // A 4x2 image, halved: each output pixel is the mean of a 2x2 block.
        let rgb: Vec<u8> = [0u8, 40, 80, 120, 8, 48, 88, 128].iter().flat_map(|&v| [v, v, v]).collect();
        let p = Planes::from_rgb(&rgb, 4, 2).resize_area(0, 0, 4, 2, 2, 1);
        let back: Vec<f32> = p.values.iter().map(|v| v / 0.0078125 + 127.5).collect();
        assert_eq!(back, vec![24.0, 104.0, 24.0, 104.0, 24.0, 104.0]);
    }

    #[test]
    fn squares_keep_the_centre() {
        assert_eq!(square([10.0, 20.0, 30.0, 60.0]), [0.0, 20.0, 40.0, 60.0]);
    }

    /// Checkpoints as published (tests/fixtures/make_pytorch_checkpoints.py): other float types,
    /// a `module.` prefix and wrapped state dicts load to the same float32 weights; a state dict
    /// that does not fit is named briefly in its own key names.
    #[test]
    fn pytorch_checkpoints_load_in_every_published_shape() {
        use burn::module::{Module, ModuleVisitor, Param};
        struct Collect(Vec<(burn::tensor::DType, Vec<f32>)>);
        impl ModuleVisitor for Collect {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                let value = param.val();
                self.0.push((value.dtype(), value.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()));
            }
        }
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pytorch_checkpoints");
        let device = Device::flex();
        let remaps = [(r"^(prelu\d+)\.weight$", "$1.alpha")];
        let load = |file: &str| -> Result<Vec<(burn::tensor::DType, Vec<f32>)>> {
            let mut pnet = PNet::new(&device);
            pytorch_weights::load(&mut pnet, &dir.join(file), "MTCNN P-Net", &remaps, |_| false)?;
            let mut collect = Collect(Vec::new());
            pnet.visit(&mut collect);
            Ok(collect.0)
        };
        let reference = load("pnet_f32.pt").unwrap();
        assert!(reference.iter().all(|(dtype, _)| *dtype == burn::tensor::DType::F32));
        // The fixture's values are multiples of 1/64, not a fresh net's initial weights.
        assert!(reference[0].1.iter().all(|v| (v * 64.0).fract() == 0.0) && reference[0].1.iter().any(|v| *v != 0.0));
        for file in
            ["pnet_f16.pt", "pnet_bf16.pt", "pnet_f64.pt", "pnet_module.pt", "pnet_wrapped.pt", "pnet_model_key.pt"]
        {
            assert_eq!(load(file).unwrap_or_else(|e| panic!("{file}: {e:#}")), reference, "{file}");
        }
        let err = format!("{:#}", load("pnet_mismatch.pt").unwrap_err());
        for expected in [
            "pnet_mismatch.pt: not MTCNN P-Net weights",
            "missing conv2.weight",
            "unexpected",
            "conv2.kernel",
            "extra.weight",
            "conv3.bias (file [31], expected [32])",
        ] {
            assert!(err.contains(expected), "`{expected}` not in: {err}");
        }
        assert!(err.len() < 400, "a brief message: {err}");
    }
}
