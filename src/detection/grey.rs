//! Grey images and the operations the detector needs on them, each computed the way OpenCV
//! 4 computes it so that detections agree with `cv2.CascadeClassifier.detectMultiScale`:
//! colour to grey (`cvtColor(..., COLOR_RGB2GRAY)`, 14-bit fixed point), bilinear downscaling
//! (`resize(..., INTER_LINEAR_EXACT)`, 8-bit fixed-point weights) and integral images.

/// An 8-bit grey image, row-major.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GreyImage {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

impl GreyImage {
    pub fn new(width: usize, height: usize, pixels: Vec<u8>) -> Self {
        assert_eq!(pixels.len(), width * height, "a {width}x{height} image has {} pixels", width * height);
        Self { width, height, pixels }
    }

    /// `Y = 0.299 R + 0.587 G + 0.114 B` in OpenCV's 14-bit fixed point
    /// ([`crate::data::image_io::grey_levels`]).
    pub fn from_rgb(width: usize, height: usize, rgb: &[u8]) -> Self {
        Self::new(width, height, crate::data::image_io::grey_levels(rgb))
    }

    pub fn at(&self, x: usize, y: usize) -> u8 {
        self.pixels[y * self.width + x]
    }

    /// Bilinear resampling to `width` x `height` with pixel centres aligned, as OpenCV's
    /// `INTER_LINEAR_EXACT`: weights rounded to 1/256, the result rounded from 1/65536.
    pub fn resize_bilinear(&self, width: usize, height: usize) -> GreyImage {
        if (width, height) == (self.width, self.height) {
            return self.clone();
        }
        let xs = taps(self.width, width);
        let ys = taps(self.height, height);
        let mut pixels = Vec::with_capacity(width * height);
        let mut row0 = vec![0u32; width];
        let mut row1 = vec![0u32; width];
        for &(sy, wy0, wy1) in &ys {
            horizontal(&self.pixels[sy * self.width..][..self.width], &xs, &mut row0);
            let next = (sy + 1).min(self.height - 1);
            horizontal(&self.pixels[next * self.width..][..self.width], &xs, &mut row1);
            pixels.extend(row0.iter().zip(&row1).map(|(&a, &b)| ((a * wy0 + b * wy1 + (1 << 15)) >> 16) as u8));
        }
        GreyImage::new(width, height, pixels)
    }
}

/// For each destination index: the first source index and the two weights (summing to 256).
fn taps(src: usize, dst: usize) -> Vec<(usize, u32, u32)> {
    // OpenCV takes the scale from the two sizes, inverted: 1 / (dst / src).
    let scale = 1.0 / (dst as f64 / src as f64);
    (0..dst)
        .map(|d| {
            let s = (d as f64 + 0.5) * scale - 0.5;
            let first = s.floor();
            let frac = s - first;
            if first < 0.0 {
                (0, 256, 0)
            } else if first as usize >= src - 1 {
                (src - 1, 256, 0)
            } else {
                (
                    first as usize,
                    ((1.0 - frac) * 256.0).round_ties_even() as u32,
                    (frac * 256.0).round_ties_even() as u32,
                )
            }
        })
        .collect()
}

fn horizontal(row: &[u8], xs: &[(usize, u32, u32)], out: &mut [u32]) {
    for (o, &(sx, w0, w1)) in out.iter_mut().zip(xs) {
        let next = (sx + 1).min(row.len() - 1);
        *o = row[sx] as u32 * w0 + row[next] as u32 * w1;
    }
}

/// A rectangle's four corners as offsets in an [`Integral`]'s tables from a window's top-left
/// corner. They depend on the image's width, so they are computed once per pyramid level
/// (OpenCV's `HaarEvaluator::OptFeature`, `modules/objdetect/src/cascadedetect.hpp`).
#[derive(Clone, Copy, Debug, Default)]
pub struct RectOffsets {
    top_left: usize,
    top_right: usize,
    bottom_left: usize,
    bottom_right: usize,
}

/// Sums and sums of squares of the grey levels above and left of each point, so that any
/// rectangle's sum takes four lookups. Arithmetic wraps at 2^32 as OpenCV's 32-bit integral
/// images do: a window's sums (at most 24 x 24 x 255^2) are exact even where a whole large
/// image's are not.
pub struct Integral {
    stride: usize,
    sums: Vec<u32>,
    squares: Vec<u32>,
}

