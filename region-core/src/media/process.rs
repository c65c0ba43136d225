//! From an upload's bytes to the stored sizes: decoded within limits, turned
//! upright by its EXIF orientation, resized and re-encoded as JPEG. Blocking
//! and CPU-bound: run it on the `Pool`, never on the async runtime.

use std::io::Cursor;

use image::imageops::FilterType;
use image::{DynamicImage, ImageDecoder, ImageError, ImageReader, RgbImage};

use crate::media::sniff::{Kind, sniff};
use crate::media::{MediaError, Size};

/// The JPEG quality of every size: past ~85 files grow fast for little a
/// visitor sees; below ~75 blocks show on flat colours.
pub const JPEG_QUALITY: u8 = 82;

/// What an upload may cost to decode. A 10 MB file can claim to be
/// 50 000 × 50 000 pixels (7.5 GB decoded): the header is read first, and
/// a photo over these limits is refused before any pixel is allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Widest and tallest side, in pixels.
    pub max_side: u32,
    /// Most pixels (width × height).
    pub max_pixels: u64,
    /// Most bytes the decoded image may take, counting the copy that a
    /// rotation makes.
    pub max_alloc: u64,
}

impl Default for DecodeLimits {
    /// Room for the largest phone cameras (48–50 MP sensors bin to 12 MP;
    /// their full-resolution mode makes 8000 × 6000 = 48 MP), and 256 MiB
    /// of decoded pixels, so that the pool's workers together stay well
    /// within a small region host's memory.
    fn default() -> Self {
        DecodeLimits {
            max_side: 16_384,
            max_pixels: 50_000_000,
            max_alloc: 256 * 1024 * 1024,
        }
    }
}

/// One stored size of a photo: a JPEG and its pixel size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendition {
    pub size: Size,
    pub width: u32,
    pub height: u32,
    pub jpeg: Vec<u8>,
}

/// Every size of one photo, largest first, and the type it was uploaded as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renditions {
    pub kind: Kind,
    pub sizes: Vec<Rendition>,
}

impl Renditions {
    /// The large size's pixel size (the others follow from it:
    /// `Size::dimensions`).
    pub fn large(&self) -> (u32, u32) {
        self.sizes
            .iter()
            .find(|r| r.size == Size::Large)
            .map_or((0, 0), |r| (r.width, r.height))
    }
}

/// The sizes of the photo in `bytes`, or why it is refused.
pub fn process(bytes: &[u8], limits: &DecodeLimits) -> Result<Renditions, MediaError> {
    let kind = sniff(bytes)?;
    let image = decode(bytes, kind, limits)?;
    let large_dims = fit_large(&image);
    // Each smaller size from the large one: resampling the original once
    // is most of the work.
    let large = resize(&image, large_dims);
    drop(image);
    let mut sizes = Vec::with_capacity(Size::ALL.len());
    for size in Size::ALL {
        let (width, height) = size.dimensions(large_dims);
        let pixels = match size {
            Size::Large => flatten(&large),
            Size::Medium => flatten(&resize(&large, (width, height))),
            Size::Thumb => {
                let (w, h) = large_dims;
                let side = w.min(h);
                let square = large.crop_imm((w - side) / 2, (h - side) / 2, side, side);
                flatten(&resize(&square, (width, height)))
            }
        };
        sizes.push(Rendition {
            size,
            width,
            height,
            jpeg: encode(&pixels)?,
        });
    }
    Ok(Renditions { kind, sizes })
}

fn fit_large(image: &DynamicImage) -> (u32, u32) {
    crate::media::fit((image.width(), image.height()), Size::Large.bounds())
}

/// Decodes `bytes` as `kind` within `limits`, upright.
fn decode(bytes: &[u8], kind: Kind, limits: &DecodeLimits) -> Result<DynamicImage, MediaError> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), kind.format());
    let mut decoder_limits = image::Limits::default();
    decoder_limits.max_image_width = Some(limits.max_side);
    decoder_limits.max_image_height = Some(limits.max_side);
    decoder_limits.max_alloc = Some(limits.max_alloc);
    reader.limits(decoder_limits);
    let mut decoder = reader.into_decoder().map_err(refused)?;
    let (width, height) = decoder.dimensions();
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels {
        return Err(MediaError::TooLarge(format!(
            "{width} × {height} pixels, at most {} million allowed",
            limits.max_pixels / 1_000_000
        )));
    }
    // A missing or malformed orientation is no reason to refuse a photo.
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let copies = if orientation == image::metadata::Orientation::NoTransforms {
        1
    } else {
        2
    };
    if decoder.total_bytes().saturating_mul(copies) > limits.max_alloc {
        return Err(MediaError::TooLarge(format!(
            "{width} × {height} pixels need more memory than allowed"
        )));
    }
    let mut image = DynamicImage::from_decoder(decoder).map_err(refused)?;
    image.apply_orientation(orientation);
    Ok(image)
}

/// The uploader's side of a decoding error.
fn refused(e: ImageError) -> MediaError {
    match e {
        ImageError::Limits(l) => MediaError::TooLarge(l.to_string()),
        ImageError::Unsupported(u) => MediaError::Corrupt(u.to_string()),
        other => MediaError::Corrupt(other.to_string()),
    }
}

/// `image` resampled to exactly `dims` (returned as is when it has them).
fn resize(image: &DynamicImage, dims: (u32, u32)) -> DynamicImage {
    if (image.width(), image.height()) == dims {
        return image.clone();
    }
    image.resize_exact(dims.0, dims.1, FilterType::CatmullRom)
}

/// 8-bit RGB, transparent parts on white (JPEG has no alpha; a transparent
/// PNG would otherwise show its hidden colours, often black).
fn flatten(image: &DynamicImage) -> RgbImage {
    if !image.color().has_alpha() {
        return image.to_rgb8();
    }
    let rgba = image.to_rgba8();
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        let over_white = |c: u8| {
            let (c, a) = (u32::from(c), u32::from(a));
            // (c·a + 255·(255 − a)) / 255, rounded; at most 255.
            u8::try_from((c * a + 255 * (255 - a) + 127) / 255).unwrap_or(u8::MAX)
        };
        image::Rgb([over_white(r), over_white(g), over_white(b)])
    })
}

/// Baseline JPEG with nothing but the pixels: the encoder writes no EXIF,
/// so orientation, GPS and camera data are gone.
fn encode(pixels: &RgbImage) -> Result<Vec<u8>, MediaError> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY)
        .encode_image(pixels)
        .map_err(|e| MediaError::Internal(anyhow::anyhow!("encoding a JPEG: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests;
