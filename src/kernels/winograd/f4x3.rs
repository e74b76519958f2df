//! Winograd's F(4x4, 3x3): each 4 x 4 output tile from the 6 x 6 input tile under it, 36
//! multiplications per channel pair where F(2x2, 3x3) spends 64 on the same 16 outputs and
//! im2col + GEMM 144; the input and output transforms, too, hold 2.25 values per output where
//! F(2x2, 3x3)'s hold 4. The matrices are Toom-Cook's (Lavin and Gray, CVPR 2016, section 4) for
//! the points 0, 1, -1, ½, -2 and ∞, derived and checked against direct correlation in exact
//! rationals (`bench/winograd_points.py --matrices`, sympy, session 40):
//!
//! ```text
//! G  = [[     1,     0,     0],      Bᵀ = [[1, -3/2,   -2,  3/2,   1, 0],
//!       [   1/3,   1/3,   1/3],            [0,   -1,  1/2,  5/2,   1, 0],
//!       [  -1/3,   1/3,  -1/3],            [0,    1, -5/2,  1/2,   1, 0],
//!       [-16/15, -8/15, -4/15],            [0,   -2,   -1,    2,   1, 0],
//!       [  1/15, -2/15,  4/15],            [0,  1/2,   -1, -1/2,   1, 0],
//!       [     0,     0,     1]]            [0,    1, -3/2,   -2, 3/2, 1]]
//!
//! Aᵀ = [[1, 1,  1,   1,  1, 0],
//!       [0, 1, -1, 1/2, -2, 0],
//!       [0, 1,  1, 1/4,  4, 0],
//!       [0, 1, -1, 1/8, -8, 1]]
//! ```
//!
//! Why these points: Lavin and Gray's 0, ±1, ±2 put 8 in Aᵀ and 5 in Bᵀ; over 200 random 6 x 6
//! tiles of 64 channels (f32 against f64's direct sums, `bench/winograd_points.py`) their largest
//! error was 1.1e-5 of the largest output, 0, ±1, ±½'s 1.2e-5, and 0, ±1, ½, -2's 3.8e-6
//! (F(2x2, 3x3): 1.5e-6).

use super::transform::Minimal;

pub(super) struct F4x3;

impl Minimal<3, 6, 4> for F4x3 {
    #[inline(always)]
    fn g([g0, g1, g2]: [f32; 3]) -> [f32; 6] {
        [
            g0,
            (1.0 / 3.0) * (g0 + g1 + g2),
            (1.0 / 3.0) * (g1 - g0 - g2),
            (-16.0 / 15.0) * g0 - (8.0 / 15.0) * g1 - (4.0 / 15.0) * g2,
            (1.0 / 15.0) * g0 - (2.0 / 15.0) * g1 + (4.0 / 15.0) * g2,
            g2,
        ]
    }

    #[inline(always)]
    fn bt([d0, d1, d2, d3, d4, d5]: [f32; 6]) -> [f32; 6] {
        [
            d0 - 1.5 * d1 - 2.0 * d2 + 1.5 * d3 + d4,
            -d1 + 0.5 * d2 + 2.5 * d3 + d4,
            d1 - 2.5 * d2 + 0.5 * d3 + d4,
            -2.0 * d1 - d2 + 2.0 * d3 + d4,
            0.5 * d1 - d2 - 0.5 * d3 + d4,
            d1 - 1.5 * d2 - 2.0 * d3 + 1.5 * d4 + d5,
        ]
    }

    #[inline(always)]
    fn at([m0, m1, m2, m3, m4, m5]: [f32; 6]) -> [f32; 4] {
        [
            m0 + m1 + m2 + m3 + m4,
            m1 - m2 + 0.5 * m3 - 2.0 * m4,
            m1 + m2 + 0.25 * m3 + 4.0 * m4,
            m1 - m2 + 0.125 * m3 - 8.0 * m4 + m5,
        ]
    }
}
