//! The owner's photos page, with its upload form.

use askama::Template;

use crate::media::Size;
use crate::model::Post;
use crate::model::photo::MAX_PHOTOS;
use crate::render::{Chrome, Figure, render};

#[derive(Template)]
#[template(path = "photos.html")]
struct PhotosPage<'a> {
    chrome: Chrome,
    id: String,
    title: &'a str,
    gallery: Vec<Figure>,
    action: Option<&'a str>,
    free: usize,
    message: Option<&'a str>,
}

/// The owner's photos page of `p`: its photos, and (while it has room for
/// more) the upload form posting to `action`, whose token is the form's
/// only credential. `message` says why the last upload was refused.
pub fn photos_page(chrome: Chrome, p: &Post, action: &str, message: Option<&str>) -> String {
    let free = MAX_PHOTOS.saturating_sub(p.photos.len());
    render(&PhotosPage {
        id: p.id.to_string(),
        title: &p.fields.title,
        gallery: p
            .photos
            .iter()
            .map(|photo| Figure::of(p.id, photo, Size::Thumb, Size::Large))
            .collect(),
        action: (free > 0).then_some(action),
        free,
        message,
        chrome,
    })
}
