//! The multi-scale sliding-window search of OpenCV 4's `CascadeClassifier::detectMultiScale`
//! (Haar and LBP cascades alike):
//! the image is shrunk by `scale_factor` step by step, the cascade's fixed window slides over
//! each level, and the windows every stage passes are mapped back to the photo and grouped.

use rayon::prelude::*;

use super::cascade::{Cascade, Feature, Features, LbpFeature, Split, TreeNode};
use super::geometry::BoundingBox;
use super::grey::{GreyImage, Integral, RectOffsets};
use super::group::group_rectangles;

/// `detectMultiScale`'s settings.
#[derive(Clone, Copy, Debug)]
pub struct DetectOptions {
    /// How much the window grows from one level to the next (> 1).
    pub scale_factor: f64,
    /// A face needs more than this many raw windows agreeing on it; 0 returns the raw windows.
    pub min_neighbors: usize,
    /// Smallest face side in pixels.
    pub min_size: usize,
    /// Largest face side in pixels (None: the image).
    pub max_size: Option<usize>,
}

impl Default for DetectOptions {
    /// OpenCV's scale step; five neighbours and 48 pixels (FER2013's face size), the settings
    /// facial-expression tools commonly use to avoid false faces.
    fn default() -> Self {
        Self { scale_factor: 1.1, min_neighbors: 5, min_size: 48, max_size: None }
    }
}

/// OpenCV's grouping tolerance (`GROUP_EPS`).
const GROUP_EPS: f64 = 0.2;

impl Cascade {
    /// Faces in `image`: the raw windows, grouped (OpenCV's `groupRectangles`).
    pub fn detect(&self, image: &GreyImage, options: &DetectOptions) -> Vec<BoundingBox> {
        group_rectangles(&self.windows(image, options), options.min_neighbors, GROUP_EPS)
    }

    /// Every window that passes all stages, at every scale, in photo pixels.
    pub fn windows(&self, image: &GreyImage, options: &DetectOptions) -> Vec<BoundingBox> {
        assert!(options.scale_factor > 1.0, "the scale factor must be above 1");
        let scales = self.scales(image, options);
        let stumps = Stumps::of(self);
        // One task per level; the levels' lists are joined in order, so the result does not
        // depend on the thread count.
        scales.par_iter().flat_map_iter(|&scale| self.windows_at(image, scale, stumps.as_ref())).collect()
    }

    /// The levels OpenCV visits: factors 1, f, f^2, ... (as f32) whose window fits the size limits.
    fn scales(&self, image: &GreyImage, options: &DetectOptions) -> Vec<f32> {
        let (ww, wh) = self.window;
        let max = options.max_size.unwrap_or(usize::MAX);
        let mut scales = Vec::new();
        let mut factor = 1.0f64;
        loop {
            let (w, h) =
                ((ww as f64 * factor).round_ties_even() as usize, (wh as f64 * factor).round_ties_even() as usize);
            if w > max || h > max || w > image.width || h > image.height {
                break;
            }
            if w >= options.min_size && h >= options.min_size {
                scales.push(factor as f32);
            }
            factor *= options.scale_factor;
        }
        scales
    }

    /// The windows of the level at `scale` that pass every stage; `stumps`: the cascade flat
    /// ([`Stumps::of`]), where it can be, else the trees are walked.
    fn windows_at(&self, image: &GreyImage, scale: f32, stumps: Option<&Stumps>) -> Vec<BoundingBox> {
        let (ww, wh) = self.window;
        let (w, h) = (round(image.width as f32 / scale), round(image.height as f32 / scale));
        let level = image.resize_bilinear(w, h);
        let integral = Integral::new(&level);
        let level_features = match (stumps, &self.features) {
            (Some(_), Features::Haar(features)) => features.iter().map(|f| OptFeature::new(f, &integral)).collect(),
            _ => Vec::new(),
        };
        let classify = |x: usize, y: usize| match stumps {
            Some(stumps) => self.classify_stumps(&integral, stumps, &level_features, x, y),
            None => self.classify(&integral, x, y),
        };
        let step = if scale >= 2.0 { 1 } else { 2 };
        let size = (round(ww as f32 * scale), round(wh as f32 * scale));
        let mut found = Vec::new();
        // OpenCV's bounds: positions x with x + window < width + 1.
        for y in (0..(h + 1).saturating_sub(wh)).step_by(step) {
            let mut x = 0;
            while x < (w + 1).saturating_sub(ww) {
                match classify(x, y) {
                    Verdict::Face => found.push(BoundingBox {
                        x: round(x as f32 * scale),
                        y: round(y as f32 * scale),
                        width: size.0,
                        height: size.1,
                    }),
                    // A window the first stage rejects skips its right neighbour too (OpenCV).
                    Verdict::Rejected { stage: 0 } => x += step,
                    _ => {}
                }
                x += step;
            }
        }
        found
    }

