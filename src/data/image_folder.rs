//! Image folders: `ROOT/<split>/<class>/*.{png,jpg,jpeg}` with FER2013's class names.
//! Any image size or colour is accepted and converted to 48x48 grey.

use std::path::Path;

use anyhow::{Context, Result, bail};
use image::imageops::FilterType;

use super::dataset::{CLASS_NAMES, Dataset, IMAGE_SIDE, SplitName};
use super::source::LoadReport;

const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

pub fn read_image_folder(
    root: &Path,
    skip_bad_rows: bool,
    dataset: &mut Dataset,
    report: &mut LoadReport,
) -> Result<()> {
    let mut found_split = false;
    for entry in sorted_entries(root)? {
        if !entry.is_dir() {
            continue;
        }
        let name = file_name(&entry);
        let split = SplitName::parse(&name).with_context(|| {
            format!("{}: `{name}` is not a split name (expected train, val or test)", entry.display())
        })?;
        found_split = true;
        for class_dir in sorted_entries(&entry)? {
            if !class_dir.is_dir() {
                continue;
            }
            let class = file_name(&class_dir).to_ascii_lowercase();
            let label = CLASS_NAMES.iter().position(|c| *c == class).with_context(|| {
                format!(
                    "{}: `{class}` is not a class name (expected one of {})",
                    class_dir.display(),
                    CLASS_NAMES.join(", ")
                )
            })? as u8;
            for file in sorted_entries(&class_dir)? {
                if !file.is_file() || !has_image_extension(&file) {
                    continue;
                }
                match load_face(&file) {
                    Ok(face) => {
                        dataset.split_mut(split).push(&face, label);
                        report.rows_read += 1;
                    }
                    Err(e) if skip_bad_rows => report.skip(format!("{e:#}")),
                    Err(e) => return Err(e.context("use --skip-bad-rows to skip unreadable images")),
                }
            }
        }
    }
    if !found_split {
        bail!("{}: no split folders (expected ROOT/train/<class>/*.png, ROOT/val/..., ROOT/test/...)", root.display());
    }
    if dataset.total_rows() == 0 {
        bail!("{}: no images found under the split folders", root.display());
    }
    Ok(())
}

/// Reads any image file as a 48x48 grey face (see [`to_face`]).
pub fn load_face(path: &Path) -> Result<Vec<u8>> {
    let img = image::open(path).with_context(|| format!("{}: cannot read the image", path.display()))?.to_luma8();
    Ok(to_face(&img))
}

/// A grey image of any size as FER2013's 48x48 face: resized with a triangle filter (area-
/// weighted when shrinking), or copied when it is 48x48 already.
pub fn to_face(img: &image::GrayImage) -> Vec<u8> {
    image::imageops::resize(img, IMAGE_SIDE as u32, IMAGE_SIDE as u32, FilterType::Triangle).into_raw()
}

/// Whether the path ends in .png, .jpg or .jpeg (any case).
pub fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn sorted_entries(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut entries = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot list the folder", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<Vec<_>>>()
        .with_context(|| format!("{}: cannot list the folder", dir.display()))?;
    entries.sort();
    Ok(entries)
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}
