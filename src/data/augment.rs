//! Data augmentation with Keras `ImageDataGenerator` semantics: a random affine transform
//! (rotation, shifts, shear, independent x/y zoom) composed and centred as Keras composes it and
//! sampled with bilinear interpolation exactly as `scipy.ndimage.affine_transform(order=1)`
//! does, in fill modes nearest, constant, reflect and wrap; then a horizontal flip. Also random
//! crop with padding and random erasing, for later recipes.
//!
//! Every sample's transform comes from a generator seeded by (run seed, epoch, row), so a seed
//! fixes the augmentation whatever thread or batch a row lands in.

use std::f64::consts::PI;

use crate::error::{Context, Result, bail};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FillMode {
    /// Repeat the edge pixel (`aaaa|abcd|dddd`), Keras' default.
    #[default]
    Nearest,
    /// A constant value (`cval`) outside the image.
    Constant,
    /// Half-sample symmetric (`dcba|abcd|dcba`).
    Reflect,
    /// scipy's `wrap` (`abcd|abcd`, with the first and last samples overlapping).
    Wrap,
}

/// What to augment, with Keras' parameter meanings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    /// Degrees: angle ~ U(-rotation, rotation).
    pub rotation: f64,
    /// Degrees: shear ~ U(-shear, shear).
    pub shear: f64,
    /// zx, zy ~ U(1 - zoom, 1 + zoom), drawn independently.
    pub zoom: f64,
    /// Fractions of the width / height: shift ~ U(-f, f) * size.
    pub width_shift: f64,
    pub height_shift: f64,
    /// Flip left-right with probability 0.5.
    pub hflip: bool,
    pub fill: FillMode,
    /// The value outside the image in `constant` mode.
    pub cval: f64,
    /// Random crop after padding by this many pixels on each side (a random integer shift).
    pub crop_padding: usize,
    /// Probability of random erasing (a rectangle of 2-33% of the area set to 0, the mean of a
    /// standardised image).
    pub erasing: f64,
}

/// One sample's transform parameters (Keras' `get_random_transform`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AffineParams {
    pub theta: f64,
    /// Shift along rows (Keras' `tx`, from `height_shift_range`) and columns (`ty`), in pixels.
    pub tx: f64,
    pub ty: f64,
    pub shear: f64,
    pub zx: f64,
    pub zy: f64,
    pub flip: bool,
}

impl AugmentConfig {
    /// Parses `rotation=20,shear=20,zoom=0.1,hflip,fill=nearest`.
    pub fn parse(spec: &str) -> Result<AugmentConfig> {
        Self::parse_items(spec).map_err(|e| e.at(None, None, Some("augment")))
    }

