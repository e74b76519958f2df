//! A frame: one image in memory, in colour (for pictures, and MTCNN) and grey (for the Haar
//! detector and the net). Photos from files, uploads, Python arrays and video frames all become
//! one, so the prediction pipeline never needs a path.

use std::path::Path;

use image::{DynamicImage, RgbImage};

use crate::data::image_io::{decode_image, image_dimensions, read_image};
use crate::detection::GreyImage;
use crate::error::Result;

/// One image: `rgb` (8-bit RGB, row-major) and `grey` (its grey levels, OpenCV's conversion).
pub struct Frame {
    pub rgb: RgbImage,
    pub grey: GreyImage,
}

impl Frame {
    /// A frame of a decoded image (any colour type; alpha is dropped).
    pub fn from_image(image: DynamicImage) -> Self {
        Self::from_rgb_image(image.to_rgb8())
    }

    /// A frame of packed RGB pixels, `width * height * 3` bytes, row-major (a video frame, a
    /// numpy `uint8` array of shape `[height, width, 3]`). Errors: another number of bytes.
    pub fn from_rgb(width: u32, height: u32, rgb: Vec<u8>) -> Result<Self> {
        let expected = width as usize * height as usize * 3;
        let got = rgb.len();
        let image = RgbImage::from_raw(width, height, rgb).ok_or_else(|| {
            crate::err!(BadInput, "an RGB frame of {width}x{height} needs {expected} bytes, got {got}")
        })?;
        crate::ensure!(BadInput, width > 0 && height > 0, "an empty frame ({width}x{height})");
        Ok(Self::from_rgb_image(image))
    }

    /// Decodes an encoded image in memory (PNG, JPEG, ... as [`crate::data::image_io`] reads),
    /// turned upright by its EXIF orientation; `shown` names it in errors.
    pub fn decode(bytes: &[u8], shown: &str) -> Result<Self> {
        Ok(Self::from_image(decode_image(bytes, shown)?))
    }

    /// Reads a photo in any format ferkit reads, turned upright as its EXIF orientation says,
    /// through the same decoder as image folders ([`crate::data::image_io::read_image`]).
    pub fn open(path: &Path) -> Result<Self> {
        Ok(Self::from_image(read_image(path)?))
    }

    /// Checks that `path` is an image of a known format, reading its header only: a cheap way to
    /// find a wrong path among many photos before the slow work starts.
    pub fn check(path: &Path) -> Result<(u32, u32)> {
        image_dimensions(path)
    }

    fn from_rgb_image(rgb: RgbImage) -> Self {
        let grey = GreyImage::from_rgb(rgb.width() as usize, rgb.height() as usize, rgb.as_raw());
        Self { rgb, grey }
    }

    pub fn width(&self) -> usize {
        self.grey.width
    }

    pub fn height(&self) -> usize {
        self.grey.height
    }
}
