//! Face detectors behind one trait, so that every front (CLI, Python, server, video) runs the
//! same pipeline whatever finds the faces: OpenCV's cascades (Haar, LBP), MTCNN, or none (the
//! image is one face already).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};

use super::frame::Frame;
use crate::detection::mtcnn::{Mtcnn, MtcnnOptions};
use crate::detection::{BoundingBox, Cascade, DetectOptions};
use crate::error::Result;

/// A face a detector found: the box the face is cut from and, from MTCNN, the detector's score
/// and five landmarks (eyes, nose, mouth corners), in frame pixels.
#[derive(Clone, Debug)]
pub struct FoundFace {
    pub bbox: BoundingBox,
    pub detector_score: Option<f32>,
    pub landmarks: Option<[[f32; 2]; 5]>,
}

/// Finds faces in a frame.
pub trait FaceDetector: Send + Sync {
    /// The faces in `frame`, in any order (see [`find_faces`] for reading order).
    fn detect(&self, frame: &Frame) -> Vec<FoundFace>;

    /// What the detector is and its settings, as results record it (JSON).
    fn describe(&self) -> Value;
}

/// The faces `detector` finds in `frame`, in reading order: top to bottom, then left to right.
pub fn find_faces(detector: &dyn FaceDetector, frame: &Frame) -> Vec<FoundFace> {
    let mut faces = detector.detect(frame);
    faces.sort_by_key(|f| (f.bbox.y, f.bbox.x));
    faces
}

/// An OpenCV cascade (Haar or LBP) run as `detectMultiScale` ([`crate::detection`]).
#[derive(Clone)]
pub struct CascadeDetector {
    /// Shared, so that detectors with other options (a server's per-request settings) reuse it.
    pub cascade: Arc<Cascade>,
    /// Where it was read from (recorded with the results).
    pub path: PathBuf,
    pub options: DetectOptions,
}

impl CascadeDetector {
    /// The cascade XML at `path` with `options`. Errors name the file.
    pub fn load(path: &Path, options: DetectOptions) -> Result<Self> {
        Ok(Self { cascade: Arc::new(Cascade::load(path)?), path: path.to_path_buf(), options })
    }
}

impl FaceDetector for CascadeDetector {
    fn detect(&self, frame: &Frame) -> Vec<FoundFace> {
        self.cascade
            .detect(&frame.grey, &self.options)
            .into_iter()
            .map(|bbox| FoundFace { bbox, detector_score: None, landmarks: None })
            .collect()
    }

    fn describe(&self) -> Value {
        json!({
            "cascade": self.path.display().to_string(),
            "scale_factor": self.options.scale_factor,
            "min_neighbors": self.options.min_neighbors,
            "min_size": self.options.min_size,
        })
    }
}

/// MTCNN with facenet-pytorch's weights ([`crate::detection::mtcnn`]); its boxes are made square
/// (FER2013's faces are square; MTCNN's boxes are taller than wide).
#[derive(Clone)]
pub struct MtcnnDetector {
    /// Shared, as [`CascadeDetector::cascade`].
    pub mtcnn: Arc<Mtcnn>,
    /// The folder its weights were read from (recorded with the results).
    pub path: PathBuf,
    pub options: MtcnnOptions,
}

impl MtcnnDetector {
    /// MTCNN from the folder holding pnet.pt, rnet.pt and onet.pt. Errors name the file.
    pub fn load(path: &Path, options: MtcnnOptions) -> Result<Self> {
        Ok(Self { mtcnn: Arc::new(Mtcnn::load(path)?), path: path.to_path_buf(), options })
    }
}

impl FaceDetector for MtcnnDetector {
    fn detect(&self, frame: &Frame) -> Vec<FoundFace> {
        let (width, height) = (frame.width(), frame.height());
        self.mtcnn
            .detect(frame.rgb.as_raw(), width, height, &self.options)
            .into_iter()
            .filter_map(|f| {
                let bbox = square_box([f.x1, f.y1, f.x2, f.y2], width, height)?;
                Some(FoundFace { bbox, detector_score: Some(f.score), landmarks: Some(f.landmarks) })
            })
            .collect()
    }

    fn describe(&self) -> Value {
        json!({
            "mtcnn": self.path.display().to_string(),
            "min_size": self.options.min_size,
            "thresholds": self.options.thresholds,
            "factor": self.options.factor,
        })
    }
}

/// No detection: the frame is one face already (a cropped face, a FER2013-like image).
pub struct WholeImage;

impl FaceDetector for WholeImage {
    fn detect(&self, frame: &Frame) -> Vec<FoundFace> {
        let bbox = BoundingBox { x: 0, y: 0, width: frame.width(), height: frame.height() };
        vec![FoundFace { bbox, detector_score: None, landmarks: None }]
    }

    fn describe(&self) -> Value {
        json!("whole image")
    }
}

/// The square of the longer side around a box's centre, in whole pixels and inside the frame.
/// None when nothing is left.
pub(crate) fn square_box([x1, y1, x2, y2]: [f32; 4], width: usize, height: usize) -> Option<BoundingBox> {
    let half = (x2 - x1).max(y2 - y1) / 2.0;
    let (cx, cy) = ((x1 + x2) / 2.0, (y1 + y2) / 2.0);
    let clamp = |v: f32, max: usize| v.round().clamp(0.0, max as f32) as usize;
    let (left, top) = (clamp(cx - half, width), clamp(cy - half, height));
    let (right, bottom) = (clamp(cx + half, width), clamp(cy + half, height));
    (right > left && bottom > top).then(|| BoundingBox { x: left, y: top, width: right - left, height: bottom - top })
}
