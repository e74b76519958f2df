//! `ferkit predict VIDEO... [--fps N | --every N] [--start T] [--end T] [--detect-every K]
//! [--smooth N] [--annotate] [--out DIR]`: the video side of `predict`, over
//! `ferkit::video::analyze_video` (the library's prediction pipeline, frame by frame).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::Args;
use ferkit::data::CLASS_NAMES;
use ferkit::error::{Result, bail};
use ferkit::prediction::{EmotionClassifier, FaceDetector};
use ferkit::video::{Sampling, VideoOptions, VideoReport, analyze_video};
use indicatif::{ProgressBar, ProgressStyle};

/// The options of `predict` that apply to videos only.
#[derive(Args, Debug, Default)]
pub struct VideoArgs {
    /// Videos: analyse at most N frames per second (the first frame of each 1/N-second slot).
    /// Default: every frame.
    #[arg(long, value_name = "N", conflicts_with = "every", help_heading = "Videos")]
    pub fps: Option<f64>,
    /// Videos: analyse every N-th frame.
    #[arg(long, value_name = "N", help_heading = "Videos")]
    pub every: Option<usize>,
    /// Videos: start at this time: seconds (12.5) or [HH:]MM:SS[.fff].
    #[arg(long, value_name = "TIME", value_parser = parse_time, help_heading = "Videos")]
    pub start: Option<f64>,
    /// Videos: stop at this time: seconds or [HH:]MM:SS[.fff].
    #[arg(long, value_name = "TIME", value_parser = parse_time, help_heading = "Videos")]
    pub end: Option<f64>,
    /// Videos: run the face detector on every K-th analysed frame; the frames between reuse its
    /// boxes (each face is still cut out of its own frame and read anew). Faster; 1: detect on
    /// every analysed frame.
    #[arg(long, value_name = "K", default_value_t = 1, help_heading = "Videos")]
    pub detect_every: usize,
    /// Videos: average each face track's probabilities over its last N analysed frames (1: none).
    #[arg(long, value_name = "N", default_value_t = 1, help_heading = "Videos")]
    pub smooth: usize,
    /// Videos: also write annotated.mp4, every frame with its faces' boxes, track ids and emotions
    /// (encoded with ffmpeg's libx264).
    #[arg(long, help_heading = "Videos")]
    pub annotate: bool,
}

impl VideoArgs {
    /// Whether any video option was given (they are refused for photos).
    pub fn any_given(&self) -> bool {
        self.fps.is_some()
            || self.every.is_some()
            || self.start.is_some()
            || self.end.is_some()
            || self.detect_every != 1
            || self.smooth != 1
            || self.annotate
    }

    fn options(&self) -> VideoOptions {
        let sampling = match (self.fps, self.every) {
            (Some(f), _) => Sampling::Fps(f),
            (None, Some(n)) => Sampling::Every(n),
            (None, None) => Sampling::Every(1),
        };
        VideoOptions {
            sampling,
            start: self.start.unwrap_or(0.0),
            end: self.end,
            detect_every: self.detect_every,
            smooth: self.smooth,
            annotate: self.annotate,
            ..VideoOptions::default()
        }
    }
}

/// "12.5" -> 12.5; "01:02.5" -> 62.5; "1:00:00" -> 3600.
pub fn parse_time(text: &str) -> std::result::Result<f64, String> {
    let bad = || format!("`{text}` is not a time: give seconds (12.5) or [HH:]MM:SS[.fff]");
    let parts: Vec<&str> = text.trim().split(':').collect();
    if parts.len() > 3 {
        return Err(bad());
    }
    let mut seconds = 0.0;
    for (i, part) in parts.iter().enumerate() {
        let value: f64 = part.parse().map_err(|_| bad())?;
        let last = i + 1 == parts.len();
        if !value.is_finite() || value < 0.0 || (!last && value.fract() != 0.0) || (i > 0 && value >= 60.0) {
            return Err(bad());
        }
        seconds = seconds * 60.0 + value;
    }
    Ok(seconds)
}

