//! Photos of posts: what an upload's bytes are (`sniff`), how they become
//! the stored sizes (`process`, run on the bounded `pool`), and where the
//! sizes are kept (`store`).
//!
//! Nothing a visitor uploads is kept as sent: every size is decoded and
//! re-encoded, so metadata (EXIF, GPS, comments, ICC profiles) and anything
//! hidden in the file's bytes are dropped, and what is served is always a
//! plain JPEG whatever the upload's type.

pub mod pool;
pub mod process;
pub mod sniff;
pub mod store;

pub use pool::Pool;
pub use process::{DecodeLimits, Rendition, Renditions};
pub use sniff::Kind;
pub use store::{Photos, Stored, orphans};

/// The sizes every photo is stored in. A photo smaller than a size is kept
/// at its own size (never upscaled: a blurry enlargement says nothing more).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Size {
    /// 300×300, cropped to a square around the centre: the listings'
    /// gallery.
    Thumb,
    /// Within 600×450: the post page's gallery.
    Medium,
    /// Within 1200×900: what the post page's photos link to.
    Large,
}

impl Size {
    /// Every size, largest first (the order `process` makes them in: each
    /// smaller size is made from the large one, which is far cheaper than
    /// from the original).
    pub const ALL: [Size; 3] = [Size::Large, Size::Medium, Size::Thumb];

    /// The name in object keys and `/media/` URLs.
    pub fn name(self) -> &'static str {
        match self {
            Size::Thumb => "300",
            Size::Medium => "600",
            Size::Large => "1200",
        }
    }

    /// The size a `/media/` URL names.
    pub fn from_name(name: &str) -> Option<Size> {
        Size::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The box the size must fit in.
    pub fn bounds(self) -> (u32, u32) {
        match self {
            Size::Thumb => (300, 300),
            Size::Medium => (600, 450),
            Size::Large => (1200, 900),
        }
    }

    /// The pixel size of this size of a photo whose large size is
    /// `large` (width, height): pages set `width` and `height` from it, and
    /// `process` resizes to exactly it, so the two never disagree.
    pub fn dimensions(self, large: (u32, u32)) -> (u32, u32) {
        match self {
            Size::Large => large,
            Size::Medium => fit(large, self.bounds()),
            Size::Thumb => {
                let side = large.0.min(large.1).min(self.bounds().0);
                (side, side)
            }
        }
    }
}

/// `(w, h)` scaled down, keeping its aspect ratio, to fit `bounds`; kept as
/// is when it fits already. Never 0 in either direction.
pub fn fit((w, h): (u32, u32), (bw, bh): (u32, u32)) -> (u32, u32) {
    if w <= bw && h <= bh {
        return (w, h);
    }
    let (w64, h64, bw64, bh64) = (u64::from(w), u64::from(h), u64::from(bw), u64::from(bh));
    // Wider than the box: the width is the bound, else the height is.
    let (nw, nh) = if w64 * bh64 >= h64 * bw64 {
        (bw64, (h64 * bw64 + w64 / 2) / w64)
    } else {
        ((w64 * bh64 + h64 / 2) / h64, bh64)
    };
    // Both are at most the bounds, which are u32.
    (
        u32::try_from(nw.max(1)).unwrap_or(bw),
        u32::try_from(nh.max(1)).unwrap_or(bh),
    )
}

/// Why an upload was refused or could not be kept. Every variant but
/// `Busy` and `Internal` is the uploader's: the file is not a photo we take.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The bytes are not a JPEG, PNG or WebP (whatever the file's name).
    #[error("{0} is not accepted: upload a JPEG, PNG or WebP photo")]
    UnsupportedType(&'static str),
    /// The file is empty, cut short or damaged.
    #[error("the photo is damaged or incomplete ({0})")]
    Corrupt(String),
    /// More pixels, or more memory to decode, than the limits allow.
    #[error("the photo is too large: {0}")]
    TooLarge(String),
    /// The processing pool was shut down (the process is stopping).
    #[error("photo processing is unavailable")]
    Busy,
    /// The object store or the encoder failed.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_fit_their_box_and_keep_the_aspect_ratio() {
        assert_eq!(fit((4000, 3000), (1200, 900)), (1200, 900));
        assert_eq!(fit((3000, 4000), (1200, 900)), (675, 900));
        assert_eq!(fit((5000, 1000), (1200, 900)), (1200, 240));
        assert_eq!(fit((10_000, 1), (600, 450)), (600, 1));
    }

    #[test]
    fn a_small_photo_is_never_upscaled() {
        assert_eq!(fit((640, 100), (1200, 900)), (640, 100));
        assert_eq!(Size::Medium.dimensions((640, 100)), (600, 94));
        assert_eq!(Size::Thumb.dimensions((640, 100)), (100, 100));
        assert_eq!(Size::Thumb.dimensions((1200, 900)), (300, 300));
    }

    #[test]
    fn size_names_round_trip() {
        for s in Size::ALL {
            assert_eq!(Size::from_name(s.name()), Some(s));
        }
        assert_eq!(Size::from_name("1201"), None);
    }
}