impl Integral {
    pub fn new(image: &GreyImage) -> Self {
        let stride = image.width + 1;
        let mut sums = vec![0u32; stride * (image.height + 1)];
        let mut squares = vec![0u32; stride * (image.height + 1)];
        for y in 0..image.height {
            let (mut row_sum, mut row_square) = (0u32, 0u32);
            for x in 0..image.width {
                let p = image.at(x, y) as u32;
                row_sum = row_sum.wrapping_add(p);
                row_square = row_square.wrapping_add(p * p);
                let i = (y + 1) * stride + x + 1;
                sums[i] = sums[i - stride].wrapping_add(row_sum);
                squares[i] = squares[i - stride].wrapping_add(row_square);
            }
        }
        Self { stride, sums, squares }
    }

    /// The corners of the rectangle `(x, y, w, h)` of a window as offsets from the window's
    /// top-left corner in this image's tables: see [`Integral::sum_at`].
    pub fn rect_offsets(&self, x: usize, y: usize, w: usize, h: usize) -> RectOffsets {
        let top = y * self.stride + x;
        let bottom = (y + h) * self.stride + x;
        RectOffsets { top_left: top, top_right: top + w, bottom_left: bottom, bottom_right: bottom + w }
    }

    /// Where the window whose top-left pixel is (x, y) starts in this image's tables.
    pub fn origin(&self, x: usize, y: usize) -> usize {
        y * self.stride + x
    }

    /// Sum of the grey levels in a rectangle given by its [`Integral::rect_offsets`] from the
    /// window at `origin` ([`Integral::origin`]): what [`Integral::sum`] gives, in four reads.
    #[inline]
    pub fn sum_at(&self, origin: usize, r: &RectOffsets) -> u32 {
        Self::corners(&self.sums[origin..], r)
    }

    /// A rectangle's sum from its four corners in `table` (sums or squares).
    #[inline(always)]
    fn corners(table: &[u32], r: &RectOffsets) -> u32 {
        let t = table;
        t[r.bottom_right].wrapping_sub(t[r.bottom_left]).wrapping_sub(t[r.top_right]).wrapping_add(t[r.top_left])
    }

    /// Sum of the grey levels in the rectangle.
    pub fn sum(&self, x: usize, y: usize, w: usize, h: usize) -> u32 {
        Self::corners(&self.sums, &self.rect_offsets(x, y, w, h))
    }

    /// Sum of the squared grey levels in the rectangle.
    pub fn square_sum(&self, x: usize, y: usize, w: usize, h: usize) -> u32 {
        Self::corners(&self.squares, &self.rect_offsets(x, y, w, h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_image(w: usize, h: usize) -> GreyImage {
        GreyImage::new(w, h, (0..w * h).map(|i| ((i * 37 + i / w * 11) % 256) as u8).collect())
    }

    #[test]
    fn integral_sums_equal_direct_sums() {
        let img = test_image(13, 9);
        let ii = Integral::new(&img);
        for (x, y, w, h) in [(0, 0, 13, 9), (2, 3, 5, 4), (12, 8, 1, 1), (0, 4, 7, 5)] {
            let (mut s, mut q) = (0u32, 0u32);
            for yy in y..y + h {
                for xx in x..x + w {
                    s += img.at(xx, yy) as u32;
                    q += (img.at(xx, yy) as u32).pow(2);
                }
            }
            assert_eq!((ii.sum(x, y, w, h), ii.square_sum(x, y, w, h)), (s, q), "rect {x} {y} {w} {h}");
        }
    }

    #[test]
    fn grey_weights_are_bt601() {
        let g = GreyImage::from_rgb(3, 1, &[255, 0, 0, 0, 255, 0, 0, 0, 255]);
        // 0.299, 0.587 and 0.114 of 255, rounded.
        assert_eq!(g.pixels, vec![76, 150, 29]);
    }

    #[test]
    fn bilinear_halving_averages_pixel_pairs_and_same_size_copies() {
        let img = GreyImage::new(4, 2, vec![10, 20, 30, 41, 50, 60, 70, 80]);
        // Halving puts each destination centre between two source centres in both directions.
        let half = img.resize_bilinear(2, 1);
        assert_eq!(half.pixels, vec![35, 55]); // (10+20+50+60)/4, (30+41+70+80)/4 = 55.25
        assert_eq!(img.resize_bilinear(4, 2), img);
    }
}
