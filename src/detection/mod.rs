//! Face detection in photos with OpenCV's Viola-Jones Haar cascades, computed as OpenCV 4's
//! `CascadeClassifier::detectMultiScale` computes it (tests/detect_reference.rs compares the
//! two on real photos).
//!
//! - [`cascade`]: reads a cascade XML file (stages of boosted stumps over Haar features).
//! - [`geometry`]: boxes in photo pixels, shared by the detectors and grouping.
//! - [`grey`]: grey images, bilinear downscaling and integral images.
//! - [`scan`]: the multi-scale sliding-window search.
//! - [`group`]: merges the overlapping windows of one face into one box.
//! - [`locate`]: finds OpenCV's cascade and MTCNN's weights where their packages install them.

pub mod cascade;
pub mod geometry;
pub mod grey;
pub mod group;
pub mod locate;
pub mod mtcnn;
pub mod scan;

pub use cascade::Cascade;
pub use geometry::BoundingBox;
pub use grey::GreyImage;
pub use scan::DetectOptions;
