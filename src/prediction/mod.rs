//! The one prediction pipeline every front calls (CLI, Python, server, video): a [`Frame`] in
//! memory -> faces ([`FaceDetector`]: a cascade, MTCNN, or the whole image) -> each cut out as a
//! 48x48 grey face like FER2013's -> the net in batches ([`crate::evaluation::inference`]) ->
//! one [`FacePrediction`] per face, serialised the same way everywhere. [`output`] runs it over
//! a list of photo files and writes the results; `crate::video` runs it over a video's frames.

pub mod detector;
pub mod frame;
pub mod output;

use std::path::Path;

use burn::prelude::*;
use serde::Serialize;
use serde::ser::SerializeMap;

use crate::data::batch::Preprocess;
use crate::data::image_folder::to_face;
use crate::data::{ByClass, CLASS_NAMES, NUM_CLASSES};
use crate::detection::{BoundingBox, GreyImage};
use crate::error::Result;
use crate::evaluation::inference::log_probabilities_in_batches;
use crate::evaluation::tta::Tta;
use crate::models::Model;
use crate::trained::{ModelSource, TrainedModel};
pub use detector::{CascadeDetector, FaceDetector, FoundFace, MtcnnDetector, WholeImage, find_faces};
pub use frame::Frame;

/// One face: where it is, what the detector said of it, and the net's probability for each class.
///
/// Serialised (predictions.json, the server's responses, Python's dicts) as
/// `{"box": {"x", "y", "width", "height"}, "emotion": "happy", "probabilities": {"angry": p, ...},
/// "detector_score": s, "landmarks": [[x, y] x 5]}`, the last two only when the detector gives
/// them (MTCNN); probabilities are f32 in [0, 1] summing to 1, box and landmarks in frame pixels.
#[derive(Clone, Debug)]
pub struct FacePrediction {
    pub bbox: BoundingBox,
    pub detector_score: Option<f32>,
    pub landmarks: Option<[[f32; 2]; 5]>,
    pub emotion: &'static str,
    pub probabilities: [f32; NUM_CLASSES],
}

impl FacePrediction {
    fn new(face: FoundFace, probabilities: [f32; NUM_CLASSES]) -> Self {
        let best = (0..NUM_CLASSES).max_by(|&a, &b| probabilities[a].total_cmp(&probabilities[b])).unwrap_or(0);
        Self {
            bbox: face.bbox,
            detector_score: face.detector_score,
            landmarks: face.landmarks,
            emotion: CLASS_NAMES[best],
            probabilities,
        }
    }

    /// The same face with other probabilities (e.g. averaged over a video track's window), its
    /// emotion the most probable of them.
    pub fn with_probabilities(face: FacePrediction, probabilities: [f32; NUM_CLASSES]) -> Self {
        let found = FoundFace { bbox: face.bbox, detector_score: face.detector_score, landmarks: face.landmarks };
        Self::new(found, probabilities)
    }

    /// The probability of `emotion`, the most probable class.
    pub fn confidence(&self) -> f32 {
        self.probabilities.iter().copied().fold(f32::NEG_INFINITY, f32::max)
    }
}

impl Serialize for FacePrediction {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("box", &self.bbox)?;
        map.serialize_entry("emotion", self.emotion)?;
        map.serialize_entry("probabilities", &ByClass(&self.probabilities))?;
        if let Some(score) = self.detector_score {
            map.serialize_entry("detector_score", &score)?;
        }
        if let Some(points) = &self.landmarks {
            map.serialize_entry("landmarks", points)?;
        }
        map.end()
    }
}

/// A trained net that gives class probabilities for faces: the shipped model, a run's kept
/// net, or a model file (see [`crate::trained`]).
pub struct EmotionClassifier {
    pub model_name: String,
    /// Where the net came from (recorded with the results).
    pub source: ModelSource,
    /// The views of each face the net reads (see `evaluation::tta`).
    pub tta: Tta,
    /// Turn each face so that its eyes are level before the net reads it (faces with
    /// landmarks, i.e. from MTCNN; others are cropped as they are).
    pub align: bool,
    /// What a user should know about how the net was loaded (see [`TrainedModel::notes`]).
    pub notes: Vec<String>,
    /// The net, or an ensemble's nets, each with the preprocessing it reads.
    members: Vec<(Model, Preprocess)>,
    device: Device,
}

