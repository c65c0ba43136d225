//! The type of an upload, from its bytes alone: the file's name and the
//! part's `Content-Type` are the uploader's say-so and are never read.

use crate::media::MediaError;

/// The types a photo may be uploaded as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Jpeg,
    Png,
    Webp,
}

impl Kind {
    /// The `image` crate's name for it (the decoder is chosen from this,
    /// never guessed again from the bytes).
    pub fn format(self) -> image::ImageFormat {
        match self {
            Kind::Jpeg => image::ImageFormat::Jpeg,
            Kind::Png => image::ImageFormat::Png,
            Kind::Webp => image::ImageFormat::WebP,
        }
    }
}

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// What `bytes` are, or why they are refused. A JPEG must also be whole:
/// the decoder is lenient and would turn a file cut short into a photo
/// with a grey lower half.
pub fn sniff(bytes: &[u8]) -> Result<Kind, MediaError> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return if jpeg_is_whole(bytes) {
            Ok(Kind::Jpeg)
        } else {
            Err(MediaError::Corrupt("the JPEG is cut short".into()))
        };
    }
    if bytes.starts_with(PNG_SIGNATURE) {
        return Ok(Kind::Png);
    }
    if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        return Ok(Kind::Webp);
    }
    Err(MediaError::UnsupportedType(refused_kind(bytes)))
}

/// A name for what a refused file looks like, for the uploader's message.
fn refused_kind(bytes: &[u8]) -> &'static str {
    if bytes.is_empty() {
        return "an empty file";
    }
    if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        return "a GIF";
    }
    // A byte-order mark and white space may come before the markup.
    let start = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let head: Vec<u8> = start
        .iter()
        .skip_while(|b| b.is_ascii_whitespace())
        .take(256)
        .map(u8::to_ascii_lowercase)
        .collect();
    let window = |needle: &[u8]| head.windows(needle.len()).any(|w| w == needle);
    if window(b"<svg") {
        return "an SVG";
    }
    if std::str::from_utf8(start).is_ok() {
        return "a text file";
    }
    "this file type"
}

/// Whether a JPEG's entropy-coded data is followed by its end marker
/// (`FF D9`). The headers up to the first scan are walked by their lengths,
/// so an end marker inside an embedded EXIF thumbnail does not count;
/// inside scan data an `FF` byte is always followed by `00` or a marker,
/// so a later `FF D9` is the real end (camera trailers may follow it).
fn jpeg_is_whole(bytes: &[u8]) -> bool {
    let mut at = 2;
    loop {
        let Some(&[0xFF, marker]) = bytes.get(at..at + 2) else {
            return false;
        };
        match marker {
            // Fill bytes before a marker.
            0xFF => at += 1,
            // Start of scan: its header, then the data.
            0xDA => break,
            // End of image before any scan: no picture in it.
            0xD9 => return false,
            // Markers without a length.
            0x01 | 0xD0..=0xD7 => at += 2,
            _ => {
                let Some(len) = bytes.get(at + 2..at + 4) else {
                    return false;
                };
                at += 2 + usize::from(u16::from_be_bytes([len[0], len[1]]));
            }
        }
    }
    bytes[at..].windows(2).any(|w| w == [0xFF, 0xD9])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_photo_types_are_told_from_their_bytes() {
        assert_eq!(
            sniff(b"\xFF\xD8\xFF\xDA\x00\x02\x12\x34\xFF\xD9").unwrap(),
            Kind::Jpeg
        );
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR").unwrap(), Kind::Png);
        assert_eq!(sniff(b"RIFF\x10\0\0\0WEBPVP8 ").unwrap(), Kind::Webp);
    }

    #[test]
    fn gif_svg_and_text_are_refused_whatever_their_name() {
        let refused = |bytes: &[u8]| match sniff(bytes) {
            Err(MediaError::UnsupportedType(what)) => what,
            other => panic!("{other:?}"),
        };
        assert_eq!(refused(b"GIF89a\x01\0\x01\0"), "a GIF");
        assert_eq!(
            refused(b"\xEF\xBB\xBF\n  <?xml version=\"1.0\"?>\n<SVG xmlns=\"http://www.w3.org/2000/svg\" onload=\"alert(1)\"/>"),
            "an SVG"
        );
        assert_eq!(
            refused(b"just some text, saved as photo.jpg\n"),
            "a text file"
        );
        assert_eq!(refused(b""), "an empty file");
        assert_eq!(refused(b"\0\x01\x02\x80\x81"), "this file type");
    }

    #[test]
    fn a_jpeg_without_its_end_marker_is_cut_short() {
        // The end marker of an EXIF thumbnail in the headers is not the end.
        let mut jpeg = b"\xFF\xD8\xFF\xE1\x00\x06\xFF\xD9\x00\x00".to_vec();
        jpeg.extend_from_slice(b"\xFF\xDA\x00\x02\x12\xFF\x00\x34");
        assert!(matches!(sniff(&jpeg), Err(MediaError::Corrupt(_))));
        jpeg.extend_from_slice(b"\xFF\xD9");
        assert_eq!(sniff(&jpeg).unwrap(), Kind::Jpeg);
        assert!(matches!(
            sniff(b"\xFF\xD8\xFF\xE0\x00"),
            Err(MediaError::Corrupt(_))
        ));
    }
}