/// Analyses each video in turn; one that fails is reported and the others go on, and the
/// command fails at the end. Without `--out` the files go to a temporary folder that is removed.
pub fn run(
    videos: &[PathBuf],
    args: &VideoArgs,
    classifier: &EmotionClassifier,
    detector: &dyn FaceDetector,
    out: Option<&Path>,
) -> Result<()> {
    let options = args.options();
    options.check()?;
    // Without --out the files go to a scratch folder, removed at the end.
    let scratch = if out.is_none() { Some(tempfile::tempdir()?) } else { None };
    let root = out.map_or_else(|| scratch.as_ref().expect("made above").path().to_path_buf(), Path::to_path_buf);
    let mut failed = 0;
    for video in videos {
        // One video's files go straight into --out; several get a subfolder each.
        let dir = if out.is_some() && videos.len() == 1 {
            root.clone()
        } else {
            root.join(video.file_stem().unwrap_or_default())
        };
        let bar = progress_bar(video);
        let mut progress = |done: u64, expected: Option<u64>| {
            if let Some(bar) = &bar {
                if let Some(expected) = expected {
                    bar.set_length(expected.max(done));
                }
                bar.set_position(done);
            }
        };
        let analysed = analyze_video(video, classifier, detector, &options, &dir, &mut progress);
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        match analysed {
            Ok(report) => {
                print_report(&report);
                if out.is_some() {
                    super::lines::say(&format!(
                        "wrote {}: frames.csv, frames.jsonl, tracks.csv, tracks.json, timelines{}",
                        dir.display(),
                        if options.annotate { ", annotated.mp4" } else { "" }
                    ));
                }
                if let Err(e) = report.check() {
                    super::lines::tell(&format!("error: {e}"));
                    failed += 1;
                }
            }
            Err(e) => {
                super::lines::tell(&format!("error: {e}"));
                failed += 1;
            }
        }
    }
    if out.is_none() {
        super::lines::say("(per-frame rows not kept: give --out DIR for frames.csv, tracks.csv, timelines)");
    }
    if failed > 0 {
        bail!(BadInput, "{failed} of {} videos could not be read in full (see above)", videos.len());
    }
    Ok(())
}

fn progress_bar(video: &Path) -> Option<ProgressBar> {
    std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} frames  {per_sec}  ETA {eta_precise}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.set_message(video.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned()));
        bar
    })
}

fn print_report(r: &VideoReport) {
    super::lines::say(&format!(
        "{}: {}x{} at {:.2} frames/s; {} frames read, {} analysed ({} detection rounds), {} faces in {} tracks; {:.1} s ({:.1} frames/s)",
        r.video.display(),
        r.width,
        r.height,
        r.fps,
        r.frames_read,
        r.frames_sampled,
        r.detections,
        r.faces,
        r.tracks.len(),
        r.seconds,
        r.frames_read as f64 / r.seconds.max(1e-9)
    ));
    for t in &r.tracks {
        let mut shares: Vec<(f64, &str)> = t.shares().into_iter().zip(CLASS_NAMES).filter(|(s, _)| *s > 0.0).collect();
        shares.sort_by(|a, b| b.0.total_cmp(&a.0));
        let shown: Vec<String> = shares.iter().map(|(s, c)| format!("{c} {:.0}%", 100.0 * s)).collect();
        super::lines::say(&format!(
            "  track {}: {:.2}-{:.2} s, {} frames: {}",
            t.id,
            t.first,
            t.last,
            t.frames,
            shown.join(", ")
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_seconds_or_clock_times() {
        assert_eq!(parse_time("12.5"), Ok(12.5));
        assert_eq!(parse_time("01:02.5"), Ok(62.5));
        assert_eq!(parse_time("1:00:00"), Ok(3600.0));
        for bad in ["", "1:60", "-3", "a", "1:2:3:4", "1.5:00"] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }
}
