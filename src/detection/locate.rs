//! Finding a face detector's files where OpenCV and facenet-pytorch install them, so that
//! `ferkit predict photo.jpg` needs no path.
//!
//! The Haar cascade (OpenCV's `haarcascade_frontalface_default.xml`) is looked for, in order:
//! 1. the file named by the environment variable `FERKIT_CASCADE`;
//! 2. Debian's and Ubuntu's `opencv-data` package and OpenCV built from source:
//!    `opencv4/haarcascades/`, then `opencv/haarcascades/` (older releases), under each folder of
//!    `$XDG_DATA_DIRS` (default `/usr/local/share:/usr/share`, the freedesktop.org rule);
//! 3. a pip-installed OpenCV 4 (`opencv-python` and its variants): `cv2/data/` in the
//!    site-packages of the `python3` on PATH. OpenCV 5's wheels (5.1 on PyPI) no longer carry the
//!    cascade files, so the hint below asks for `<5`.
//!
//! MTCNN's weights (facenet-pytorch's `pnet.pt`, `rnet.pt`, `onet.pt`) are looked for in
//! `FERKIT_MTCNN`, then in `facenet_pytorch/data/` of that `python3`'s site-packages.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Result, bail};

/// The frontal-face cascade's file name, as OpenCV ships it.
pub const CASCADE_FILE: &str = "haarcascade_frontalface_default.xml";

/// Where [`find_cascade`] looks, in order, with the reason each place is there.
pub fn cascade_candidates() -> Vec<(PathBuf, &'static str)> {
    let mut places = Vec::new();
    if let Some(path) = std::env::var_os("FERKIT_CASCADE").filter(|v| !v.is_empty()) {
        places.push((PathBuf::from(path), "$FERKIT_CASCADE"));
    }
    let data_dirs = std::env::var("XDG_DATA_DIRS").ok().filter(|v| !v.is_empty());
    let data_dirs = data_dirs.as_deref().unwrap_or("/usr/local/share:/usr/share");
    for root in data_dirs.split(':').filter(|d| !d.is_empty()) {
        for dir in ["opencv4/haarcascades", "opencv/haarcascades"] {
            places.push((Path::new(root).join(dir).join(CASCADE_FILE), "opencv-data"));
        }
    }
    for site in python_site_packages() {
        places.push((site.join("cv2").join("data").join(CASCADE_FILE), "pip opencv-python"));
    }
    places
}

/// The first cascade file found (see the module's list), or an error listing every place
/// searched and how to install one.
pub fn find_cascade() -> Result<PathBuf> {
    if let Some(named) = std::env::var_os("FERKIT_CASCADE").filter(|v| !v.is_empty()).map(PathBuf::from)
        && !named.is_file()
    {
        bail!(BadInput, "$FERKIT_CASCADE names {}, which is not a file", named.display());
    }
    let places = cascade_candidates();
    if let Some((path, _)) = places.iter().find(|(p, _)| p.is_file()) {
        return Ok(path.clone());
    }
    bail!(
        BadInput,
        "no face detector given, and OpenCV's frontal-face Haar cascade ({CASCADE_FILE}) was not found. Searched:\n{}\n\
         Install it with `apt-get install opencv-data` (Debian, Ubuntu) or `pip install \"opencv-python-headless<5\"` (OpenCV 5's wheels dropped the cascades), \
         set FERKIT_CASCADE to the file, or pass --cascade FILE (or --mtcnn DIR, or --whole-image for cropped faces)",
        list(&places)
    )
}

/// The first folder holding MTCNN's three weight files, or an error listing where it looked.
pub fn find_mtcnn() -> Result<PathBuf> {
    let mut places = Vec::new();
    if let Some(path) = std::env::var_os("FERKIT_MTCNN").filter(|v| !v.is_empty()) {
        places.push((PathBuf::from(path), "$FERKIT_MTCNN"));
    }
    for site in python_site_packages() {
        places.push((site.join("facenet_pytorch").join("data"), "pip facenet-pytorch"));
    }
    let complete = |dir: &Path| ["pnet.pt", "rnet.pt", "onet.pt"].iter().all(|f| dir.join(f).is_file());
    if let Some((path, _)) = places.iter().find(|(p, _)| complete(p)) {
        return Ok(path.clone());
    }
    bail!(
        BadInput,
        "--mtcnn was given no folder, and MTCNN's weights (pnet.pt, rnet.pt, onet.pt) were not found. Searched:\n{}\n\
         Install them with `pip install facenet-pytorch`, set FERKIT_MTCNN to their folder, or pass --mtcnn DIR",
        if places.is_empty() { "  (no python3 on PATH and no $FERKIT_MTCNN)".to_string() } else { list(&places) }
    )
}

fn list(places: &[(PathBuf, &str)]) -> String {
    places.iter().map(|(p, why)| format!("  {} ({why})", p.display())).collect::<Vec<_>>().join("\n")
}

/// The site-packages folders of the `python3` on PATH (none when there is no python3). Python is
/// asked rather than guessed, since the folder names carry its version and the distribution's
/// layout (`dist-packages` on Debian).
fn python_site_packages() -> Vec<PathBuf> {
    const ASK: &str = "import site, sysconfig\n\
        paths = [sysconfig.get_paths()['purelib'], sysconfig.get_paths()['platlib']]\n\
        paths += getattr(site, 'getsitepackages', lambda: [])()\n\
        paths.append(site.getusersitepackages())\n\
        print('\\n'.join(dict.fromkeys(paths)))";
    let Ok(out) = Command::new("python3").args(["-c", ASK]).output() else { return Vec::new() };
    if !out.status.success() {
        return Vec::new();
    }
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()).map(PathBuf::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cascade_search_lists_the_usual_places() {
        if std::env::var_os("XDG_DATA_DIRS").is_some() {
            eprintln!("SKIPPED: XDG_DATA_DIRS is set, so the default places are not searched");
            return;
        }
        let places: Vec<String> = cascade_candidates().iter().map(|(p, _)| p.display().to_string()).collect();
        assert!(places.contains(&format!("/usr/share/opencv4/haarcascades/{CASCADE_FILE}")), "{places:?}");
        assert!(places.contains(&format!("/usr/share/opencv/haarcascades/{CASCADE_FILE}")), "{places:?}");
    }
}
