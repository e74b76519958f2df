//! The video loop: frames stream from ffmpeg, the sampled ones go through the one prediction
//! pipeline (faces found by the detector on every `detect_every`-th sampled frame and carried
//! between, cut out, the faces of up to [`CHUNK_SAMPLED`] sampled frames read by the net in one
//! batched call), faces are tracked ([`super::tracking`]) and optionally smoothed per track, and
//! every row goes to the outputs ([`super::output`]) as soon as its chunk is done. Memory holds
//! one chunk of frames, the live tracks' smoothing windows and fixed-size per-track summaries:
//! it does not grow with the video's length.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::time::Instant;

use rayon::prelude::*;

use super::ffmpeg::{DecodeEnd, FrameReader, probe};
use super::options::{Sampling, VideoOptions};
use super::output::Outputs;
use super::rows::{FaceRow, TrackSummary, VideoReport};
use super::tracking::Tracker;
use crate::data::NUM_CLASSES;
use crate::error::Result;
use crate::prediction::{
    EmotionClassifier, FaceDetector, FacePrediction, FoundFace, Frame, assemble, crops_of, find_faces,
};

/// Sampled frames whose faces are read by the net together.
pub const CHUNK_SAMPLED: usize = 16;
/// Decoded frames held at most before a chunk is processed (bounds memory when few frames are
/// sampled but every frame is kept for the annotated video).
const CHUNK_FRAMES: usize = 64;

/// Where the loop is, for a progress bar: frames decoded and the number expected (when known).
pub trait VideoProgress {
    fn frames_read(&mut self, _done: u64, _expected: Option<u64>) {}
}

impl VideoProgress for () {}

impl<F: FnMut(u64, Option<u64>)> VideoProgress for F {
    fn frames_read(&mut self, done: u64, expected: Option<u64>) {
        self(done, expected)
    }
}

/// A decoded frame waiting in the chunk.
struct Pending {
    index: u64,
    time: f64,
    frame: Frame,
    sampled: bool,
}

/// Analyses `path`: see the module comment. Writes the outputs into `out` (created if needed):
/// frames.csv, frames.jsonl, tracks.csv, tracks.json, timeline_track_N.png, and annotated.mp4
/// with [`VideoOptions::annotate`]. A damaged file's frames before the damage are analysed and
/// written, and [`VideoReport::damaged`] says where decoding stopped (see [`VideoReport::check`]).
///
/// Errors: bad options, ffmpeg missing, a file that is not a video or has no video stream
/// (naming it), an output that cannot be written.
pub fn analyze_video(
    path: &Path,
    classifier: &EmotionClassifier,
    detector: &dyn FaceDetector,
    options: &VideoOptions,
    out: &Path,
    progress: &mut dyn VideoProgress,
) -> Result<VideoReport> {
    options.check()?;
    let started = Instant::now();
    let info = probe(path)?;
    if let Some(duration) = info.duration {
        crate::ensure!(Config @ "start", options.start < duration, "{}: the start ({} s) is past the video's end ({duration:.2} s)", path.display(), options.start);
    }
    let expected = info.expected_frames(options.start, options.end);
    let mut outputs = Outputs::create(out, &info, options)?;
    let mut reader = FrameReader::open(path, &info, options.start, options.end)?;
    // Each track's timeline covers the analysed span, in a fixed number of bins.
    let span_end = options.end.or(info.duration).unwrap_or(options.start + 3600.0);
    let mut state = LoopState::new(options, (options.start, span_end));
    let first_index = (options.start * info.fps).round() as u64;
    let mut chunk: Vec<Pending> = Vec::new();
    let mut last_slot: Option<u64> = None;
    let mut read = 0u64;
    while let Some(rgb) = reader.next_frame()? {
        let i = read;
        read += 1;
        let index = first_index + i;
        let time = index as f64 / info.fps;
        let sampled = match options.sampling {
            Sampling::Every(n) => i % n as u64 == 0,
            Sampling::Fps(f) => {
                let slot = ((time - options.start) * f + 1e-9).floor().max(0.0) as u64;
                let new = last_slot != Some(slot);
                last_slot = Some(slot);
                new
            }
        };
        if sampled || options.annotate {
            let frame = Frame::from_rgb(info.width, info.height, rgb)?;
            chunk.push(Pending { index, time, frame, sampled });
        }
        let sampled_waiting = chunk.iter().filter(|p| p.sampled).count();
        if sampled_waiting >= CHUNK_SAMPLED || chunk.len() >= CHUNK_FRAMES {
            state.process(std::mem::take(&mut chunk), classifier, detector, &mut outputs)?;
        }
        progress.frames_read(read, expected);
    }
    state.process(chunk, classifier, detector, &mut outputs)?;
    let end = reader.finish()?;
    let damaged = match end {
        DecodeEnd::Complete => None,
        DecodeEnd::Damaged(said) => {
            let stop = (first_index + read) as f64 / info.fps;
            let of = expected.map_or(String::new(), |e| format!(" of about {e}"));
            Some(format!(
                "the file is damaged: decoding stopped after {read} frames{of} ({stop:.2} s); ffmpeg said: {said}. \
                 The {read} frames before the damage were analysed and written"
            ))
        }
    };
    let report = VideoReport {
        video: path.to_path_buf(),
        width: info.width,
        height: info.height,
        fps: info.fps,
        duration: info.duration,
        frames_read: read,
        frames_sampled: state.sampled,
        faces: state.faces,
        detections: state.detections,
        tracks: state.summaries.into_values().collect(),
        seconds: 0.0,
        damaged,
    };
    outputs.finish(report, started)
}

