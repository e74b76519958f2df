//! What a video's analysis gives: a row per face per sampled frame ([`FaceRow`]), a summary per
//! face track kept in constant memory ([`TrackSummary`]), and the whole run's [`VideoReport`].

use serde::Serialize;
use serde::ser::SerializeMap;

use crate::data::{ByClass, CLASS_NAMES, NUM_CLASSES};
use crate::error::{Result, bail};
use crate::prediction::FacePrediction;

/// One face in one sampled frame: a row of frames.csv and frames.jsonl.
#[derive(Clone, Debug, Serialize)]
pub struct FaceRow {
    /// The frame's index in the video (0 = its first frame).
    pub frame: u64,
    /// Seconds from the start of the video (frame index / frame rate).
    pub time: f64,
    /// The face's track (1, 2, ... in order of appearance).
    pub track: u32,
    /// Whether the detector found the box in this frame (false: carried from the last detection).
    pub detected: bool,
    /// The box, the emotion and the probabilities (smoothed over the track's window when asked).
    #[serde(flatten)]
    pub face: FacePrediction,
}

/// What a video's analysis did.
#[derive(Clone, Debug, Serialize)]
pub struct VideoReport {
    pub video: std::path::PathBuf,
    pub width: u32,
    pub height: u32,
    pub fps: f64,
    pub duration: Option<f64>,
    /// Frames decoded between start and end.
    pub frames_read: u64,
    /// Frames analysed.
    pub frames_sampled: u64,
    /// Face rows written.
    pub faces: u64,
    /// Frames on which the detector ran.
    pub detections: u64,
    pub tracks: Vec<TrackSummary>,
    /// Seconds of wall time.
    pub seconds: f64,
    /// Frames the container promised that decoding did not give, and ffmpeg's complaint, when
    /// the file is damaged (truncated, corrupt).
    pub damaged: Option<String>,
}

impl VideoReport {
    /// Ok for a video read to its end; for a damaged one an error that says where decoding
    /// stopped (the rows of the frames before it are in the outputs).
    pub fn check(&self) -> Result<()> {
        match &self.damaged {
            None => Ok(()),
            Some(what) => bail!(BadInput, "{}: {what}", self.video.display()),
        }
    }
}

/// Bins of each track's timeline (its probabilities averaged per bin): a fixed size whatever the
/// video's length.
const TIMELINE_BINS: usize = 400;

/// One track's summary, updated row by row in constant memory.
#[derive(Clone, Debug)]
pub struct TrackSummary {
    pub id: u32,
    /// Seconds of its first and last sampled frame.
    pub first: f64,
    pub last: f64,
    /// Sampled frames it appears in.
    pub frames: u64,
    /// Sampled frames per emotion (its most probable class).
    pub emotion_frames: [u64; NUM_CLASSES],
    probability_sums: [f64; NUM_CLASSES],
    timeline: Timeline,
}

/// Probabilities averaged per time bin over `[start, end)`.
#[derive(Clone, Debug)]
struct Timeline {
    start: f64,
    bin_seconds: f64,
    sums: Vec<[f32; NUM_CLASSES]>,
    counts: Vec<u32>,
}

impl TrackSummary {
    /// An empty summary of track `id`, its timeline over `span` (seconds).
    pub fn new(id: u32, span: (f64, f64)) -> Self {
        let bin_seconds = ((span.1 - span.0) / TIMELINE_BINS as f64).max(1e-3);
        Self {
            id,
            first: f64::INFINITY,
            last: f64::NEG_INFINITY,
            frames: 0,
            emotion_frames: [0; NUM_CLASSES],
            probability_sums: [0.0; NUM_CLASSES],
            timeline: Timeline {
                start: span.0,
                bin_seconds,
                sums: vec![[0.0; NUM_CLASSES]; TIMELINE_BINS],
                counts: vec![0; TIMELINE_BINS],
            },
        }
    }

    pub fn add(&mut self, row: &FaceRow) {
        self.first = self.first.min(row.time);
        self.last = self.last.max(row.time);
        self.frames += 1;
        let class = CLASS_NAMES.iter().position(|c| *c == row.face.emotion).unwrap_or(0);
        self.emotion_frames[class] += 1;
        for (s, p) in self.probability_sums.iter_mut().zip(row.face.probabilities) {
            *s += p as f64;
        }
        let t = &mut self.timeline;
        let bin = (((row.time - t.start) / t.bin_seconds).floor().max(0.0) as usize).min(TIMELINE_BINS - 1);
        for (s, p) in t.sums[bin].iter_mut().zip(row.face.probabilities) {
            *s += p;
        }
        t.counts[bin] += 1;
    }

    /// The fraction of its sampled frames in which each emotion was the most probable.
    pub fn shares(&self) -> [f64; NUM_CLASSES] {
        self.emotion_frames.map(|n| n as f64 / self.frames.max(1) as f64)
    }

    /// Its mean probability of each class.
    pub fn mean_probabilities(&self) -> [f64; NUM_CLASSES] {
        self.probability_sums.map(|s| s / self.frames.max(1) as f64)
    }

    /// The timeline's filled bins: (bin centre in seconds, mean probabilities).
    pub fn timeline(&self) -> (Vec<f64>, Vec<[f32; NUM_CLASSES]>) {
        let t = &self.timeline;
        (0..TIMELINE_BINS)
            .filter(|&b| t.counts[b] > 0)
            .map(|b| (t.start + (b as f64 + 0.5) * t.bin_seconds, t.sums[b].map(|s| s / t.counts[b] as f32)))
            .unzip()
    }
}

impl Serialize for TrackSummary {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("track", &self.id)?;
        map.serialize_entry("first_s", &self.first)?;
        map.serialize_entry("last_s", &self.last)?;
        map.serialize_entry("frames", &self.frames)?;
        map.serialize_entry("share", &ByClass(&self.shares()))?;
        map.serialize_entry("mean_probabilities", &ByClass(&self.mean_probabilities()))?;
        map.end()
    }
}
