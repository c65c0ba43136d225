//! Every photo here is made by the test itself.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::{ImageDecoder, ImageEncoder, ImageFormat, ImageReader, Rgb, RgbImage, Rgba, RgbaImage};

use super::*;

const RED: Rgb<u8> = Rgb([230, 20, 20]);
const BLUE: Rgb<u8> = Rgb([20, 20, 230]);

/// A `w`×`h` picture, its left half red and its right half blue.
fn halves(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, _| if x < w / 2 { RED } else { BLUE })
}

fn jpeg(pixels: &RgbImage, exif: Option<Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = JpegEncoder::new_with_quality(&mut out, 90);
    if let Some(exif) = exif {
        encoder.set_exif_metadata(exif).unwrap();
    }
    encoder
        .write_image(
            pixels.as_raw(),
            pixels.width(),
            pixels.height(),
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
    out
}

fn encoded(image: DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// A big-endian EXIF (TIFF) block as phones write it: orientation 6 (the
/// camera was turned a quarter clockwise) and a GPS position (40° 44′ 54″ N).
fn exif_rotated_with_gps() -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(b"MM\0\x2a\0\0\0\x08");
    // IFD0 at 8: two entries, then the next-IFD offset (none).
    t.extend_from_slice(&2u16.to_be_bytes());
    // Orientation, SHORT, 1 value: 6, left-aligned in the 4-byte field.
    t.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0]);
    // GPSInfo, LONG, 1 value: the GPS IFD's offset, 38.
    t.extend_from_slice(&[0x88, 0x25, 0, 4, 0, 0, 0, 1, 0, 0, 0, 38]);
    t.extend_from_slice(&0u32.to_be_bytes());
    assert_eq!(t.len(), 38);
    // GPS IFD at 38: GPSLatitudeRef "N", GPSLatitude 3 RATIONALs at 68.
    t.extend_from_slice(&2u16.to_be_bytes());
    t.extend_from_slice(&[0, 1, 0, 2, 0, 0, 0, 2, b'N', 0, 0, 0]);
    t.extend_from_slice(&[0, 2, 0, 5, 0, 0, 0, 3, 0, 0, 0, 68]);
    t.extend_from_slice(&0u32.to_be_bytes());
    assert_eq!(t.len(), 68);
    for (num, den) in [(40u32, 1u32), (44, 1), (54, 1)] {
        t.extend_from_slice(&num.to_be_bytes());
        t.extend_from_slice(&den.to_be_bytes());
    }
    t
}

/// The EXIF block of a JPEG, if it has one.
fn exif_of(jpeg: &[u8]) -> Option<Vec<u8>> {
    let mut decoder = ImageReader::with_format(Cursor::new(jpeg), ImageFormat::Jpeg)
        .into_decoder()
        .unwrap();
    decoder.exif_metadata().unwrap()
}

/// Whether the JPEG has an APP1 segment (EXIF or XMP) among its headers.
fn has_app1(jpeg: &[u8]) -> bool {
    let mut at = 2;
    while let Some(&[0xFF, marker, hi, lo]) = jpeg.get(at..at + 4) {
        if marker == 0xE1 {
            return true;
        }
        if marker == 0xDA {
            return false;
        }
        at += 2 + usize::from(u16::from_be_bytes([hi, lo]));
    }
    false
}

fn decoded(jpeg: &[u8]) -> RgbImage {
    image::load_from_memory_with_format(jpeg, ImageFormat::Jpeg)
        .unwrap()
        .to_rgb8()
}

fn near(a: Rgb<u8>, b: Rgb<u8>) -> bool {
    a.0.iter().zip(b.0).all(|(x, y)| x.abs_diff(y) < 40)
}

#[test]
fn gps_and_every_other_exif_field_are_gone_from_every_size() {
    let upload = jpeg(&halves(640, 320), Some(exif_rotated_with_gps()));
    let exif = exif_of(&upload).expect("the upload carries EXIF");
    assert!(exif.windows(2).any(|w| w == [0x88, 0x25]), "with a GPS IFD");

    let photo = process(&upload, &DecodeLimits::default()).unwrap();
    assert_eq!(photo.sizes.len(), 3);
    for r in &photo.sizes {
        assert_eq!(exif_of(&r.jpeg), None, "{:?} has EXIF", r.size);
        assert!(!has_app1(&r.jpeg), "{:?} has an APP1 segment", r.size);
        assert!(!r.jpeg.windows(4).any(|w| w == b"Exif"), "{:?}", r.size);
    }
}

