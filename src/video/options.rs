//! How a video is analysed: which frames ([`Sampling`]), from when to when, how often the
//! detector runs, smoothing and tracking settings ([`VideoOptions`]).

use serde::Serialize;

use crate::error::{Result, bail};

/// Which frames are analysed.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampling {
    /// Every n-th decoded frame (1: all).
    Every(usize),
    /// The first frame of each 1/f-second slot (f frames per second at most).
    Fps(f64),
}

/// How a video is analysed.
#[derive(Clone, Debug, Serialize)]
pub struct VideoOptions {
    pub sampling: Sampling,
    /// Seconds from the start of the video where the analysis starts.
    pub start: f64,
    /// Seconds from the start of the video where it ends (the end of the video by default).
    pub end: Option<f64>,
    /// Run the detector on every k-th sampled frame (1: all); the frames between reuse the boxes
    /// of the last detection (the faces are still cut out of each frame and read anew).
    pub detect_every: usize,
    /// Average each track's probabilities over its last `smooth` sampled frames (1: no smoothing).
    pub smooth: usize,
    /// The least box overlap (IoU) that continues a track.
    pub min_iou: f32,
    /// Detection rounds a track may miss before it ends.
    pub max_missed: usize,
    /// Write `annotated.mp4`: every frame, with the boxes and labels of the last sampled frame.
    pub annotate: bool,
}

impl Default for VideoOptions {
    fn default() -> Self {
        Self {
            sampling: Sampling::Every(1),
            start: 0.0,
            end: None,
            detect_every: 1,
            smooth: 1,
            min_iou: 0.3,
            max_missed: 2,
            annotate: false,
        }
    }
}

impl VideoOptions {
    /// Errors (naming the option): values out of range.
    pub fn check(&self) -> Result<()> {
        match self.sampling {
            Sampling::Every(0) => bail!(Config @ "every", "every (analyse every n-th frame) must be at least 1"),
            Sampling::Fps(f) if !(f.is_finite() && f > 0.0) => {
                bail!(Config @ "fps", "fps (frames analysed per second) must be above 0 (got {f})")
            }
            _ => {}
        }
        crate::ensure!(Config @ "start", self.start.is_finite() && self.start >= 0.0, "start must be 0 or more seconds (got {})", self.start);
        if let Some(end) = self.end {
            crate::ensure!(Config @ "end", end.is_finite() && end > self.start, "end ({end} s) must come after start ({} s)", self.start);
        }
        crate::ensure!(Config @ "detect_every", self.detect_every >= 1, "detect_every must be at least 1 (1: the detector on every analysed frame)");
        crate::ensure!(Config @ "smooth", self.smooth >= 1, "smooth must be at least 1 (1: no smoothing)");
        crate::ensure!(Config, (0.0..=1.0).contains(&self.min_iou), "the tracking overlap must be in [0, 1]");
        Ok(())
    }
}
