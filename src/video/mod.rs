//! Emotions over time in video files, through the `ffmpeg` command-line tool: frames stream
//! through a pipe as raw pixels, the sampled ones go through the one prediction pipeline
//! (`crate::prediction`), faces are tracked across frames, and rows, per-track summaries,
//! timelines and an annotated video are written to a folder.
//!
//! - [`ffmpeg`]: probing, decoding to RGB frames, encoding frames.
//! - [`tracking`]: track ids by box overlap.
//! - [`options`]: which frames, when, how often the detector runs.
//! - [`analyze`]: the loop ([`analyze_video`]).
//! - [`rows`]: what it gives: face rows, track summaries, the report.
//! - [`output`]: the files it writes.

pub mod analyze;
pub mod ffmpeg;
pub mod options;
pub mod output;
pub mod rows;
pub mod tracking;

pub use analyze::{VideoProgress, analyze_video};
pub use ffmpeg::VideoInfo;
pub use options::{Sampling, VideoOptions};
pub use rows::{FaceRow, TrackSummary, VideoReport};

/// File name endings taken for videos by the fronts (`ferkit predict`), lower case.
pub const VIDEO_EXTENSIONS: [&str; 12] =
    ["mp4", "m4v", "mov", "mkv", "webm", "avi", "mpg", "mpeg", "ts", "flv", "wmv", "3gp"];

/// Whether `path`'s name ends like a video's.
pub fn is_video_path(path: &std::path::Path) -> bool {
    path.extension().is_some_and(|e| VIDEO_EXTENSIONS.contains(&e.to_string_lossy().to_lowercase().as_str()))
}
