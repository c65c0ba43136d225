//! Server-rendered HTML: askama templates (`region-core/templates/`),
//! compiled in and escaping everything they print, so a user's text can
//! only ever be text. The handlers build the view structs of `pages`; the
//! publisher calls `post_page` for the edge's KV pages.

pub mod assets;
mod forms;
mod pages;
mod photos;

pub use forms::*;
pub use pages::*;
pub use photos::*;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::locale::CityLocale;
use crate::media::Size;
use crate::model::post::CATEGORIES;
use crate::model::{Id, Photo, Post};

/// The one escaping function of both sides of the edge (the Worker's own
/// small pages use it; templates escape by themselves).
pub use cityboard_protocol::html::escape;

/// A hash of everything that makes the KV post page: its templates, the
/// stylesheet and the script (whose fingerprinted names it links). The
/// edge serves a KV page only if it was rendered with this version, and the
/// publisher republishes a city's pages when it changes.
pub const TEMPLATE_VERSION: u32 = assets::fnv1a(&[
    include_bytes!("../../templates/base.html"),
    include_bytes!("../../templates/post.html"),
    assets::SOURCES[0],
    assets::SOURCES[1],
    // The view code and the city's formats shape the page too.
    include_bytes!("../../templates/_gallery.html"),
    include_bytes!("pages.rs"),
    include_bytes!("mod.rs"),
    include_bytes!("../locale.rs"),
]);

/// The current template version (see `TEMPLATE_VERSION`).
pub fn template_version() -> u32 {
    TEMPLATE_VERSION
}

/// Who the page is for, as far as its header shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewer {
    /// No session: a "Log in" link.
    Anonymous,
    /// A session: a "Log out" link (to the page whose button posts the
    /// log-out with the CSRF token).
    LoggedIn,
    /// A page shared by every visitor (KV post page, cached listing): it
    /// cannot know, so it offers both.
    Shared,
}

/// What every page's layout shows: the city, the canonical URL, the way
/// to the city picker, and the account links.
#[derive(Debug, Clone)]
pub struct Chrome {
    /// The city's display name.
    pub city_name: String,
    /// `<link rel=canonical>`: absolute where the public host is known,
    /// else the path (resolved against the page's own URL).
    pub canonical: String,
    /// The apex's city picker (`{scheme}://{apex}{:port}/cities`), or
    /// `/cities` on a shared page, which the origin redirects there.
    pub cities_url: String,
    /// Which account links to show.
    pub viewer: Viewer,
    /// Prices and dates as the city writes them.
    pub locale: CityLocale,
}

impl Chrome {
    /// The layout of a page of `city`.
    pub fn new(city: &str, canonical: String, cities_url: String, viewer: Viewer) -> Chrome {
        let locale = crate::locale::city_locale(city);
        Chrome {
            city_name: locale.name.clone(),
            canonical,
            cities_url,
            viewer,
            locale,
        }
    }

    /// The layout of a page every visitor shares (no host known: relative
    /// links).
    pub fn shared(city: &str, path: &str) -> Chrome {
        Chrome::new(city, path.to_string(), "/cities".into(), Viewer::Shared)
    }

    /// The stylesheet's fingerprinted path.
    pub fn css(&self) -> String {
        assets::css_url()
    }

    /// The script's fingerprinted path.
    pub fn js(&self) -> String {
        assets::js_url()
    }

    /// Whether the header offers "Log in".
    pub fn show_login(&self) -> bool {
        self.viewer != Viewer::LoggedIn
    }

    /// Whether the header offers "Log out".
    pub fn show_logout(&self) -> bool {
        self.viewer != Viewer::Anonymous
    }

    /// A post as one line of a list.
    pub fn card(&self, p: &Post) -> Card {
        Card {
            id: p.id.to_string(),
            title: p.fields.title.clone(),
            price: match p.fields.price {
                Some(v) => self.locale.price(v),
                None => "No price".into(),
            },
            place: p.fields.location.clone().unwrap_or_default(),
            // Posted or last renewed: what the listing is ordered by.
            date: self.locale.date(p.listed_at),
            datetime: p.listed_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            // The listing's thumbnail: the first photo, linking to the post.
            thumb: p.photos.first().map(|photo| Figure {
                href: format!("/post/{}", p.id),
                ..Figure::of(p.id, photo, Size::Thumb, Size::Thumb)
            }),
        }
    }
}

/// One photo as a page shows it: an image of one size, linking to a larger
/// one. Every `<img>` gets its `width` and `height`
/// (`Photo::dimensions`), so nothing moves while the images load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Figure {
    /// The image shown.
    pub src: String,
    pub width: u32,
    pub height: u32,
    /// Where it links to.
    pub href: String,
}

impl Figure {
    /// `photo` of `post` shown at `size`, linking to its `link` size.
    pub fn of(post: Id, photo: &Photo, size: Size, link: Size) -> Figure {
        let (width, height) = photo.dimensions(size);
        Figure {
            src: photo.url(post, size),
            width,
            height,
            href: photo.url(post, link),
        }
    }
}

/// A post as lists and pages show it, formatted for its city.
#[derive(Debug, Clone)]
pub struct Card {
    /// Decimal id.
    pub id: String,
    /// As typed (escaped by the template).
    pub title: String,
    /// In the city's currency, or "No price".
    pub price: String,
    /// As typed; may be empty.
    pub place: String,
    /// The day it was posted or last renewed, in the city's zone.
    pub date: String,
    /// The same instant for `<time datetime>`.
    pub datetime: String,
    /// Its first photo at 300×300, if it has photos.
    pub thumb: Option<Figure>,
}

/// A category's display name: `for-sale` reads "For sale".
pub fn category_label(slug: &str) -> String {
    let text = slug.replace('-', " ");
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// One option of a category `<select>`.
#[derive(Debug, Clone)]
pub struct Choice {
    /// The value sent.
    pub slug: String,
    /// The text shown.
    pub label: String,
    /// Whether it is the current one.
    pub selected: bool,
}

/// The known categories as choices, `current` selected.
pub fn category_choices(current: Option<&str>) -> Vec<Choice> {
    CATEGORIES
        .iter()
        .map(|c| Choice {
            slug: c.to_string(),
            label: category_label(c),
            selected: current == Some(*c),
        })
        .collect()
}

/// RFC 3339 in UTC to the second (sitemaps, `<time datetime>`).
pub fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Renders a template; a failure (only a `Display` of ours could fail) is
/// logged and answered with a minimal page rather than a panic.
pub(crate) fn render(t: &impl askama::Template) -> String {
    t.render().unwrap_or_else(|e| {
        tracing::error!(error = %e, "rendering a template");
        "<!doctype html>\n<html lang=\"en\"><title>Error</title><p>This page could not be shown.</p></html>\n"
            .to_string()
    })
}

#[cfg(test)]
mod tests;