    /// What a Haar feature's value at the window at (x, y) is multiplied by: 1 / (area x the
    /// grey levels' standard deviation), measured inside a one-pixel border (OpenCV's
    /// HaarEvaluator); `None` for a window of too little contrast to be a face.
    fn contrast_norm(&self, ii: &Integral, x: usize, y: usize) -> Option<f32> {
        let (ww, wh) = self.window;
        // sqrt(area * sum(p^2) - sum(p)^2) = area x standard deviation.
        let area = ((ww - 2) * (wh - 2)) as f64;
        let sum = ii.sum(x + 1, y + 1, ww - 2, wh - 2) as f64;
        let squares = ii.square_sum(x + 1, y + 1, ww - 2, wh - 2) as f64;
        let nf = area * squares - sum * sum;
        if nf <= 0.0 {
            return None;
        }
        let norm = (1.0 / nf.sqrt()) as f32;
        // Windows with a standard deviation of 10 grey levels or less are not faces (OpenCV).
        if area * norm as f64 >= 0.1 { None } else { Some(norm) }
    }

    /// [`Cascade::classify`] for a cascade of stumps, through its flat layout and the level's
    /// features as offsets: the same sums in the same order, so the same verdicts.
    fn classify_stumps(&self, ii: &Integral, stumps: &Stumps, features: &[OptFeature], x: usize, y: usize) -> Verdict {
        let Some(norm) = self.contrast_norm(ii, x, y) else {
            return Verdict::Flat;
        };
        let origin = ii.origin(x, y);
        let mut start = 0;
        for (s, &(end, threshold)) in stumps.stages.iter().enumerate() {
            let mut votes = 0.0f64;
            for stump in &stumps.stumps[start..end] {
                let value = features[stump.feature as usize].value(ii, origin) * norm;
                votes += (if value < stump.threshold { stump.left } else { stump.right }) as f64;
            }
            if votes < threshold as f64 {
                return Verdict::Rejected { stage: s };
            }
            start = end;
        }
        Verdict::Face
    }

    /// Runs the cascade on the window at (x, y) of a level (the window lies inside it).
    fn classify(&self, ii: &Integral, x: usize, y: usize) -> Verdict {
        let (haar, lbp): (&[Feature], &[LbpFeature]) = match &self.features {
            Features::Haar(f) => (f, &[]),
            Features::Lbp(f) => (&[], f),
        };
        // Haar features are divided by the window's contrast (OpenCV's HaarEvaluator); LBP codes
        // compare sums with each other and need no normalisation.
        let mut norm = 1.0f32;
        if !haar.is_empty() {
            match self.contrast_norm(ii, x, y) {
                Some(n) => norm = n,
                None => return Verdict::Flat,
            }
        }
        for (s, stage) in self.stages.iter().enumerate() {
            let mut votes = 0.0f64;
            for weak in &stage.weak {
                // OpenCV's predictOrdered / predictCategorical: walk from the root until a child
                // index of 0 or below names a leaf.
                let mut idx = 0usize;
                let leaf = loop {
                    let node = &weak.nodes[idx];
                    let go_left = match node.split {
                        Split::Threshold(threshold) => {
                            let value = haar[node.feature]
                                .rects
                                .iter()
                                .map(|r| r.weight * ii.sum(x + r.x, y + r.y, r.width, r.height) as i32 as f32)
                                .sum::<f32>()
                                * norm;
                            value < threshold
                        }
                        Split::Subset(bits) => {
                            let code = lbp_code(&lbp[node.feature], ii, x, y);
                            bits[code >> 5] & (1 << (code & 31)) != 0
                        }
                    };
                    let next = if go_left { node.left } else { node.right };
                    if next > 0 {
                        idx = next as usize;
                    } else {
                        break weak.leaves[next.unsigned_abs() as usize];
                    }
                };
                votes += leaf as f64;
            }
            if votes < stage.threshold as f64 {
                return Verdict::Rejected { stage: s };
            }
        }
        Verdict::Face
    }
}