    fn parse_items(spec: &str) -> Result<AugmentConfig> {
        let mut c = AugmentConfig::default();
        let mut seen = std::collections::HashSet::new();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = item.split_once('=').map_or((item, None), |(k, v)| (k.trim(), Some(v.trim())));
            let canonical = match key {
                "crop_padding" => "crop",
                "erase" => "erasing",
                k => k,
            };
            if !seen.insert(canonical.to_string()) {
                bail!(BadInput @ "augment", "augment: `{key}` is given twice; give each setting once");
            }
            let number = || -> Result<f64> {
                let v = value.with_context(|| format!("augment: `{key}` needs a value, like {key}=0.1"))?;
                let x: f64 = v.parse().with_context(|| format!("augment: `{key}={v}` is not a number"))?;
                if !(x >= 0.0 && x.is_finite()) {
                    bail!(BadInput @ "augment", "augment: `{key}` must be a non-negative number");
                }
                Ok(x)
            };
            match key {
                "rotation" => c.rotation = number()?,
                "shear" => c.shear = number()?,
                "zoom" => c.zoom = number()?,
                "width_shift" => c.width_shift = number()?,
                "height_shift" => c.height_shift = number()?,
                "cval" => {
                    c.cval = value
                        .and_then(|v| v.parse::<f64>().ok())
                        .filter(|v| v.is_finite())
                        .context("augment: cval needs a finite number")?
                }
                "crop" | "crop_padding" => {
                    let x = number()?;
                    if x.fract() != 0.0 || x > 24.0 {
                        bail!(BadInput @ "augment", "augment: crop is a whole number of pixels in 0..=24 (got {x})");
                    }
                    c.crop_padding = x as usize
                }
                "erasing" | "erase" => c.erasing = number()?,
                "hflip" => {
                    c.hflip = match value.map(str::to_ascii_lowercase).as_deref() {
                        None | Some("true") | Some("1") | Some("yes") => true,
                        Some("false") | Some("0") | Some("no") => false,
                        Some(other) => bail!(BadInput @ "augment", "augment: hflip={other} is not true or false"),
                    }
                }
                "fill" => {
                    c.fill = match value {
                        Some("nearest") => FillMode::Nearest,
                        Some("constant") => FillMode::Constant,
                        Some("reflect") => FillMode::Reflect,
                        Some("wrap") => FillMode::Wrap,
                        other => {
                            bail!(BadInput @ "augment", "augment: fill={} is not nearest, constant, reflect or wrap", other.unwrap_or(""))
                        }
                    }
                }
                other => bail!(BadInput @ "augment",
                    "augment: unknown `{other}` (known: rotation, shear, zoom, width_shift, height_shift, hflip, \
                     fill, cval, crop, erasing)"
                ),
            }
        }
        if c.zoom >= 1.0 || c.erasing > 1.0 {
            bail!(BadInput @ "augment", "augment: zoom must be below 1 and erasing at most 1");
        }
        if c.rotation > 180.0 || c.shear > 90.0 || c.width_shift >= 1.0 || c.height_shift >= 1.0 {
            bail!(BadInput @ "augment",
                "augment: rotation is at most 180 (degrees), shear at most 90 (degrees), and the shifts below 1 \
                 (a share of the side)"
            );
        }
        Ok(c)
    }

    /// Keras' `get_random_transform` for an image of `h` x `w`.
    pub fn sample(&self, h: usize, w: usize, rng: &mut StdRng) -> AffineParams {
        let uniform = |rng: &mut StdRng, r: f64| if r > 0.0 { rng.random_range(-r..r) } else { 0.0 };
        let theta = uniform(rng, self.rotation);
        let tx = uniform(rng, self.height_shift) * h as f64;
        let ty = uniform(rng, self.width_shift) * w as f64;
        let shear = uniform(rng, self.shear);
        let (zx, zy) = if self.zoom > 0.0 {
            (rng.random_range(1.0 - self.zoom..1.0 + self.zoom), rng.random_range(1.0 - self.zoom..1.0 + self.zoom))
        } else {
            (1.0, 1.0)
        };
        let flip = self.hflip && rng.random::<f64>() < 0.5;
        AffineParams { theta, tx, ty, shear, zx, zy, flip }
    }

    /// Augments one image (row-major `h` x `w`) in place.
    pub fn apply(&self, image: &mut [f32], h: usize, w: usize, rng: &mut StdRng) {
        let p = self.sample(h, w, rng);
        if let Some(m) = keras_matrix(&p, h, w) {
            let src = image.to_vec();
            affine_transform(&src, h, w, &m, self.fill, self.cval, image);
        }
        if p.flip {
            flip_horizontal(image, h, w);
        }
        if self.crop_padding > 0 {
            let pad = self.crop_padding as i64;
            let (dy, dx) = (rng.random_range(-pad..=pad), rng.random_range(-pad..=pad));
            let m = [[1.0, 0.0, dy as f64], [0.0, 1.0, dx as f64]];
            let src = image.to_vec();
            affine_transform(&src, h, w, &m, self.fill, self.cval, image);
        }
        if self.erasing > 0.0 && rng.random::<f64>() < self.erasing {
            random_erase(image, h, w, rng);
        }
    }

    pub fn is_identity(&self) -> bool {
        *self == AugmentConfig { fill: self.fill, cval: self.cval, ..Default::default() }
    }
}

