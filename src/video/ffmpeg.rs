//! The `ffmpeg` and `ffprobe` command-line tools (Debian's `ffmpeg` package), run as child
//! processes: [`probe`] reads a file's first video stream, [`FrameReader`] decodes it to raw RGB
//! frames through a pipe (nothing is extracted to disk), [`FrameWriter`] encodes raw RGB frames
//! to a video file. Found on `PATH`; when missing, the error says how to install them.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::thread::JoinHandle;

use serde::Deserialize;

use crate::error::{Context, Result, bail};
use crate::util::atomic::{move_into_place, temp_path};

/// What [`probe`] tells of a file's first video stream.
#[derive(Clone, Debug, PartialEq)]
pub struct VideoInfo {
    /// Frame size in pixels as decoded (after the rotation the file asks for).
    pub width: u32,
    pub height: u32,
    /// Frames per second (the stream's average rate; its base rate when that is unknown).
    pub fps: f64,
    /// Seconds, when the file says.
    pub duration: Option<f64>,
    /// Frames in the stream, when the container counts them (MP4 does, Matroska does not).
    pub frames: Option<u64>,
    /// The codec's short name (h264, vp9, ...).
    pub codec: String,
}

impl VideoInfo {
    /// The number of frames decoding is expected to give between `start` and `end` seconds
    /// (the container's count, else duration x rate), when it can be known.
    pub fn expected_frames(&self, start: f64, end: Option<f64>) -> Option<u64> {
        let whole = self.frames.or_else(|| self.duration.map(|d| (d * self.fps).round() as u64))?;
        let first = (start * self.fps).round() as u64;
        let last = end.map_or(whole, |e| ((e * self.fps).round() as u64).min(whole));
        Some(last.saturating_sub(first))
    }
}

/// The path of `name` (`ffmpeg`, `ffprobe`) on `PATH`. Errors: not found, saying how to install it.
pub fn tool(name: &str) -> Result<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    found.ok_or_else(|| {
        crate::err!(
            Unsupported,
            "{name} not found on PATH: ferkit reads videos through the ffmpeg command-line tools; install them \
             (Debian/Ubuntu: apt-get install ffmpeg; macOS: brew install ffmpeg; Windows: winget install ffmpeg)"
        )
    })
}

#[derive(Deserialize)]
struct ProbeOutput {
    #[serde(default)]
    streams: Vec<ProbeStream>,
    format: Option<ProbeFormat>,
}

#[derive(Deserialize)]
struct ProbeStream {
    codec_name: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    avg_frame_rate: Option<String>,
    r_frame_rate: Option<String>,
    nb_frames: Option<String>,
    duration: Option<String>,
    #[serde(default)]
    side_data_list: Vec<SideData>,
}

#[derive(Deserialize)]
struct SideData {
    rotation: Option<f64>,
}

#[derive(Deserialize)]
struct ProbeFormat {
    format_name: Option<String>,
    duration: Option<String>,
}

/// "30000/1001" -> 29.97; None for "0/0" and other rates that are not positive.
fn rate(text: &str) -> Option<f64> {
    let (n, d) = text.split_once('/').unwrap_or((text, "1"));
    let value = n.trim().parse::<f64>().ok()? / d.trim().parse::<f64>().ok()?;
    (value.is_finite() && value > 0.0).then_some(value)
}

