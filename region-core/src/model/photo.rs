//! Photos as posts carry them: one row of `post_images` each. The bytes are
//! in the photo store (`media::Photos`), under the post and the photo's id.

use serde::{Deserialize, Serialize};

use crate::media::Size;
use crate::model::Id;

/// Most photos a post may have (`post_images.slot` is 0–9).
pub const MAX_PHOTOS: usize = 10;

/// One photo of a post: its id (new for each upload, so its objects are
/// never rewritten and `/media/` may answer `immutable`) and the pixel size
/// of its large size, from which every other size follows
/// (`Size::dimensions`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Photo {
    #[schema(value_type = String)]
    pub id: Id,
    pub width: u32,
    pub height: u32,
}

impl Photo {
    /// Where `size` of this photo of `post` is served.
    pub fn url(&self, post: Id, size: Size) -> String {
        format!("/media/{post}/{}/{}.jpg", self.id, size.name())
    }

    /// The pixel size of `size` of this photo, for `width`/`height`.
    pub fn dimensions(&self, size: Size) -> (u32, u32) {
        size.dimensions((self.width, self.height))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_sizes_follow_from_the_large_size() {
        let p = Photo {
            id: Id(9),
            width: 675,
            height: 900,
        };
        assert_eq!(p.url(Id(5), Size::Thumb), "/media/5/9/300.jpg");
        assert_eq!(p.dimensions(Size::Medium), (338, 450));
        assert_eq!(p.dimensions(Size::Thumb), (300, 300));
    }
}