impl EmotionClassifier {
    /// Faces per forward pass.
    const BATCH: usize = 64;

    /// The net `source` names (`ModelSource::Shipped`: the model compiled into ferkit).
    pub fn load(source: &ModelSource) -> Result<Self> {
        let TrainedModel { spec, net, device, source, notes, tta, .. } = TrainedModel::load(source)?;
        Ok(Self {
            model_name: spec.name().to_string(),
            source,
            tta,
            align: false,
            notes,
            // Inference only: batch norm folded into the layer before it, ReLU merged into it
            // (the same probabilities within rounding).
            members: spec.into_members(crate::models::fold::fold_batch_norm(net)),
            device,
        })
    }

    /// A run directory's kept net.
    pub fn from_run(run_dir: &Path) -> Result<Self> {
        Self::load(&ModelSource::RunDir(run_dir.to_path_buf()))
    }

    /// Class probabilities for 48x48 grey faces (`u8`, row-major), in order.
    pub fn classify(&self, faces: &[Vec<u8>]) -> Vec<[f32; NUM_CLASSES]> {
        let faces: Vec<&[u8]> = faces.iter().map(Vec::as_slice).collect();
        let mut out = Vec::with_capacity(faces.len());
        let members: Vec<(&Model, Preprocess)> = self.members.iter().map(|(net, pre)| (net, *pre)).collect();
        log_probabilities_in_batches(&members, &faces, Self::BATCH, &self.device, self.tta, |_, log_p| {
            let values =
                log_p.exp().into_data().convert::<f32>().try_to_vec::<f32>().expect("probabilities are floats");
            out.extend(
                values.chunks_exact(NUM_CLASSES).map(|p| <[f32; NUM_CLASSES]>::try_from(p).expect("seven classes")),
            );
        });
        out
    }

    /// The pipeline: finds the faces of `frame` with `detector` (in reading order), cuts each
    /// out (turned level when [`EmotionClassifier::align`] and the detector gives eyes) and
    /// classifies them in batches.
    pub fn predict(&self, detector: &dyn FaceDetector, frame: &Frame) -> Vec<FacePrediction> {
        self.predict_batch(detector, &[frame]).pop().expect("one result per frame")
    }

    /// [`EmotionClassifier::predict`] for several frames, their faces read by the net together
    /// (batches of 64 faces across frames, not one pass per frame). One list per frame, in order.
    pub fn predict_batch(&self, detector: &dyn FaceDetector, frames: &[&Frame]) -> Vec<Vec<FacePrediction>> {
        let (found, crops): (Vec<Vec<FoundFace>>, Vec<Vec<Vec<u8>>>) =
            frames.iter().map(|frame| self.face_crops(detector, frame)).unzip();
        let mut probabilities = self.classify(&crops.concat()).into_iter();
        found.into_iter().map(|faces| assemble(faces, &mut probabilities)).collect()
    }

    /// The pipeline's first half, for fronts that batch the net across requests (the server):
    /// the faces of `frame` in reading order and each one's 48x48 crop (turned level when
    /// [`EmotionClassifier::align`] and the detector gives eyes), ready for
    /// [`EmotionClassifier::classify`]; [`assemble`] joins the two halves.
    pub fn face_crops(&self, detector: &dyn FaceDetector, frame: &Frame) -> (Vec<FoundFace>, Vec<Vec<u8>>) {
        face_crops(detector, frame, self.align)
    }
}

/// [`EmotionClassifier::face_crops`] without the classifier: `align` turns faces with eyes level.
pub fn face_crops(detector: &dyn FaceDetector, frame: &Frame, align: bool) -> (Vec<FoundFace>, Vec<Vec<u8>>) {
    let found = find_faces(detector, frame);
    let crops = crops_of(frame, &found, align);
    (found, crops)
}

