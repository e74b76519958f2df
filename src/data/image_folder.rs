//! Image folders: `ROOT/<split>/<class>/<image files>` with FER2013's class names.
//! Every file is read through [`super::image_io::read_image`] (format from the content, EXIF
//! orientation applied; PNG, JPEG, WebP, BMP, GIF, TIFF); any size or colour is converted to 48x48
//! grey. Files that are not images (notes, sidecars, `Thumbs.db`) are passed over and counted in
//! the load report.

use std::path::Path;

use crate::error::{Context, Result, bail};
use image::imageops::FilterType;

use std::collections::BTreeMap;

use super::class_names::{FolderClass, folder_class};
use super::dataset::{Dataset, IMAGE_SIDE, SplitName};
pub use super::image_io::has_image_extension;
use super::image_io::{is_image_file, read_image, to_grey};
use super::load_report::LoadReport;
use crate::util::fs::sorted_entries;

/// How class folders are named (see [`super::class_names`]).
#[derive(Clone, Copy, Debug)]
pub struct FolderNaming<'a> {
    /// `--class-map`: folder name -> one of the seven.
    pub class_map: &'a BTreeMap<String, String>,
    /// `--skip-unknown-classes`.
    pub skip_unknown: bool,
}

/// Reads `ROOT/<split>/<class>/<images>` into `dataset`. Errors name the folder or file.
pub fn read_image_folder(
    root: &Path,
    skip_bad_rows: bool,
    naming: FolderNaming,
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
            let class = file_name(&class_dir);
            let label = match folder_class(&class, naming.class_map, naming.skip_unknown)
                .with_context(|| class_dir.display().to_string())?
            {
                FolderClass::Label(label) => label,
                FolderClass::Outside => {
                    let files = sorted_entries(&class_dir)?.into_iter().filter(|f| f.is_file()).count();
                    report.ignore_file(format!(
                        "{}: class `{class}` is not one of the seven; its {files} files left out (--skip-unknown-classes)",
                        class_dir.display()
                    ));
                    continue;
                }
            };
            for file in sorted_entries(&class_dir)? {
                if !file.is_file() {
                    continue;
                }
                // A file named as an image that does not decode is a bad image (an error, or
                // skipped under --skip-bad-rows); one that is neither named nor made as an image
                // is not part of the data set, and is only counted.
                let sniffed = if has_image_extension(&file) { Ok(true) } else { is_image_file(&file) };
                let is_image = match sniffed {
                    Ok(is_image) => is_image,
                    Err(e) if skip_bad_rows => {
                        report.skip(format!("{e:#}"));
                        continue;
                    }
                    Err(e) => return Err(e.context("use --skip-bad-rows to skip unreadable files")),
                };
                if !is_image {
                    report.ignore_file(format!("{}: not an image", file.display()));
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
        bail!(
            BadInput,
            "{}: no split folders (expected ROOT/train/<class>/*.png, ROOT/val/..., ROOT/test/...)",
            root.display()
        );
    }
    if dataset.total_rows() == 0 {
        bail!(BadInput, "{}: no images found under the split folders", root.display());
    }
    Ok(())
}

/// Reads any image file as a 48x48 grey face: [`read_image`], [`to_grey`], [`to_face`], the
/// same steps a photo's face goes through in `predict`.
pub fn load_face(path: &Path) -> Result<Vec<u8>> {
    Ok(to_face(&to_grey(&read_image(path)?)))
}

/// A grey image of any size as FER2013's 48x48 face: resized with a triangle filter (area-
/// weighted when shrinking), or copied when it is 48x48 already.
pub fn to_face(img: &image::GrayImage) -> Vec<u8> {
    image::imageops::resize(img, IMAGE_SIDE as u32, IMAGE_SIDE as u32, FilterType::Triangle).into_raw()
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}