/// Reads `path`'s first video stream with `ffprobe`. Errors (naming the file): no such file,
/// a file ffmpeg cannot read (with ffprobe's words), no video stream, no frame rate.
pub fn probe(path: &Path) -> Result<VideoInfo> {
    if !path.is_file() {
        bail!(Io, "{}: no such video file", path.display());
    }
    let output = Command::new(tool("ffprobe")?)
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .arg("stream=codec_name,width,height,avg_frame_rate,r_frame_rate,nb_frames,duration:stream_side_data=rotation:format=format_name,duration")
        .args(["-of", "json"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("{}: cannot run ffprobe", path.display()))?;
    let said = String::from_utf8_lossy(&output.stderr);
    let said = said.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
    if !output.status.success() {
        bail!(BadInput, "{}: ffmpeg cannot read this file as a video: {said}", path.display());
    }
    let parsed: ProbeOutput = serde_json::from_slice(&output.stdout)
        .map_err(|e| crate::err!(Internal, "{}: ffprobe's JSON could not be read: {e}", path.display()))?;
    let format = parsed.format.as_ref().and_then(|f| f.format_name.clone()).unwrap_or_else(|| "unknown".into());
    let Some(stream) = parsed.streams.first() else {
        bail!(BadInput, "{}: no video stream (the file is {format})", path.display());
    };
    let (Some(width), Some(height)) = (stream.width, stream.height) else {
        bail!(BadInput, "{}: the video stream has no frame size", path.display());
    };
    let Some(fps) =
        stream.avg_frame_rate.as_deref().and_then(rate).or_else(|| stream.r_frame_rate.as_deref().and_then(rate))
    else {
        bail!(BadInput, "{}: the video stream has no frame rate", path.display());
    };
    // A phone's portrait video is stored landscape with a rotation that ffmpeg applies when it decodes.
    let turned = stream
        .side_data_list
        .iter()
        .filter_map(|s| s.rotation)
        .any(|r| (r.abs() - 90.0).abs() < 1.0 || (r.abs() - 270.0).abs() < 1.0);
    let (width, height) = if turned { (height, width) } else { (width, height) };
    let seconds =
        |s: &Option<String>| s.as_deref().and_then(|d| d.parse::<f64>().ok()).filter(|d| d.is_finite() && *d > 0.0);
    Ok(VideoInfo {
        width,
        height,
        fps,
        duration: seconds(&stream.duration).or_else(|| parsed.format.as_ref().and_then(|f| seconds(&f.duration))),
        frames: stream.nb_frames.as_deref().and_then(|n| n.parse().ok()).filter(|&n| n > 0),
        codec: stream.codec_name.clone().unwrap_or_else(|| "unknown".into()),
    })
}

/// Collects a child's standard error on a thread (so that a full pipe never blocks it).
fn drain(mut stream: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        text
    })
}

/// The first line of what a tool said, trimmed (empty when it said nothing).
fn first_line(text: &str) -> String {
    text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("").to_string()
}

/// Decodes a video's first stream to packed RGB frames (`width * height * 3` bytes each, row
/// major) through `ffmpeg`'s standard output, one frame at a time: memory does not grow with the
/// video's length.
pub struct FrameReader {
    path: PathBuf,
    child: Child,
    stdout: ChildStdout,
    stderr: Option<JoinHandle<String>>,
    frame_bytes: usize,
    /// Frames read so far.
    pub frames_read: u64,
}

/// How decoding ended.
#[derive(Clone, Debug, PartialEq)]
pub enum DecodeEnd {
    /// The stream ended cleanly.
    Complete,
    /// ffmpeg reported damage (a truncated or corrupt file): its first complaint. The frames read
    /// before it are good.
    Damaged(String),
}

impl FrameReader {
    /// Starts decoding `path` (described by `info`) from `start` seconds to `end` (the whole
    /// stream by default). Errors: ffmpeg missing or not startable.
    pub fn open(path: &Path, info: &VideoInfo, start: f64, end: Option<f64>) -> Result<Self> {
        let mut command = Command::new(tool("ffmpeg")?);
        command.args(["-nostdin", "-v", "error"]);
        if start > 0.0 {
            // Before -i: seeks the input, decoding from the key frame before and dropping frames up to `start`.
            command.args(["-ss", &format!("{start:.6}")]);
        }
        command.arg("-i").arg(path);
        if let Some(end) = end {
            command.args(["-t", &format!("{:.6}", (end - start).max(0.0))]);
        }
        command.args([
            "-map",
            "0:v:0",
            "-an",
            "-sn",
            "-fps_mode",
            "passthrough",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "pipe:1",
        ]);
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("{}: cannot start ffmpeg", path.display()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().map(drain);
        Ok(Self {
            path: path.to_path_buf(),
            child,
            stdout,
            stderr,
            frame_bytes: info.width as usize * info.height as usize * 3,
            frames_read: 0,
        })
    }

    /// The next frame's RGB bytes, or None at the end of the stream (a last, incomplete frame
    /// is dropped: [`FrameReader::finish`] then reports the damage).
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>> {
        let mut frame = vec![0u8; self.frame_bytes];
        let mut filled = 0;
        while filled < frame.len() {
            match self.stdout.read(&mut frame[filled..]) {
                Ok(0) => return Ok(None),
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).with_context(|| format!("{}: reading ffmpeg's frames", self.path.display())),
            }
        }
        self.frames_read += 1;
        Ok(Some(frame))
    }

    /// Waits for ffmpeg to end and says how decoding went. A reader dropped before the end kills ffmpeg.
    pub fn finish(mut self) -> Result<DecodeEnd> {
        // Whatever is left unread (frames after `end`, or a partial frame) is drained so that ffmpeg can exit.
        let _ = std::io::copy(&mut self.stdout, &mut std::io::sink());
        let status = self.child.wait().with_context(|| format!("{}: waiting for ffmpeg", self.path.display()))?;
        let said = self.stderr.take().map(|h| h.join().unwrap_or_default()).unwrap_or_default();
        if !status.success() || !said.trim().is_empty() {
            let line = first_line(&said);
            return Ok(DecodeEnd::Damaged(if line.is_empty() { format!("ffmpeg exited with {status}") } else { line }));
        }
        Ok(DecodeEnd::Complete)
    }
}