/// A Haar cascade whose weak classifiers are all stumps (one split, two leaves: OpenCV's
/// `haarcascade_frontalface_default.xml`, 2,913 of them) laid out flat, as OpenCV's
/// `CascadeClassifierImpl::Data::Stump` array (`cascadedetect.hpp`): every stage's stumps one
/// after the other, 16 bytes each. Why: walking each weak classifier's two small heap vectors
/// (its nodes, its leaves) and each feature's vector of rectangles was most of a photo's Haar
/// detection (`perf`: `windows_at` 93%), and ferkit took 1.2-1.8x OpenCV 4.14's time on an AMD
/// EPYC (`bench/run.sh`, session 28).
struct Stumps {
    stumps: Vec<Stump>,
    /// Each stage's end in `stumps`, and its threshold.
    stages: Vec<(usize, f32)>,
}

#[derive(Clone, Copy)]
struct Stump {
    feature: u32,
    threshold: f32,
    /// The votes for a value below the threshold and for one at or above it.
    left: f32,
    right: f32,
}

impl Stumps {
    /// `None` unless every weak classifier is a stump over a Haar feature of two or three
    /// rectangles (other cascades walk their trees: [`Cascade::classify`]).
    fn of(cascade: &Cascade) -> Option<Self> {
        let Features::Haar(features) = &cascade.features else { return None };
        if features.iter().any(|f| !(2..=3).contains(&f.rects.len())) {
            return None;
        }
        let (mut stumps, mut stages) = (Vec::new(), Vec::new());
        for stage in &cascade.stages {
            for weak in &stage.weak {
                let [TreeNode { feature, split: Split::Threshold(threshold), left, right }] = weak.nodes[..] else {
                    return None;
                };
                // Child indices of 0 or below name leaves (OpenCV's encoding).
                let leaf = |i: i32| if i <= 0 { weak.leaves.get(i.unsigned_abs() as usize).copied() } else { None };
                let feature = u32::try_from(feature).ok()?;
                stumps.push(Stump { feature, threshold, left: leaf(left)?, right: leaf(right)? });
            }
            stages.push((stumps.len(), stage.threshold));
        }
        Some(Stumps { stumps, stages })
    }
}

/// A Haar feature's two or three rectangles as offsets in one level's integral image, with their
/// weights (OpenCV's `HaarEvaluator::OptFeature`): a fixed-size record, no vector to follow.
struct OptFeature {
    rects: [RectOffsets; 3],
    weights: [f32; 3],
    three: bool,
}

impl OptFeature {
    fn new(feature: &Feature, ii: &Integral) -> Self {
        let (mut rects, mut weights) = ([RectOffsets::default(); 3], [0f32; 3]);
        for (i, r) in feature.rects.iter().take(3).enumerate() {
            rects[i] = ii.rect_offsets(r.x, r.y, r.width, r.height);
            weights[i] = r.weight;
        }
        OptFeature { rects, weights, three: feature.rects.len() == 3 }
    }

    /// The weighted sum at the window at `origin`, added in the rectangles' order as
    /// [`Cascade::classify`] adds them (the sign of a zero aside, which no comparison sees).
    #[inline]
    fn value(&self, ii: &Integral, origin: usize) -> f32 {
        let term = |i: usize| self.weights[i] * ii.sum_at(origin, &self.rects[i]) as i32 as f32;
        let two = term(0) + term(1);
        if self.three { two + term(2) } else { two }
    }
}

/// The 8-bit multi-block LBP code of `f` in the window at (x, y): each outer cell of the 3x3 grid
/// whose sum is at least the centre cell's sets a bit, clockwise from the top-left cell (bit 7)
/// to the middle-left one (bit 0), as OpenCV's `LBPEvaluator::OptFeature::calc`.
fn lbp_code(f: &LbpFeature, ii: &Integral, x: usize, y: usize) -> usize {
    let cell = |col: usize, row: usize| ii.sum(x + f.x + col * f.width, y + f.y + row * f.height, f.width, f.height);
    let centre = cell(1, 1);
    const BITS: [(usize, usize, usize); 8] =
        [(0, 0, 128), (1, 0, 64), (2, 0, 32), (2, 1, 16), (2, 2, 8), (1, 2, 4), (0, 2, 2), (0, 1, 1)];
    BITS.iter().filter(|(col, row, _)| cell(*col, *row) >= centre).map(|(_, _, bit)| bit).sum()
}

