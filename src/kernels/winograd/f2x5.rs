//! Winograd's F(2x2, 5x5): each 2 x 2 output tile from the 6 x 6 input tile
//! under it, 36 multiplications per channel pair where im2col + GEMM spends 100. The matrices are
//! Toom-Cook's (Lavin and Gray, CVPR 2016, section 4) for the points 0, 1, -1, ½, -½ and ∞,
//! derived and checked against direct correlation in exact rationals (sympy, session 36):
//!
//! ```text
//! G  = [[   4,    0,    0,    0,    0],      Bᵀ = [[¼,  0, -5/4,    0, 1, 0],
//!       [ 2/3,  2/3,  2/3,  2/3,  2/3],            [0, -¼,   -¼,    1, 1, 0],
//!       [ 2/3, -2/3,  2/3, -2/3,  2/3],            [0,  ¼,   -¼,   -1, 1, 0],
//!       [-8/3, -4/3, -2/3, -1/3, -1/6],            [0, -½,   -1,    ½, 1, 0],
//!       [-8/3,  4/3, -2/3,  1/3, -1/6],            [0,  ½,   -1,   -½, 1, 0],
//!       [   0,    0,    0,    0,    1]]            [0,  ¼,    0, -5/4, 0, 1]]
//!
//! Aᵀ = [[1, 1,  1, 1,  1, 0],
//!       [0, 1, -1, ½, -½, 1]]
//! ```

use super::transform::Minimal;

pub(super) struct F2x5;

impl Minimal<5, 6, 2> for F2x5 {
    #[inline(always)]
    fn g([g0, g1, g2, g3, g4]: [f32; 5]) -> [f32; 6] {
        [
            4.0 * g0,
            (2.0 / 3.0) * (g0 + g1 + g2 + g3 + g4),
            (2.0 / 3.0) * (g0 - g1 + g2 - g3 + g4),
            (-8.0 / 3.0) * g0 - (4.0 / 3.0) * g1 - (2.0 / 3.0) * g2 - (1.0 / 3.0) * g3 - (1.0 / 6.0) * g4,
            (-8.0 / 3.0) * g0 + (4.0 / 3.0) * g1 - (2.0 / 3.0) * g2 + (1.0 / 3.0) * g3 - (1.0 / 6.0) * g4,
            g4,
        ]
    }

    #[inline(always)]
    fn bt([d0, d1, d2, d3, d4, d5]: [f32; 6]) -> [f32; 6] {
        [
            0.25 * d0 - 1.25 * d2 + d4,
            -0.25 * (d1 + d2) + d3 + d4,
            0.25 * (d1 - d2) - d3 + d4,
            -0.5 * d1 - d2 + 0.5 * d3 + d4,
            0.5 * d1 - d2 - 0.5 * d3 + d4,
            0.25 * d1 - 1.25 * d3 + d5,
        ]
    }

    #[inline(always)]
    fn at([m0, m1, m2, m3, m4, m5]: [f32; 6]) -> [f32; 2] {
        [m0 + m1 + m2 + m3 + m4, m1 - m2 + 0.5 * (m3 - m4) + m5]
    }
}