/// The 48x48 grey crop of each face in `found` (boxes from a detector, or carried over from an
/// earlier video frame), turned level when `align` and the face has eyes.
pub fn crops_of(frame: &Frame, found: &[FoundFace], align: bool) -> Vec<Vec<u8>> {
    found
        .iter()
        .map(|f| match (align, f.landmarks) {
            (true, Some([left_eye, right_eye, ..])) => aligned_face(&frame.grey, f.bbox, left_eye, right_eye),
            _ => crop_face(&frame.grey, f.bbox),
        })
        .collect()
}

/// The faces `found` with the next `found.len()` class probabilities that `probabilities`
/// yields, as face results (the pipeline's last step).
///
/// Panics when `probabilities` runs out: it must hold one entry per face.
pub fn assemble(
    found: Vec<FoundFace>,
    probabilities: &mut impl Iterator<Item = [f32; NUM_CLASSES]>,
) -> Vec<FacePrediction> {
    found.into_iter().map(|f| FacePrediction::new(f, probabilities.next().expect("one result per face"))).collect()
}

/// The box's pixels as a 48x48 grey face, resized as image folders' faces are.
pub fn crop_face(grey: &GreyImage, b: BoundingBox) -> Vec<u8> {
    let crop = image::GrayImage::from_fn(b.width as u32, b.height as u32, |x, y| {
        image::Luma([grey.at(b.x + x as usize, b.y + y as usize)])
    });
    to_face(&crop)
}

