//! Geometry shared by the detectors and the face grouping: boxes in photo pixels.

use serde::Serialize;

/// A box in photo pixels: top-left corner `(x, y)`, `width` x `height`, all in whole pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct BoundingBox {
    pub x: usize,
    pub y: usize,
    pub width: usize,
    pub height: usize,
}

impl BoundingBox {
    /// Pixels covered.
    pub fn area(&self) -> usize {
        self.width * self.height
    }

    /// Intersection over union with `other`, in [0, 1] (0 for disjoint boxes or two empty ones).
    pub fn iou(&self, other: &BoundingBox) -> f32 {
        let x0 = self.x.max(other.x);
        let y0 = self.y.max(other.y);
        let x1 = (self.x + self.width).min(other.x + other.width);
        let y1 = (self.y + self.height).min(other.y + other.height);
        let inter = x1.saturating_sub(x0) * y1.saturating_sub(y0);
        let union = self.area() + other.area() - inter;
        if union == 0 { 0.0 } else { inter as f32 / union as f32 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_of_overlapping_disjoint_and_equal_boxes() {
        let a = BoundingBox { x: 0, y: 0, width: 10, height: 10 };
        let b = BoundingBox { x: 5, y: 0, width: 10, height: 10 };
        // 50 shared pixels of 150.
        assert!((a.iou(&b) - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(a.iou(&a), 1.0);
        assert_eq!(a.iou(&BoundingBox { x: 20, y: 20, width: 5, height: 5 }), 0.0);
        let empty = BoundingBox { x: 0, y: 0, width: 0, height: 0 };
        assert_eq!(empty.iou(&empty), 0.0);
    }
}