/// What the loop carries from chunk to chunk.
struct LoopState<'a> {
    options: &'a VideoOptions,
    tracker: Tracker,
    /// Sampled frames so far (the detection clock).
    sampled: u64,
    faces: u64,
    detections: u64,
    /// Each live track's last `smooth` probability rows.
    windows: HashMap<u32, VecDeque<[f32; NUM_CLASSES]>>,
    /// The faces of the last sampled frame, drawn on the frames after it.
    last_rows: Vec<FaceRow>,
    summaries: BTreeMap<u32, TrackSummary>,
    /// The analysed span (seconds), which each track's timeline covers.
    span: (f64, f64),
}

impl<'a> LoopState<'a> {
    fn new(options: &'a VideoOptions, span: (f64, f64)) -> Self {
        Self {
            options,
            tracker: Tracker::new(options.min_iou, options.max_missed),
            sampled: 0,
            faces: 0,
            detections: 0,
            windows: HashMap::new(),
            last_rows: Vec::new(),
            summaries: BTreeMap::new(),
            span,
        }
    }

    /// One chunk: detection on its detection frames (in parallel), tracking in order, one batched
    /// classification of all its faces, smoothing, then the rows and the annotated frames out.
    fn process(
        &mut self,
        chunk: Vec<Pending>,
        classifier: &EmotionClassifier,
        detector: &dyn FaceDetector,
        outputs: &mut Outputs,
    ) -> Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        let k = self.options.detect_every as u64;
        // Which sampled frames of the chunk are detection rounds.
        let mut clock = self.sampled;
        let rounds: Vec<bool> = chunk
            .iter()
            .map(|p| {
                if !p.sampled {
                    return false;
                }
                let detect = clock % k == 0;
                clock += 1;
                detect
            })
            .collect();
        let detected: Vec<Option<Vec<FoundFace>>> = chunk
            .par_iter()
            .zip(rounds.par_iter())
            .map(|(p, &detect)| detect.then(|| find_faces(detector, &p.frame)))
            .collect();
        // Tracking, in frame order: detection rounds update the tracks; the sampled frames
        // between reuse the boxes of the tracks seen in the last round.
        let mut faces_per_frame: Vec<Option<(Vec<FoundFace>, Vec<u32>, bool)>> = Vec::with_capacity(chunk.len());
        for (p, found) in chunk.iter().zip(detected) {
            if !p.sampled {
                faces_per_frame.push(None);
                continue;
            }
            self.sampled += 1;
            let entry = match found {
                Some(found) => {
                    self.detections += 1;
                    let boxes: Vec<_> = found.iter().map(|f| f.bbox).collect();
                    let ids = self.tracker.update(&boxes);
                    (found, ids, true)
                }
                None => {
                    let (found, ids) = self
                        .tracker
                        .seen()
                        .map(|t| (FoundFace { bbox: t.bbox, detector_score: None, landmarks: None }, t.id))
                        .unzip();
                    (found, ids, false)
                }
            };
            faces_per_frame.push(Some(entry));
        }
        // One batched pass of the net over every face of the chunk.
        let crops: Vec<Vec<u8>> = chunk
            .iter()
            .zip(&faces_per_frame)
            .filter_map(|(p, f)| f.as_ref().map(|(found, _, _)| crops_of(&p.frame, found, classifier.align)))
            .flatten()
            .collect();
        let mut probabilities = classifier.classify(&crops).into_iter();
        let live: Vec<u32> = self.tracker.live_ids().collect();
        for (p, entry) in chunk.into_iter().zip(faces_per_frame) {
            if let Some((found, ids, detected)) = entry {
                let faces = assemble(found, &mut probabilities);
                let rows: Vec<FaceRow> = faces
                    .into_iter()
                    .zip(ids)
                    .map(|(face, track)| {
                        let face = self.smoothed(track, face);
                        FaceRow { frame: p.index, time: p.time, track, detected, face }
                    })
                    .collect();
                for row in &rows {
                    let span = self.span;
                    self.summaries.entry(row.track).or_insert_with(|| TrackSummary::new(row.track, span)).add(row);
                }
                self.faces += rows.len() as u64;
                outputs.rows(&rows)?;
                self.last_rows = rows;
            }
            if self.options.annotate {
                outputs.annotated_frame(p.frame, &self.last_rows)?;
            }
        }
        // Windows of ended tracks are dropped, so that memory follows the live tracks only.
        self.windows.retain(|id, _| live.contains(id));
        Ok(())
    }

    /// `face` with its probabilities averaged over its track's last `smooth` rows (itself included).
    fn smoothed(&mut self, track: u32, face: FacePrediction) -> FacePrediction {
        if self.options.smooth <= 1 {
            return face;
        }
        let window = self.windows.entry(track).or_default();
        window.push_back(face.probabilities);
        if window.len() > self.options.smooth {
            window.pop_front();
        }
        let mut mean = [0f32; NUM_CLASSES];
        for row in window.iter() {
            for (m, p) in mean.iter_mut().zip(row) {
                *m += p / window.len() as f32;
            }
        }
        FacePrediction::with_probabilities(face, mean)
    }
}
