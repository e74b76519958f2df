//! The one way ferkit reads an image file, for image folders (`data`, `train`, `eval`) and for
//! photos (`predict`): the format is sniffed from the content (a PNG named `.jpg` is a PNG),
//! the EXIF orientation of phone photos is applied, and every format the `image` crate is built
//! with here is accepted: PNG, JPEG, WebP, BMP, GIF (first frame), TIFF.

use std::path::Path;

use crate::error::{Context, Result};
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

/// The most pixels an image may declare before ferkit refuses to decode it: 100 million (a
/// 12,000 x 8,000 photo is 96 million), or `$FERKIT_MAX_IMAGE_PIXELS`. A header can declare any
/// size in a few bytes; decoding it would allocate 3 bytes a pixel or more.
pub fn max_image_pixels() -> u64 {
    std::env::var("FERKIT_MAX_IMAGE_PIXELS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000_000)
}

/// Decodes an image, upright: the format from the content (the extension only when the content
/// does not tell), then the EXIF orientation applied. Errors name the file; an image whose header
/// declares more than [`max_image_pixels`] is refused before any pixel is decoded.
pub fn read_image(path: &Path) -> Result<DynamicImage> {
    let cannot = || format!("{}: cannot read the image", path.display());
    let reader = ImageReader::open(path).with_context(cannot)?.with_guessed_format().with_context(cannot)?;
    decode_upright(reader, &path.display().to_string())
}

/// [`read_image`] for an encoded image already in memory (an upload, a Python `bytes`); `shown`
/// names it in errors. The format comes from the content alone.
pub fn decode_image(bytes: &[u8], shown: &str) -> Result<DynamicImage> {
    let reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .with_context(|| format!("{shown}: cannot read the image"))?;
    if reader.format().is_none() {
        crate::bail!(BadInput @ "format", "{shown}: not an image of a known format (PNG, JPEG, WebP, BMP, GIF, TIFF)");
    }
    decode_upright(reader, shown)
}

fn decode_upright<R: std::io::BufRead + std::io::Seek>(reader: ImageReader<R>, shown: &str) -> Result<DynamicImage> {
    let cannot = || format!("{shown}: cannot read the image");
    let mut decoder = reader.into_decoder().with_context(cannot)?;
    let (width, height) = decoder.dimensions();
    let (pixels, limit) = (width as u64 * height as u64, max_image_pixels());
    if pixels > limit {
        crate::bail!(
            BadInput @ "max_image_pixels",
            "{shown}: the image declares {width}x{height} = {pixels} pixels, more than the limit of {limit} (set FERKIT_MAX_IMAGE_PIXELS to allow more)"
        );
    }
    let orientation = decoder.orientation().with_context(cannot)?;
    // A decoder that panics on a malformed file (fuzzing found zune-jpeg 0.5.15 overflowing
    // `dc * quantiser` in bitstream.rs) must not take the process with it: its panic becomes
    // this file's error. The decoder and its buffers are dropped with the unwind, so nothing
    // half-made is reused.
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| DynamicImage::from_decoder(decoder)));
    let mut image = match decoded {
        Ok(image) => image.with_context(cannot)?,
        Err(panic) => {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_string());
            crate::bail!(BadInput, "{shown}: cannot read the image: the decoder failed on this file ({why})");
        }
    };
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

    /// Issue 20: a header that declares a huge image (here 100,000 x 100,000 in a 70-byte PNG) is
    /// refused by name before decoding allocates anything.
    #[test]
    fn an_image_declaring_too_many_pixels_is_refused_before_decoding() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small.png");
        image::GrayImage::new(1, 1).save(&small).unwrap();
        let mut bytes = std::fs::read(&small).unwrap();
        // IHDR: length (4), "IHDR" (4), width (4), height (4), ... then the CRC of type + data.
        let ihdr = 8;
        assert_eq!(&bytes[ihdr + 4..ihdr + 8], b"IHDR");
        bytes[ihdr + 8..ihdr + 12].copy_from_slice(&100_000u32.to_be_bytes());
        bytes[ihdr + 12..ihdr + 16].copy_from_slice(&100_000u32.to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(&bytes[ihdr + 4..ihdr + 8 + 13]);
        bytes[ihdr + 8 + 13..ihdr + 8 + 17].copy_from_slice(&crc.sum().to_be_bytes());
        let bomb = dir.path().join("bomb.png");
        std::fs::write(&bomb, &bytes).unwrap();
        assert_eq!(image_dimensions(&bomb).unwrap(), (100_000, 100_000));
        let err = format!("{:#}", read_image(&bomb).unwrap_err());
        assert!(
            err.contains("bomb.png") && err.contains("100000x100000") && err.contains("FERKIT_MAX_IMAGE_PIXELS"),
            "{err}"
        );
    }
}
