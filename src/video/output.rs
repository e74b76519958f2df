//! A video's outputs in one folder, each written under a temporary name and renamed into place
//! when the analysis ends: `frames.csv` and `frames.jsonl` (one row per face per sampled frame,
//! streamed as chunks finish), `tracks.csv` and `tracks.json` (per-track summaries: share of
//! time per emotion), `timeline_track_N.png` (each track's probabilities over time) and, when
//! asked, `annotated.mp4` (every frame with its faces marked, encoded by ffmpeg).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::ffmpeg::{FrameWriter, VideoInfo};
use super::options::VideoOptions;
use super::rows::{FaceRow, VideoReport};
use crate::data::CLASS_NAMES;
use crate::error::{Context, Result};
use crate::prediction::Frame;
use crate::reporting::plots::{FaceMark, draw_face_marks, plot_timeline};
use crate::util::atomic::{AtomicFile, write_atomic};

/// The open outputs of one analysis.
pub struct Outputs {
    dir: PathBuf,
    frames_csv: AtomicFile,
    frames_jsonl: AtomicFile,
    annotated: Option<FrameWriter>,
    options_json: serde_json::Value,
}

impl Outputs {
    /// Creates `dir` and starts the row files (and the encoder, with `options.annotate`).
    pub fn create(dir: &Path, info: &VideoInfo, options: &VideoOptions) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create the folder", dir.display()))?;
        let mut frames_csv = AtomicFile::create(&dir.join("frames.csv"))?;
        let header = format!("frame,time_s,track,detected,x,y,width,height,emotion,{}\n", CLASS_NAMES.join(","));
        frames_csv.write(header.as_bytes())?;
        let annotated = if options.annotate {
            Some(FrameWriter::create(&dir.join("annotated.mp4"), info.width, info.height, info.fps)?)
        } else {
            None
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            frames_csv,
            frames_jsonl: AtomicFile::create(&dir.join("frames.jsonl"))?,
            annotated,
            options_json: serde_json::to_value(options)?,
        })
    }

    /// Appends one sampled frame's face rows.
    pub fn rows(&mut self, rows: &[FaceRow]) -> Result<()> {
        let (mut csv, mut jsonl) = (String::new(), String::new());
        for r in rows {
            let b = r.face.bbox;
            let _ = write!(
                csv,
                "{},{:.4},{},{},{},{},{},{},{}",
                r.frame, r.time, r.track, r.detected as u8, b.x, b.y, b.width, b.height, r.face.emotion
            );
            for p in r.face.probabilities {
                let _ = write!(csv, ",{p:.6}");
            }
            csv.push('\n');
            jsonl += &serde_json::to_string(r)?;
            jsonl.push('\n');
        }
        self.frames_csv.write(csv.as_bytes())?;
        self.frames_jsonl.write(jsonl.as_bytes())
    }

    /// Marks `faces` on `frame` and appends it to annotated.mp4.
    pub fn annotated_frame(&mut self, mut frame: Frame, faces: &[FaceRow]) -> Result<()> {
        let Some(writer) = &mut self.annotated else { return Ok(()) };
        let marks: Vec<FaceMark> = faces
            .iter()
            .map(|r| FaceMark {
                bbox: r.face.bbox,
                label: format!("#{} {} {:.0}%", r.track, r.face.emotion, 100.0 * r.face.confidence()),
                points: Vec::new(),
            })
            .collect();
        draw_face_marks(&mut frame.rgb, &marks)?;
        writer.write(frame.rgb.as_raw())
    }

    /// Ends the analysis: the row files into place, the track summaries and timelines written,
    /// the annotated video finished. Returns `report` with its wall time.
    pub fn finish(self, mut report: VideoReport, started: Instant) -> Result<VideoReport> {
        self.frames_csv.commit()?;
        self.frames_jsonl.commit()?;
        let mut csv = format!("track,first_s,last_s,frames,{}\n", CLASS_NAMES.map(|c| format!("share_{c}")).join(","));
        for t in &report.tracks {
            let _ = write!(csv, "{},{:.4},{:.4},{}", t.id, t.first, t.last, t.frames);
            for s in t.shares() {
                let _ = write!(csv, ",{s:.4}");
            }
            csv.push('\n');
            let (times, probabilities) = t.timeline();
            let title =
                format!("{}: track {}", report.video.file_name().map_or("video".into(), |n| n.to_string_lossy()), t.id);
            plot_timeline(&times, &probabilities, &title, &self.dir.join(format!("timeline_track_{}.png", t.id)))?;
        }
        write_atomic(&self.dir.join("tracks.csv"), csv)?;
        if let Some(writer) = self.annotated {
            writer.finish()?;
        }
        report.seconds = started.elapsed().as_secs_f64();
        let mut json = serde_json::to_value(&report)?;
        json["options"] = self.options_json;
        write_atomic(&self.dir.join("tracks.json"), serde_json::to_string_pretty(&json)?)?;
        Ok(report)
    }
}
