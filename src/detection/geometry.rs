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