#[test]
fn the_exif_orientation_is_applied_before_the_sizes_are_made() {
    // Stored sideways, as a phone held upright writes it: orientation 6
    // turns it a quarter clockwise, so its left (red) half ends on top.
    let upload = jpeg(&halves(640, 320), Some(exif_rotated_with_gps()));
    let photo = process(&upload, &DecodeLimits::default()).unwrap();
    let large = &photo.sizes[0];
    assert_eq!(
        (large.size, large.width, large.height),
        (Size::Large, 320, 640)
    );
    let pixels = decoded(&large.jpeg);
    assert_eq!(pixels.dimensions(), (320, 640));
    assert!(
        near(*pixels.get_pixel(160, 10), RED),
        "{:?}",
        pixels.get_pixel(160, 10)
    );
    assert!(
        near(*pixels.get_pixel(160, 630), BLUE),
        "{:?}",
        pixels.get_pixel(160, 630)
    );
}

#[test]
fn a_large_photo_gets_the_three_sizes_with_a_square_thumbnail() {
    let upload = jpeg(&halves(2400, 1600), None);
    let photo = process(&upload, &DecodeLimits::default()).unwrap();
    assert_eq!(photo.kind, Kind::Jpeg);
    let dims: Vec<_> = photo
        .sizes
        .iter()
        .map(|r| (r.size, r.width, r.height))
        .collect();
    assert_eq!(
        dims,
        [
            (Size::Large, 1200, 800),
            (Size::Medium, 600, 400),
            (Size::Thumb, 300, 300)
        ]
    );
    for r in &photo.sizes {
        let pixels = decoded(&r.jpeg);
        assert_eq!(pixels.dimensions(), (r.width, r.height), "{:?}", r.size);
        assert_eq!(Size::dimensions(r.size, photo.large()), (r.width, r.height));
    }
    // The thumbnail is the centre: red left, blue right, both kept.
    let thumb = decoded(&photo.sizes[2].jpeg);
    assert!(near(*thumb.get_pixel(5, 150), RED));
    assert!(near(*thumb.get_pixel(294, 150), BLUE));
}

#[test]
fn a_small_photo_is_never_upscaled() {
    let upload = encoded(DynamicImage::ImageRgb8(halves(200, 120)), ImageFormat::Png);
    let photo = process(&upload, &DecodeLimits::default()).unwrap();
    assert_eq!(photo.kind, Kind::Png);
    let dims: Vec<_> = photo.sizes.iter().map(|r| (r.width, r.height)).collect();
    assert_eq!(dims, [(200, 120), (200, 120), (120, 120)]);
}

#[test]
fn transparent_parts_become_white_and_webp_is_accepted() {
    let clear = RgbaImage::from_pixel(40, 40, Rgba([0, 0, 0, 0]));
    let upload = encoded(DynamicImage::ImageRgba8(clear), ImageFormat::WebP);
    let photo = process(&upload, &DecodeLimits::default()).unwrap();
    assert_eq!(photo.kind, Kind::Webp);
    let pixels = decoded(&photo.sizes[0].jpeg);
    assert!(near(*pixels.get_pixel(20, 20), Rgb([255, 255, 255])));
}

#[test]
fn a_truncated_jpeg_is_refused() {
    let whole = jpeg(&halves(400, 300), None);
    let cut = &whole[..whole.len() / 2];
    assert!(matches!(
        process(cut, &DecodeLimits::default()),
        Err(MediaError::Corrupt(_))
    ));
}

#[test]
fn a_text_file_named_jpg_is_refused() {
    let text = b"<html><script>alert(1)</script></html>\n";
    assert!(matches!(
        process(text, &DecodeLimits::default()),
        Err(MediaError::UnsupportedType("a text file"))
    ));
}

/// A PNG whose header claims `w`×`h` pixels, followed by a token of data:
/// 127 bytes that would decode to gigabytes.
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    // 8-bit RGB, deflate, no filter method, not interlaced.
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut png, b"IHDR", &ihdr);
    // An empty zlib stream: no row would ever decode.
    chunk(
        &mut png,
        b"IDAT",
        &[0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    chunk(&mut png, b"IEND", &[]);
    png
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = u32::MAX;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn a_decompression_bomb_is_refused_by_its_header() {
    let bomb = png_claiming(50_000, 50_000);
    let started = std::time::Instant::now();
    let refused = process(&bomb, &DecodeLimits::default());
    assert!(
        matches!(refused, Err(MediaError::TooLarge(_))),
        "{refused:?}"
    );
    // Refused from the header, not after allocating 7.5 GB and inflating.
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
}

#[test]
fn the_memory_limit_holds_where_the_side_limit_would_not() {
    // Within any side and pixel limit, but over 16 MiB decoded.
    let limits = DecodeLimits {
        max_side: 65_535,
        max_pixels: u64::MAX,
        max_alloc: 16 * 1024 * 1024,
    };
    let refused = process(&png_claiming(4_000, 3_000), &limits);
    assert!(
        matches!(refused, Err(MediaError::TooLarge(_))),
        "{refused:?}"
    );
    // And the pixel limit, with memory to spare.
    let limits = DecodeLimits {
        max_pixels: 1_000_000,
        ..DecodeLimits::default()
    };
    let refused = process(&png_claiming(2_000, 1_000), &limits);
    assert!(
        matches!(refused, Err(MediaError::TooLarge(_))),
        "{refused:?}"
    );
}