impl Drop for FrameReader {
    fn drop(&mut self) {
        if self.stderr.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Encodes packed RGB frames to a video file with `ffmpeg` (H.264 in MP4, yuv420p, so that
/// browsers and players read it), written under a temporary name and renamed into place by
/// [`FrameWriter::finish`]; dropped unfinished, it leaves nothing behind.
pub struct FrameWriter {
    path: PathBuf,
    temporary: PathBuf,
    child: Child,
    stdin: Option<ChildStdin>,
    stderr: Option<JoinHandle<String>>,
    frame_bytes: usize,
    /// Frames written so far.
    pub frames_written: u64,
    /// Set once the file is in place; until then dropping the writer removes the temporary file.
    finished: bool,
}

impl FrameWriter {
    /// Starts an encoder writing `width` x `height` frames at `fps` to `path`.
    pub fn create(path: &Path, width: u32, height: u32, fps: f64) -> Result<Self> {
        // The container is named with -f, so the temporary name needs no extension.
        let temporary = temp_path(path);
        // yuv420p needs even sides: an odd last row or column is cropped.
        let even = "crop=trunc(iw/2)*2:trunc(ih/2)*2";
        let mut child = Command::new(tool("ffmpeg")?)
            .args(["-nostdin", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24"])
            .args(["-s", &format!("{width}x{height}"), "-r", &format!("{fps}"), "-i", "pipe:0"])
            .args(["-vf", even, "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-f", "mp4"])
            .arg(&temporary)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("{}: cannot start ffmpeg to encode", path.display()))?;
        let stdin = child.stdin.take();
        let stderr = child.stderr.take().map(drain);
        Ok(Self {
            path: path.to_path_buf(),
            temporary,
            child,
            stdin,
            stderr,
            frame_bytes: width as usize * height as usize * 3,
            frames_written: 0,
            finished: false,
        })
    }

    /// Appends one frame (`width * height * 3` RGB bytes).
    pub fn write(&mut self, rgb: &[u8]) -> Result<()> {
        crate::ensure!(
            Internal,
            rgb.len() == self.frame_bytes,
            "a frame of {} bytes, the encoder takes {}",
            rgb.len(),
            self.frame_bytes
        );
        let stdin = self.stdin.as_mut().expect("open until finish");
        if let Err(e) = stdin.write_all(rgb) {
            // The encoder died: its own words say why.
            self.stdin = None;
            let _ = self.child.wait();
            let said = self.stderr.take().map(|h| h.join().unwrap_or_default()).unwrap_or_default();
            bail!(Io, "{}: the encoder stopped ({e}): {}", self.path.display(), first_line(&said));
        }
        self.frames_written += 1;
        Ok(())
    }

    /// Closes the stream, waits for the encoder and renames the file into place.
    pub fn finish(mut self) -> Result<()> {
        drop(self.stdin.take());
        let status = self.child.wait().with_context(|| format!("{}: waiting for the encoder", self.path.display()))?;
        let said = self.stderr.take().map(|h| h.join().unwrap_or_default()).unwrap_or_default();
        if !status.success() {
            bail!(Io, "{}: the encoder failed ({status}): {}", self.path.display(), first_line(&said));
        }
        move_into_place(&self.temporary, &self.path)?;
        self.finished = true;
        Ok(())
    }
}

impl Drop for FrameWriter {
    /// Unfinished (dropped early, or the encoder failed): the encoder is stopped and its partial
    /// file removed, whichever step failed.
    fn drop(&mut self) {
        if !self.finished {
            drop(self.stdin.take());
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = std::fs::remove_file(&self.temporary);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_rates_parse_as_ffprobe_writes_them() {
        assert_eq!(rate("25/1"), Some(25.0));
        assert!((rate("30000/1001").unwrap() - 29.97).abs() < 1e-3);
        assert_eq!(rate("0/0"), None);
        assert_eq!(rate("12"), Some(12.0));
    }

    #[test]
    fn expected_frames_follow_the_count_or_the_duration() {
        let info =
            VideoInfo { width: 4, height: 4, fps: 10.0, duration: Some(3.0), frames: None, codec: "h264".into() };
        assert_eq!(info.expected_frames(0.0, None), Some(30));
        assert_eq!(info.expected_frames(1.0, Some(2.5)), Some(15));
        assert_eq!(VideoInfo { frames: Some(28), ..info.clone() }.expected_frames(0.0, Some(9.0)), Some(28));
        assert_eq!(VideoInfo { duration: None, ..info }.expected_frames(0.0, None), None);
    }
}
