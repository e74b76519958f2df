//! Winograd's F(2x2, 3x3) (Lavin and Gray, CVPR 2016, section 4.1): each 2 x 2 output tile from
//! the 4 x 4 input tile under it, 16 multiplications per channel pair where im2col + GEMM spends
//! 36, with
//!
//! ```text
//! G = [[1, 0, 0], [½, ½, ½], [½, -½, ½], [0, 0, 1]]
//! Bᵀ = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
//! Aᵀ = [[1, 1, 1, 0], [0, 1, -1, -1]]
//! ```

use super::transform::Minimal;

pub(super) struct F2x3;

impl Minimal<3, 4, 2> for F2x3 {
    #[inline(always)]
    fn g([g0, g1, g2]: [f32; 3]) -> [f32; 4] {
        [g0, 0.5 * (g0 + g1 + g2), 0.5 * (g0 - g1 + g2), g2]
    }

    #[inline(always)]
    fn bt([d0, d1, d2, d3]: [f32; 4]) -> [f32; 4] {
        [d0 - d2, d1 + d2, d2 - d1, d1 - d3]
    }

    #[inline(always)]
    fn at([m0, m1, m2, m3]: [f32; 4]) -> [f32; 2] {
        [m0 + m1 + m2, m1 - m2 - m3]
    }
}
