//! The multi-scale sliding-window search of OpenCV 4's `CascadeClassifier::detectMultiScale`
//! (Haar and LBP cascades alike):
//! the image is shrunk by `scale_factor` step by step, the cascade's fixed window slides over
//! each level, and the windows every stage passes are mapped back to the photo and grouped.

use rayon::prelude::*;

use super::cascade::{Cascade, Feature, Features, LbpFeature, Split};
use super::geometry::BoundingBox;
use super::grey::{GreyImage, Integral};
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
        // One task per level; the levels' lists are joined in order, so the result does not
        // depend on the thread count.
        scales.par_iter().flat_map_iter(|&scale| self.windows_at(image, scale)).collect()
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

    fn windows_at(&self, image: &GreyImage, scale: f32) -> Vec<BoundingBox> {
        let (ww, wh) = self.window;
        let (w, h) = (round(image.width as f32 / scale), round(image.height as f32 / scale));
        let level = image.resize_bilinear(w, h);
        let integral = Integral::new(&level);
        let step = if scale >= 2.0 { 1 } else { 2 };
        let size = (round(ww as f32 * scale), round(wh as f32 * scale));
        let mut found = Vec::new();
        // OpenCV's bounds: positions x with x + window < width + 1.
        for y in (0..(h + 1).saturating_sub(wh)).step_by(step) {
            let mut x = 0;
            while x < (w + 1).saturating_sub(ww) {
                match self.classify(&integral, x, y) {
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
            let (ww, wh) = self.window;
            // Measured inside a one-pixel border: sqrt(area * sum(p^2) - sum(p)^2) = area x standard deviation.
            let area = ((ww - 2) * (wh - 2)) as f64;
            let sum = ii.sum(x + 1, y + 1, ww - 2, wh - 2) as f64;
            let squares = ii.square_sum(x + 1, y + 1, ww - 2, wh - 2) as f64;
            let nf = area * squares - sum * sum;
            if nf <= 0.0 {
                return Verdict::Flat;
            }
            norm = (1.0 / nf.sqrt()) as f32;
            // Windows with a standard deviation of 10 grey levels or less are not faces (OpenCV).
            if area * norm as f64 >= 0.1 {
                return Verdict::Flat;
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
