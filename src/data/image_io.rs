//! The one way ferkit reads an image file, for image folders (`data`, `train`, `eval`) and for
//! photos (`predict`): the format is sniffed from the content (a PNG named `.jpg` is a PNG),
//! the EXIF orientation of phone photos is applied, and every format the `image` crate is built
//! with here is accepted: PNG, JPEG, WebP, BMP, GIF (first frame), TIFF.

use std::path::Path;

use anyhow::{Context, Result};
use image::{DynamicImage, ImageDecoder, ImageReader};

/// File name endings of the formats above, lower case (`.jfif`, `.jpe` are JPEG's).
pub const IMAGE_EXTENSIONS: [&str; 10] = ["png", "jpg", "jpeg", "jpe", "jfif", "webp", "bmp", "gif", "tif", "tiff"];

/// Whether the path's name ends in one of [`IMAGE_EXTENSIONS`] (any case).
pub fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Whether the file's first bytes are those of an image format ferkit reads, whatever its name.
/// `Ok(false)` for text, archives, thumbnails databases and the like; errors only when the file
/// cannot be opened.
pub fn is_image_file(path: &Path) -> Result<bool> {
    let reader = ImageReader::open(path)
        .with_context(|| format!("{}: cannot open", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(reader.format().is_some_and(|f| f.reading_enabled()))
}

/// Decodes an image, upright: the format from the content (the extension only when the content
/// does not tell), then the EXIF orientation applied. Errors name the file.
pub fn read_image(path: &Path) -> Result<DynamicImage> {
    let cannot = || format!("{}: cannot read the image", path.display());
    let mut decoder = ImageReader::open(path)
        .with_context(cannot)?
        .with_guessed_format()
        .with_context(cannot)?
        .into_decoder()
        .with_context(cannot)?;
    let orientation = decoder.orientation().with_context(cannot)?;
    let mut image = DynamicImage::from_decoder(decoder).with_context(cannot)?;
    image.apply_orientation(orientation);
    Ok(image)
}

/// Grey levels of packed RGB pixels, `Y = 0.299 R + 0.587 G + 0.114 B` in OpenCV's 14-bit fixed
/// point (`cv::cvtColor(..., COLOR_RGB2GRAY)`), the conversion FER2013's own faces and the Haar
/// detector's reference use. Grey pixels (R = G = B) keep their value.
pub fn grey_levels(rgb: &[u8]) -> Vec<u8> {
    const SHIFT: u32 = 14;
    rgb.chunks_exact(3)
        .map(|p| ((p[0] as u32 * 4899 + p[1] as u32 * 9617 + p[2] as u32 * 1868 + (1 << (SHIFT - 1))) >> SHIFT) as u8)
        .collect()
}

/// An image as grey levels ([`grey_levels`]), for faces from folders and from photos alike.
pub fn to_grey(image: &DynamicImage) -> image::GrayImage {
    let rgb = image.to_rgb8();
    image::GrayImage::from_raw(rgb.width(), rgb.height(), grey_levels(rgb.as_raw()))
        .expect("one grey level per RGB pixel")
}

/// The image's width and height from its header alone (a cheap check before slow work).
pub fn image_dimensions(path: &Path) -> Result<(u32, u32)> {
    let cannot = || format!("{}: cannot read the image", path.display());
    ImageReader::open(path)
        .with_context(cannot)?
        .with_guessed_format()
        .with_context(cannot)?
        .into_dimensions()
        .with_context(cannot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_comes_from_the_content_and_every_built_format_reads() {
        let dir = tempfile::tempdir().unwrap();
        let img = image::RgbImage::from_fn(20, 10, |x, y| image::Rgb([(x * 10) as u8, (y * 20) as u8, 7]));
        for (name, format) in [
            ("a.png", image::ImageFormat::Png),
            ("b.bmp", image::ImageFormat::Bmp),
            ("c.webp", image::ImageFormat::WebP),
            ("d.gif", image::ImageFormat::Gif),
            ("e.tiff", image::ImageFormat::Tiff),
            ("f.jpg", image::ImageFormat::Png), // a PNG under a JPEG name
            ("g.dat", image::ImageFormat::Bmp), // no image ending at all
        ] {
            let path = dir.path().join(name);
            image::DynamicImage::ImageRgb8(img.clone()).save_with_format(&path, format).unwrap();
            assert!(is_image_file(&path).unwrap(), "{name}");
            let read = read_image(&path).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            assert_eq!((read.width(), read.height()), (20, 10), "{name}");
            assert_eq!(image_dimensions(&path).unwrap(), (20, 10), "{name}");
        }
        let notes = dir.path().join("notes.txt");
        std::fs::write(&notes, "not an image").unwrap();
        assert!(!is_image_file(&notes).unwrap());
        let err = format!("{:#}", read_image(&notes).unwrap_err());
        assert!(err.contains("notes.txt: cannot read the image"), "{err}");
        assert!(has_image_extension(Path::new("x/IMG_1.JFIF")) && !has_image_extension(Path::new("Thumbs.db")));
    }
}