#[derive(Debug, PartialEq)]
enum Verdict {
    Face,
    Rejected {
        stage: usize,
    },
    /// Too little contrast to be a face.
    Flat,
}

/// OpenCV's `cvRound`: to the nearest integer, halves to even.
fn round(v: f32) -> usize {
    v.round_ties_even() as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detection::cascade::{Stage, WeakClassifier, WeightedRect};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// Six stages of eight stumps over 40 random features of two and three rectangles.
    fn random_stump_cascade(seed: u64) -> Cascade {
        let mut rng = StdRng::seed_from_u64(seed);
        let features: Vec<Feature> = (0..40)
            .map(|i| Feature {
                rects: (0..2 + i % 2)
                    .map(|_| {
                        let (x, y) = (rng.random_range(0..20), rng.random_range(0..20));
                        let (width, height) = (rng.random_range(1..=24 - x), rng.random_range(1..=24 - y));
                        WeightedRect { x, y, width, height, weight: rng.random_range(-2.0..2.0f32) }
                    })
                    .collect(),
            })
            .collect();
        let mut stages: Vec<Stage> = (0..6)
            .map(|_| Stage {
                threshold: rng.random_range(-3.5..0.0f32),
                weak: (0..8)
                    .map(|_| WeakClassifier {
                        nodes: vec![TreeNode {
                            feature: rng.random_range(0..40),
                            split: Split::Threshold(rng.random_range(-1.0..1.0f32)),
                            left: 0,
                            right: -1,
                        }],
                        leaves: vec![rng.random_range(-1.0..1.0f32), rng.random_range(-1.0..1.0f32)],
                    })
                    .collect(),
            })
            .collect();
        // The last three stages pass every window that reaches them (their stumps are still
        // evaluated), so that some windows are faces.
        for stage in &mut stages[3..] {
            stage.threshold = -9.0;
        }
        Cascade { window: (24, 24), stages, features: Features::Haar(features) }
    }

    /// The flat path ([`Stumps`], [`OptFeature`]) gives every window the verdict the tree walk
    /// gives it, and the search the same raw windows; windows are rejected at more than one stage
    /// and some pass all six, so the comparison covers the whole cascade.
    #[test]
    fn the_flat_stumps_give_the_tree_walks_verdicts() {
        let (w, h) = (90, 70);
        let pixels = (0..w * h).map(|i| ((i * 37 + (i / w) * 11 + (i * i) % 29) % 256) as u8).collect();
        let image = GreyImage::new(w, h, pixels);
        let integral = Integral::new(&image);
        let (mut faces, mut rejected_at) = (0, std::collections::BTreeSet::new());
        for seed in 0..4 {
            let cascade = random_stump_cascade(seed);
            let stumps = Stumps::of(&cascade).expect("a cascade of stumps");
            let Features::Haar(features) = &cascade.features else { unreachable!() };
            let features: Vec<OptFeature> = features.iter().map(|f| OptFeature::new(f, &integral)).collect();
            for y in 0..=h - 24 {
                for x in 0..=w - 24 {
                    let tree = cascade.classify(&integral, x, y);
                    assert_eq!(
                        tree,
                        cascade.classify_stumps(&integral, &stumps, &features, x, y),
                        "seed {seed}, ({x}, {y})"
                    );
                    match tree {
                        Verdict::Face => faces += 1,
                        Verdict::Rejected { stage } => {
                            rejected_at.insert(stage);
                        }
                        Verdict::Flat => {}
                    }
                }
            }
            for scale in [1.0f32, 1.3, 2.0] {
                assert_eq!(cascade.windows_at(&image, scale, None), cascade.windows_at(&image, scale, Some(&stumps)));
            }
        }
        assert!(faces > 0 && rejected_at.len() >= 2, "{faces} faces, rejections at stages {rejected_at:?}");
    }

    /// A tree of two splits is not a stump: that cascade keeps walking its trees.
    #[test]
    fn a_cascade_with_a_tree_is_not_flattened() {
        let mut cascade = random_stump_cascade(0);
        cascade.stages[2].weak[1].nodes[0].left = 1;
        cascade.stages[2].weak[1].nodes.push(TreeNode {
            feature: 0,
            split: Split::Threshold(0.0),
            left: -1,
            right: -2,
        });
        cascade.stages[2].weak[1].leaves.push(0.5);
        assert!(Stumps::of(&cascade).is_none());
    }
}
