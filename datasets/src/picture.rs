//! A picture file (PNG, JPEG, GIF, BMP, WebP) turned into one normalised 28x28 grey input,
//! so a program can classify a picture with a network trained on MNIST.

use std::fs;
use std::path::Path;

use image::imageops::{self, FilterType};

use crate::error::{DatasetError, Origin};
use crate::normalization::Normalization;

/// Side of the square input a picture is resized to, MNIST's 28 pixels.
pub const PICTURE_SIDE: usize = 28;

/// Whether a picture's grey levels are flipped (`x -> 1 - x`) before normalisation.
///
/// MNIST digits are white strokes on a black background; a digit written with a pen on
/// paper is the opposite and must be inverted to look like MNIST to a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Inversion {
    /// Keep the grey levels (the picture is already light on dark).
    Never,
    /// Always invert (the picture is dark on light).
    Always,
    /// Invert when the mean grey level of the resized picture's outermost ring of pixels is
    /// above one half, i.e. the background is light.
    #[default]
    Auto,
}

/// How [`load_picture`] and [`decode_picture`] prepare a picture.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PictureOptions {
    /// Whether to invert the grey levels (default: decide from the border).
    pub inversion: Inversion,
    /// The map applied after resizing and inversion (default: MNIST's).
    pub normalization: Normalization,
}

/// Reads the picture file at `path` and prepares it as [`decode_picture`] does.
///
/// # Errors
/// [`DatasetError::Io`] when the file cannot be read, otherwise as [`decode_picture`].
pub fn load_picture(
    path: impl AsRef<Path>,
    options: &PictureOptions,
) -> Result<Vec<f32>, DatasetError> {
    let path = path.as_ref();
    match fs::read(path) {
        Ok(bytes) => prepare(&bytes, Origin::file(path), options),
        Err(source) => Err(DatasetError::Io {
            file: Origin::file(path),
            source,
        }),
    }
}

/// Decodes an encoded picture (format recognised from its content) into one network input:
/// `PICTURE_SIDE * PICTURE_SIDE` floats, NCHW `[1, 1, 28, 28]`, row-major.
///
/// Steps: convert to grey (Rec. 709 luma of the stored values; an alpha channel is
/// ignored), stretch to 28x28 with a Lanczos (radius 3) filter whatever the aspect ratio,
/// clamp to [0, 1], invert per `options.inversion`, then apply `options.normalization`.
/// No cropping or centring is done: a digit should roughly fill a square picture.
///
/// # Errors
/// [`DatasetError::Picture`] when the bytes are not a picture in a supported format (or
/// exceed the decoder's memory limits), [`DatasetError::EmptyPicture`] when it has no pixel.
///
/// # Panics
/// As [`Normalization::affine`].
pub fn decode_picture(bytes: &[u8], options: &PictureOptions) -> Result<Vec<f32>, DatasetError> {
    prepare(bytes, Origin::memory(), options)
}

fn prepare(
    bytes: &[u8],
    origin: Origin,
    options: &PictureOptions,
) -> Result<Vec<f32>, DatasetError> {
    let (scale, offset) = options.normalization.affine();
    let picture = image::load_from_memory(bytes).map_err(|source| DatasetError::Picture {
        file: origin.clone(),
        source,
    })?;
    if picture.width() == 0 || picture.height() == 0 {
        return Err(DatasetError::EmptyPicture {
            file: origin,
            width: picture.width(),
            height: picture.height(),
        });
    }
    // NOTE: resizing floats rather than bytes keeps the filter's output unrounded.
    let side = PICTURE_SIDE as u32;
    let grey = imageops::resize(&picture.to_luma32f(), side, side, FilterType::Lanczos3);
    let mut levels: Vec<f32> = grey
        .into_raw()
        .into_iter()
        .map(|x| x.clamp(0.0, 1.0))
        .collect();

    let invert = match options.inversion {
        Inversion::Never => false,
        Inversion::Always => true,
        Inversion::Auto => border_mean(&levels) > 0.5,
    };
    if invert {
        levels.iter_mut().for_each(|x| *x = 1.0 - *x);
    }
    levels.iter_mut().for_each(|x| *x = *x * scale + offset);
    Ok(levels)
}

/// Mean of the outermost ring of a `PICTURE_SIDE x PICTURE_SIDE` row-major image.
fn border_mean(levels: &[f32]) -> f32 {
    let side = PICTURE_SIDE;
    let on_border = |i: usize| {
        let (row, col) = (i / side, i % side);
        row == 0 || col == 0 || row == side - 1 || col == side - 1
    };
    let (sum, count) = levels
        .iter()
        .enumerate()
        .filter(|&(i, _)| on_border(i))
        .fold((0.0f32, 0u32), |(sum, count), (_, &x)| (sum + x, count + 1));
    sum / count as f32
}