/// The box's pixels turned about the box's centre so that the line through the eyes is level,
/// as a 48x48 grey face. Each pixel of the turned box is sampled bilinearly (the photo's edge
/// pixels repeat beyond it), then the box is resized as [`crop_face`] resizes.
///
/// Why: FER2013's faces are upright, give or take the ~15 degrees its training augmentation
/// covers; a face in a photo can lean much further (a tilted head, a rotated camera).
pub fn aligned_face(grey: &GreyImage, b: BoundingBox, left_eye: [f32; 2], right_eye: [f32; 2]) -> Vec<u8> {
    let angle = (right_eye[1] - left_eye[1]).atan2(right_eye[0] - left_eye[0]);
    let (sin, cos) = angle.sin_cos();
    // Centres: pixel (i, j) covers [i, i + 1) x [j, j + 1), so its centre is (i + 0.5, j + 0.5).
    let (cx, cy) = (b.x as f32 + b.width as f32 / 2.0, b.y as f32 + b.height as f32 / 2.0);
    let sample = |x: f32, y: f32| -> f32 {
        // Continuous position -> the four pixels around it, clamped to the photo.
        let (x, y) = (x - 0.5, y - 0.5);
        let (x0, y0) = (x.floor(), y.floor());
        let (fx, fy) = (x - x0, y - y0);
        let px = |dx: f32, dy: f32| {
            let xi = (x0 + dx).clamp(0.0, (grey.width - 1) as f32) as usize;
            let yi = (y0 + dy).clamp(0.0, (grey.height - 1) as f32) as usize;
            grey.at(xi, yi) as f32
        };
        (px(0.0, 0.0) * (1.0 - fx) + px(1.0, 0.0) * fx) * (1.0 - fy)
            + (px(0.0, 1.0) * (1.0 - fx) + px(1.0, 1.0) * fx) * fy
    };
    let turned = image::GrayImage::from_fn(b.width as u32, b.height as u32, |i, j| {
        let (u, v) = (i as f32 + 0.5 - b.width as f32 / 2.0, j as f32 + 0.5 - b.height as f32 / 2.0);
        let value = sample(cx + u * cos - v * sin, cy + u * sin + v * cos);
        image::Luma([value.round().clamp(0.0, 255.0) as u8])
    });
    to_face(&turned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::IMAGE_SIDE;
    use crate::prediction::detector::square_box;

    #[test]
    fn crops_take_the_boxed_pixels() {
        // A 100x60 image whose left half is dark and right half bright.
        let pixels = (0..60).flat_map(|_| (0..100).map(|x| if x < 50 { 10 } else { 200 })).collect();
        let grey = GreyImage::new(100, 60, pixels);
        let dark = crop_face(&grey, BoundingBox { x: 0, y: 0, width: 48, height: 48 });
        assert!(dark.iter().all(|&p| p == 10));
        let bright = crop_face(&grey, BoundingBox { x: 52, y: 6, width: 48, height: 48 });
        assert!(bright.iter().all(|&p| p == 200));
        // A 96x60 box straddling the edge: left columns dark, right columns bright.
        let both = crop_face(&grey, BoundingBox { x: 2, y: 0, width: 96, height: 60 });
        assert_eq!(both.len(), IMAGE_SIDE * IMAGE_SIDE);
        assert_eq!((both[0], both[IMAGE_SIDE - 1]), (10, 200));
    }

    #[test]
    fn mtcnn_boxes_become_squares_inside_the_photo() {
        // 40 wide, 60 tall around (50, 50): a 60-pixel square.
        assert_eq!(
            square_box([30.0, 20.0, 70.0, 80.0], 200, 200),
            Some(BoundingBox { x: 20, y: 20, width: 60, height: 60 })
        );
        // Cut by the photo's left and top edges: x from 5 - 17.5 to 5 + 17.5 = 22.5, rounded to 23.
        assert_eq!(
            square_box([-10.0, -5.0, 20.0, 30.0], 200, 200),
            Some(BoundingBox { x: 0, y: 0, width: 23, height: 30 })
        );
        assert_eq!(square_box([300.0, 10.0, 340.0, 50.0], 200, 200), None);
    }

    #[test]
    fn the_emotion_is_the_most_probable_class() {
        let face =
            FoundFace { bbox: BoundingBox { x: 0, y: 0, width: 1, height: 1 }, detector_score: None, landmarks: None };
        let p = FacePrediction::new(face, [0.1, 0.0, 0.05, 0.6, 0.05, 0.1, 0.1]);
        assert_eq!((p.emotion, p.confidence()), ("happy", 0.6));
    }

    #[test]
    fn aligned_faces_have_level_eyes() {
        // 120x120: a bright bar 6 pixels thick through (60, 60), leaning 30 degrees (downwards
        // to the right), on a dark ground; "eyes" on the bar 20 pixels either side of the centre.
        let angle = 30f32.to_radians();
        let (sin, cos) = angle.sin_cos();
        let distance_to_bar = |x: f32, y: f32| (-(x - 60.0) * sin + (y - 60.0) * cos).abs();
        let pixels = (0..120)
            .flat_map(|y| (0..120).map(move |x| (x as f32 + 0.5, y as f32 + 0.5)))
            .map(|(x, y)| if distance_to_bar(x, y) < 3.0 { 220 } else { 20 })
            .collect();
        let grey = GreyImage::new(120, 120, pixels);
        let (left_eye, right_eye) = ([60.0 - 20.0 * cos, 60.0 - 20.0 * sin], [60.0 + 20.0 * cos, 60.0 + 20.0 * sin]);
        let b = BoundingBox { x: 24, y: 24, width: 72, height: 72 };
        let face = aligned_face(&grey, b, left_eye, right_eye);
        assert_eq!(face.len(), IMAGE_SIDE * IMAGE_SIDE);
        let row_mean =
            |r: usize| face[r * IMAGE_SIDE..(r + 1) * IMAGE_SIDE].iter().map(|&p| p as f32).sum::<f32>() / 48.0;
        // Turned level: the bar fills the middle rows from edge to edge, and nothing else.
        assert!(row_mean(23) > 200.0 && row_mean(24) > 200.0, "{} {}", row_mean(23), row_mean(24));
        assert!(row_mean(10) < 40.0 && row_mean(37) < 40.0, "{} {}", row_mean(10), row_mean(37));
        // Not turned, the bar crosses many rows, none of them all bright.
        let plain = crop_face(&grey, b);
        assert!((0..IMAGE_SIDE).all(|r| plain[r * IMAGE_SIDE..(r + 1) * IMAGE_SIDE].iter().any(|&p| p < 60)));
        // Level eyes: the same pixels as the plain crop.
        assert_eq!(aligned_face(&grey, b, [40.0, 50.0], [80.0, 50.0]), plain);
    }

    /// A JPEG of `width` x `height` whose left half is dark and right half bright, with an EXIF
    /// block saying `orientation` (1-8) when given.
    fn jpeg_with_orientation(width: u32, height: u32, orientation: Option<u16>) -> Vec<u8> {
        let image =
            image::RgbImage::from_fn(width, height, |x, _| image::Rgb(if x < width / 2 { [10; 3] } else { [200; 3] }));
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95).encode_image(&image).expect("encodes");
        let Some(orientation) = orientation else { return jpeg };
        // APP1 "Exif": a big-endian TIFF header and one IFD entry, Orientation (0x0112), SHORT.
        let mut tiff = b"MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01".to_vec();
        tiff.extend_from_slice(&orientation.to_be_bytes());
        tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // value padding, no next IFD
        let mut app1 = vec![0xff, 0xe1];
        app1.extend_from_slice(&((2 + 6 + tiff.len()) as u16).to_be_bytes());
        app1.extend_from_slice(b"Exif\0\0");
        app1.extend_from_slice(&tiff);
        // Right after the start-of-image marker.
        [&jpeg[..2], &app1[..], &jpeg[2..]].concat()
    }

    #[test]
    fn photos_are_turned_upright_as_their_exif_orientation_says() {
        let dir = tempfile::tempdir().unwrap();
        let mean = |g: &GreyImage, rows: std::ops::Range<usize>, cols: std::ops::Range<usize>| {
            let n = rows.len() * cols.len();
            let sum: f64 = rows.flat_map(|y| cols.clone().map(move |x| g.pixels[y * g.width + x] as f64)).sum();
            sum / n as f64
        };
        // No EXIF: as stored, dark on the left.
        let path = dir.path().join("plain.jpg");
        std::fs::write(&path, jpeg_with_orientation(40, 20, None)).unwrap();
        let photo = Frame::open(&path).unwrap();
        assert_eq!((photo.grey.width, photo.grey.height), (40, 20));
        assert!(mean(&photo.grey, 0..20, 0..18) < 30.0 && mean(&photo.grey, 0..20, 22..40) > 180.0);
        // Orientation 6 (a phone held upright): to be shown turned 90 degrees clockwise, so the
        // stored left half ends on top.
        let path = dir.path().join("rotated.jpg");
        std::fs::write(&path, jpeg_with_orientation(40, 20, Some(6))).unwrap();
        let photo = Frame::open(&path).unwrap();
        assert_eq!((photo.grey.width, photo.grey.height, photo.rgb.width()), (20, 40, 20));
        assert!(mean(&photo.grey, 0..18, 0..20) < 30.0 && mean(&photo.grey, 22..40, 0..20) > 180.0);
        // Orientation 8: turned counter-clockwise, the left half ends at the bottom.
        std::fs::write(&path, jpeg_with_orientation(40, 20, Some(8))).unwrap();
        let photo = Frame::open(&path).unwrap();
        assert!(mean(&photo.grey, 22..40, 0..20) < 30.0 && mean(&photo.grey, 0..18, 0..20) > 180.0);
    }

    /// An ensemble file that joins a layer-list net (per-image standardisation) and a transfer
    /// net (grey levels in [0, 1]) gives, through the pipeline, the mean of each net's
    /// probabilities on its own preprocessing; feeding both nets one tensor would not.
    #[test]
    fn a_mixed_ensemble_runs_each_net_on_its_own_preprocessing() {
        use crate::data::batch::images_tensor;
        use crate::models::model::{Ensemble, EnsembleSpec};
        use crate::models::{ModelSpec, resolve};
        use burn::module::Module;
        let device = Device::flex();
        device.seed(5);
        let layers = resolve("cnn3").unwrap();
        let transfer = match resolve("efficientnet-lite0").unwrap().without_pretrained() {
            ModelSpec::Transfer(t) => {
                ModelSpec::Transfer(crate::models::transfer::TransferSpec { input_size: 32, ..t })
            }
            other => panic!("a transfer preset, not {other:?}"),
        };
        let (a, b) = (layers.build(&device).unwrap(), transfer.build(&device).unwrap());
        // The transfer net first: a pipeline that fed every member the first member's
        // preprocessing would give the layer-list net grey levels in [0, 1] (a fresh transfer
        // net's output barely depends on its input, so the layer-list net is the one that tells).
        let spec = ModelSpec::Ensemble(EnsembleSpec { name: "mixed".into(), members: vec![transfer, layers] });
        assert!(!spec.reads_one_preprocessing());
        spec.check().unwrap();

        let dir = tempfile::tempdir().unwrap();
        let bpk = dir.path().join("mixed.bpk");
        Model::Ensemble(Ensemble { members: vec![b.clone(), a.clone()] }).save_file(&bpk).unwrap();
        let file = crate::trained::ModelFile {
            name: "mixed".into(),
            description: String::new(),
            accuracy: Default::default(),
            tta: Default::default(),
            model: spec,
        };
        std::fs::write(bpk.with_extension("toml"), toml::to_string(&file).unwrap()).unwrap();
        let classifier = EmotionClassifier::load(&ModelSource::File(bpk.clone())).unwrap();
        // ONNX holds one input preprocessing: the export says why it refuses.
        let options = crate::export::ExportOptions {
            format: crate::export::ExportFormat::Onnx,
            name: "mixed".into(),
            description: String::new(),
            precision: Default::default(),
            tta: None,
            member: None,
        };
        let onnx = dir.path().join("mixed.onnx");
        let err = crate::export::export(&[bpk.clone()], &onnx, &options).unwrap_err().to_string();
        assert!(err.contains("preprocessed differently") && err.contains("mixed.onnx"), "{err}");
        assert!(!onnx.exists());
        // One net of it exports, and is that net.
        let one = crate::export::ExportOptions { member: Some(2), ..options.clone() };
        crate::export::export(&[bpk.clone()], &onnx, &one).unwrap();
        let options = crate::export::ExportOptions { format: crate::export::ExportFormat::Burnpack, ..one };
        let second = dir.path().join("second.bpk");
        crate::export::export(&[bpk.clone()], &second, &options).unwrap();
        let model = TrainedModel::load(&ModelSource::File(second)).unwrap();
        assert_eq!(model.spec.name(), "cnn3");
        let out_of_range = crate::export::ExportOptions { member: Some(3), ..options };
        let err = crate::export::export(&[bpk.clone()], &dir.path().join("x.bpk"), &out_of_range).unwrap_err();
        assert!(err.to_string().contains("nets 1 to 2"), "{err}");

        let mut x = 7u32;
        let faces: Vec<Vec<u8>> = (0..3)
            .map(|_| {
                (0..48 * 48)
                    .map(|_| {
                        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                        (x >> 24) as u8
                    })
                    .collect()
            })
            .collect();
        let got: Vec<f32> = classifier.classify(&faces).concat();
        let p = |net: &Model, pre| {
            let images = images_tensor(faces.iter().map(Vec::as_slice), pre, &device);
            burn::tensor::activation::softmax(net.forward(images), 1).into_data().try_to_vec::<f32>().unwrap()
        };
        let (pa, pb) = (p(&a, Preprocess::PerImage), p(&b, Preprocess::UnitRange));
        let mean: Vec<f32> = pa.iter().zip(&pb).map(|(x, y)| (x + y) / 2.0).collect();
        let worst = got.iter().zip(&mean).map(|(g, m)| (g - m).abs()).fold(0.0, f32::max);
        // Folding batch norm changes rounding only.
        assert!(worst < 1e-4, "largest difference from the mean of the members' probabilities: {worst}");
        // Both nets on the first member's preprocessing give other probabilities: the test can tell.
        let wrong = p(&a, Preprocess::UnitRange);
        let wrong_mean: Vec<f32> = wrong.iter().zip(&pb).map(|(x, y)| (x + y) / 2.0).collect();
        let apart = got.iter().zip(&wrong_mean).map(|(g, w)| (g - w).abs()).fold(0.0, f32::max);
        assert!(apart > 1e-2, "one tensor for both nets: {apart} at most from the pipeline's probabilities");
    }
}