/// The generator for one row in one epoch (SplitMix64-style mixing of the three numbers).
pub fn sample_rng(seed: u64, epoch: usize, row: usize) -> StdRng {
    let mut z =
        seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (row as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    StdRng::seed_from_u64(z ^ (z >> 31))
}

type Mat3 = [[f64; 3]; 3];

fn matmul(a: &Mat3, b: &Mat3) -> Mat3 {
    let mut c = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            c[i][j] = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    c
}

/// Keras' `apply_affine_transform` matrix: rotation, shift, shear and zoom composed in that
/// order, centred on the image, with rows and columns swapped for (row, col) indexing. Returns
/// the 2x3 [matrix | offset] mapping output (row, col) to input (row, col), or None for the
/// identity (Keras then leaves the image untouched).
pub fn keras_matrix(p: &AffineParams, h: usize, w: usize) -> Option<[[f64; 3]; 2]> {
    let mut m: Option<Mat3> = None;
    let mut then = |next: Mat3| m = Some(m.map_or(next, |cur| matmul(&cur, &next)));
    if p.theta != 0.0 {
        let t = p.theta * PI / 180.0;
        then([[t.cos(), -t.sin(), 0.0], [t.sin(), t.cos(), 0.0], [0.0, 0.0, 1.0]]);
    }
    if p.tx != 0.0 || p.ty != 0.0 {
        then([[1.0, 0.0, p.tx], [0.0, 1.0, p.ty], [0.0, 0.0, 1.0]]);
    }
    if p.shear != 0.0 {
        let s = p.shear * PI / 180.0;
        then([[1.0, -s.sin(), 0.0], [0.0, s.cos(), 0.0], [0.0, 0.0, 1.0]]);
    }
    if p.zx != 1.0 || p.zy != 1.0 {
        then([[p.zx, 0.0, 0.0], [0.0, p.zy, 0.0], [0.0, 0.0, 1.0]]);
    }
    let m = m?;
    // transform_matrix_offset_center(matrix, h, w)
    let (ox, oy) = (h as f64 / 2.0 - 0.5, w as f64 / 2.0 - 0.5);
    let offset = [[1.0, 0.0, ox], [0.0, 1.0, oy], [0.0, 0.0, 1.0]];
    let reset = [[1.0, 0.0, -ox], [0.0, 1.0, -oy], [0.0, 0.0, 1.0]];
    let t = matmul(&matmul(&offset, &m), &reset);
    // M' = P M P with P swapping the first two axes (Keras, channels-last images).
    Some([[t[1][1], t[1][0], t[1][2]], [t[0][1], t[0][0], t[0][2]]])
}

/// `scipy.ndimage.affine_transform(src, matrix, offset, order=1, mode, cval)` on a 2-D image:
/// output pixel (i, j) samples the input at `m · (i, j, 1)`.
pub fn affine_transform(
    src: &[f32],
    h: usize,
    w: usize,
    m: &[[f64; 3]; 2],
    fill: FillMode,
    cval: f64,
    out: &mut [f32],
) {
    for i in 0..h {
        for j in 0..w {
            let r = m[0][0] * i as f64 + m[0][1] * j as f64 + m[0][2];
            let c = m[1][0] * i as f64 + m[1][1] * j as f64 + m[1][2];
            out[i * w + j] = sample_bilinear(src, h, w, r, c, fill, cval) as f32;
        }
    }
}

fn sample_bilinear(src: &[f32], h: usize, w: usize, r: f64, c: f64, fill: FillMode, cval: f64) -> f64 {
    let (Some(r), Some(c)) = (map_coordinate(r, h, fill), map_coordinate(c, w, fill)) else {
        return cval;
    };
    let (r0, c0) = (r.floor(), c.floor());
    let (fr, fc) = (r - r0, c - c0);
    let (r0, c0) = (r0 as i64, c0 as i64);
    let at = |ri: i64, ci: i64| src[tap_index(ri, h, fill) * w + tap_index(ci, w, fill)] as f64;
    (1.0 - fr) * ((1.0 - fc) * at(r0, c0) + fc * at(r0, c0 + 1))
        + fr * ((1.0 - fc) * at(r0 + 1, c0) + fc * at(r0 + 1, c0 + 1))
}

/// scipy's `map_coordinate` (ni_interpolation.c) for a coordinate along an axis of `len`
/// samples; None means "outside: use cval" (constant mode).
fn map_coordinate(x: f64, len: usize, fill: FillMode) -> Option<f64> {
    let n = len as f64;
    if len <= 1 {
        return Some(0.0);
    }
    if x < 0.0 {
        Some(match fill {
            FillMode::Constant => return None,
            FillMode::Nearest => 0.0,
            FillMode::Reflect => {
                let sz2 = 2.0 * n;
                let mut x = x;
                if x < -sz2 {
                    x += sz2 * (-x / sz2).trunc();
                }
                if x < -n { x + sz2 } else { (if x > -1e-15 { 1e-15 } else { -x }) - 1.0 }
            }
            FillMode::Wrap => {
                let sz = n - 1.0;
                x + sz * ((-x / sz).trunc() + 1.0)
            }
        })
    } else if x > n - 1.0 {
        Some(match fill {
            FillMode::Constant => return None,
            FillMode::Nearest => n - 1.0,
            FillMode::Reflect => {
                let sz2 = 2.0 * n;
                let x = x - sz2 * (x / sz2).trunc();
                if x >= n { sz2 - x - 1.0 } else { x }
            }
            FillMode::Wrap => {
                let sz = n - 1.0;
                x - sz * (x / sz).trunc()
            }
        })
    } else {
        Some(x)
    }
}

/// Where an interpolation tap outside the image reads from (scipy's edge extension).
fn tap_index(i: i64, len: usize, fill: FillMode) -> usize {
    let n = len as i64;
    if (0..n).contains(&i) {
        return i as usize;
    }
    let j = match fill {
        FillMode::Reflect => {
            let p = i.rem_euclid(2 * n);
            if p < n { p } else { 2 * n - 1 - p }
        }
        FillMode::Wrap if n > 1 => i.rem_euclid(n - 1),
        // Constant and nearest only reach here with a zero weight (a coordinate exactly on the
        // last sample); any valid index will do.
        _ => i.clamp(0, n - 1),
    };
    j as usize
}

pub fn flip_horizontal(image: &mut [f32], h: usize, w: usize) {
    for row in image.chunks_mut(w).take(h) {
        row.reverse();
    }
}

/// Random erasing (Zhong et al. 2020): a rectangle of 2-33% of the area, aspect ratio 0.3-3.3.
fn random_erase(image: &mut [f32], h: usize, w: usize, rng: &mut StdRng) {
    for _ in 0..10 {
        let area = rng.random_range(0.02..0.33) * (h * w) as f64;
        let ratio = (rng.random_range((0.3f64).ln()..(3.3f64).ln())).exp();
        let (eh, ew) = ((area * ratio).sqrt().round() as usize, (area / ratio).sqrt().round() as usize);
        if eh == 0 || ew == 0 || eh >= h || ew >= w {
            continue;
        }
        let (top, left) = (rng.random_range(0..=h - eh), rng.random_range(0..=w - ew));
        for r in top..top + eh {
            image[r * w + left..r * w + left + ew].fill(0.0);
        }
        return;
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn option_strings_mean_what_they_say() {
        assert!(!AugmentConfig::parse("hflip=false").unwrap().hflip);
        assert!(AugmentConfig::parse("hflip=true").unwrap().hflip);
        assert!(AugmentConfig::parse("hflip").unwrap().hflip);
        for (bad, expected) in [
            ("hflip=maybe", "not true or false"),
            ("rotation=10,rotation=20", "given twice"),
            ("erase=0.1,erasing=0.2", "given twice"),
            ("rotation=400", "rotation is at most 180"),
            ("width_shift=1.5", "shifts below 1"),
            ("crop=2.5", "whole number"),
            ("cval=nan", "finite"),
            ("zoom=-1", "non-negative"),
        ] {
            let err = AugmentConfig::parse(bad).unwrap_err().to_string();
            assert!(err.contains(expected), "{bad}: {err}");
        }
    }

    use super::*;

    #[test]
    fn parses_the_notebooks_recipe() {
        let c = AugmentConfig::parse("rotation=20,shear=20,zoom=0.1,hflip,fill=nearest").unwrap();
        assert_eq!((c.rotation, c.shear, c.zoom, c.hflip, c.fill), (20.0, 20.0, 0.1, true, FillMode::Nearest));
        assert!(AugmentConfig::parse("rotate=20").unwrap_err().to_string().contains("unknown `rotate`"));
        assert!(AugmentConfig::parse("zoom=x").is_err());
        assert!(AugmentConfig::parse("fill=mirror").is_err());
        assert!(AugmentConfig::parse("").unwrap().is_identity());
    }

    #[test]
    fn flip_is_exact() {
        let mut img: Vec<f32> = (0..12).map(|v| v as f32).collect();
        flip_horizontal(&mut img, 3, 4);
        assert_eq!(img, [3., 2., 1., 0., 7., 6., 5., 4., 11., 10., 9., 8.]);
    }

    #[test]
    fn sampled_parameters_stay_in_range_and_are_uniform() {
        let c = AugmentConfig::parse("rotation=20,shear=20,zoom=0.1,width_shift=0.1,height_shift=0.2,hflip").unwrap();
        let n = 20_000;
        let mut bins = [0usize; 10];
        let mut flips = 0;
        for row in 0..n {
            let p = c.sample(48, 48, &mut sample_rng(7, 0, row));
            assert!(p.theta.abs() <= 20.0 && p.shear.abs() <= 20.0);
            assert!((0.9..=1.1).contains(&p.zx) && (0.9..=1.1).contains(&p.zy));
            assert!(p.tx.abs() <= 0.2 * 48.0 && p.ty.abs() <= 0.1 * 48.0);
            bins[(((p.theta + 20.0) / 40.0 * 10.0) as usize).min(9)] += 1;
            flips += p.flip as usize;
        }
        // Each tenth of the range gets 2000 +- 5 standard deviations (about 212).
        assert!(bins.iter().all(|&b| (1788..=2212).contains(&b)), "{bins:?}");
        assert!((9_500..=10_500).contains(&flips), "{flips}");
        // zx and zy are drawn independently.
        let p = c.sample(48, 48, &mut sample_rng(7, 0, 1));
        assert_ne!(p.zx, p.zy);
    }

    #[test]
    fn seeds_fix_the_transform() {
        let c = AugmentConfig::parse("rotation=20,zoom=0.1,hflip").unwrap();
        let a = c.sample(48, 48, &mut sample_rng(1, 2, 3));
        assert_eq!(a, c.sample(48, 48, &mut sample_rng(1, 2, 3)));
        assert_ne!(a, c.sample(48, 48, &mut sample_rng(1, 3, 3)));
        assert_ne!(a, c.sample(48, 48, &mut sample_rng(1, 2, 4)));
    }

    #[test]
    fn identity_keeps_the_image() {
        assert!(keras_matrix(&AffineParams { zx: 1.0, zy: 1.0, ..Default::default() }, 48, 48).is_none());
        let src: Vec<f32> = (0..20).map(|v| v as f32).collect();
        let mut out = vec![0.0; 20];
        affine_transform(&src, 4, 5, &[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], FillMode::Constant, 0.0, &mut out);
        assert_eq!(out, src);
    }
}
