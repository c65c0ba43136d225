//! One view struct per page that shows posts or a message, each bound to
//! its template, and the functions the handlers call. Values are plain
//! text here; the templates escape.

use askama::Template;
use chrono::{DateTime, Utc};

use super::{Card, Choice, Chrome, Figure, category_choices, category_label, render, rfc3339};
use crate::media::Size;
use crate::model::{Post, PostStatus};

#[derive(Template)]
#[template(path = "post.html")]
struct PostPage {
    chrome: Chrome,
    card: Card,
    version: i64,
    category: String,
    category_label: String,
    description: String,
    gallery: Vec<Figure>,
}

/// The post page, the one the publisher writes to the edge's KV: the same
/// for every visitor, so it carries no session, no CSRF token, no host.
pub fn post_page(p: &Post) -> String {
    let chrome = Chrome::shared(&p.city, &format!("/post/{}", p.id));
    render(&PostPage {
        card: chrome.card(p),
        chrome,
        version: p.version,
        category: p.fields.category.clone(),
        category_label: category_label(&p.fields.category),
        description: p.fields.description.clone(),
        // 600×450, each linking to its 1200×900.
        gallery: p
            .photos
            .iter()
            .map(|photo| Figure::of(p.id, photo, Size::Medium, Size::Large))
            .collect(),
    })
}

/// A category of the city home, with its number of live posts.
#[derive(Debug, Clone)]
pub struct CategoryCount {
    /// The category.
    pub slug: String,
    /// Its display name.
    pub label: String,
    /// Live posts in it.
    pub count: i64,
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    chrome: Chrome,
    categories: Vec<CategoryCount>,
    cards: Vec<Card>,
}

/// The city home: a search box, every category with its count of live
/// posts (`counts`, by slug; missing ones are zero), the newest posts.
pub fn home_page(chrome: Chrome, counts: &[(String, i64)], newest: &[Post]) -> String {
    let categories = crate::model::post::CATEGORIES
        .iter()
        .map(|c| CategoryCount {
            slug: c.to_string(),
            label: category_label(c),
            count: counts.iter().find(|(s, _)| s == c).map_or(0, |(_, n)| *n),
        })
        .collect();
    let cards = newest.iter().map(|p| chrome.card(p)).collect();
    render(&HomePage {
        chrome,
        categories,
        cards,
    })
}

/// The filters of a listing as the form shows them (text as typed).
#[derive(Debug, Clone, Default)]
pub struct ListFilters {
    /// Full-text search.
    pub search: String,
    /// A category slug, or empty for all.
    pub category: String,
    /// Lowest price, or empty.
    pub min_price: String,
    /// Highest price, or empty.
    pub max_price: String,
    /// Search titles only.
    pub titles_only: bool,
    /// Posted today (in the city's zone).
    pub today: bool,
    /// `newest`, `price_asc` or `price_desc`.
    pub sort: String,
}

#[derive(Template)]
#[template(path = "list.html")]
struct ListPage<'a> {
    chrome: Chrome,
    heading: String,
    f: &'a ListFilters,
    categories: Vec<Choice>,
    sorts: Vec<Choice>,
    cards: Vec<Card>,
    next: Option<&'a str>,
}

/// A listing page: the filter form, the posts as a feed, and a plain "Load
/// more" link (`rel=next`) that works without JavaScript; the script turns
/// it into infinite scroll. Shared by every visitor (it is cached).
pub fn list_page(city: &str, f: &ListFilters, posts: &[Post], next: Option<&str>) -> String {
    let chrome = Chrome::shared(city, "/post");
    let sort = if f.sort.is_empty() { "newest" } else { &f.sort };
    let sorts = [
        ("newest", "Newest first"),
        ("price_asc", "Price: low to high"),
        ("price_desc", "Price: high to low"),
    ]
    .iter()
    .map(|(slug, label)| Choice {
        slug: slug.to_string(),
        label: label.to_string(),
        selected: *slug == sort,
    })
    .collect();
    let heading = match f.category.as_str() {
        "" => format!("Posts in {}", chrome.city_name),
        c => format!("{} in {}", category_label(c), chrome.city_name),
    };
    render(&ListPage {
        heading,
        categories: category_choices(Some(f.category.as_str())),
        sorts,
        cards: posts.iter().map(|p| chrome.card(p)).collect(),
        chrome,
        f,
        next,
    })
}

/// One of the user's posts on "My posts".
#[derive(Debug, Clone)]
pub struct MyPost {
    /// As lists show it.
    pub card: Card,
    /// Live, expired, hidden.
    pub status: &'static str,
    /// "expires in N days", "expired".
    pub expires: String,
    /// Whether its page can be opened.
    pub live: bool,
    /// When renewal opens, while it is not open yet (48 h after posting
    /// or the last renewal), in the city's zone.
    pub renewable_from: Option<String>,
}

#[derive(Template)]
#[template(path = "my.html")]
struct MyPage<'a> {
    chrome: Chrome,
    csrf: &'a str,
    posts: Vec<MyPost>,
}

/// "expires in N days" (whole days, rounded up, so a post with 30 hours
/// left says 2), or "expired".
pub fn expires_in(expires_at: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (expires_at - now).num_seconds();
    if secs <= 0 {
        return "expired".into();
    }
    let days = (secs + 86_399) / 86_400;
    if days == 1 {
        "expires in 1 day".into()
    } else {
        format!("expires in {days} days")
    }
}

/// The user's posts of this city with their controls (renew, edit,
/// delete; each form with the session's CSRF token).
pub fn my_page(chrome: Chrome, csrf: &str, posts: &[Post], now: DateTime<Utc>) -> String {
    let posts = posts
        .iter()
        .map(|p| {
            let live = p.status == PostStatus::Live && p.expires_at > now;
            MyPost {
                card: chrome.card(p),
                status: match p.status {
                    PostStatus::Live if live => "Live",
                    PostStatus::Live | PostStatus::Expired => "Expired",
                    PostStatus::Hidden => "Hidden after reports",
                    PostStatus::Deleted => "Deleted",
                },
                expires: expires_in(p.expires_at, now),
                live,
                renewable_from: Some(crate::model::post::renew_allowed_from(p))
                    .filter(|at| *at > now)
                    .map(|at| chrome.locale.date_time(at)),
            }
        })
        .collect();
    render(&MyPage {
        chrome,
        csrf,
        posts,
    })
}

/// A link under a message.
#[derive(Debug, Clone)]
pub struct Link {
    /// Where.
    pub href: String,
    /// The text.
    pub label: String,
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage<'a> {
    chrome: Chrome,
    heading: &'a str,
    message: &'a str,
    alert: bool,
    link: Option<Link>,
}

/// An error page: the status as heading, the message in an alert, and
/// where to go next.
pub fn error_page(chrome: Chrome, heading: &str, message: &str, link: Option<Link>) -> String {
    render(&MessagePage {
        chrome,
        heading,
        message,
        alert: true,
        link,
    })
}

/// Asked of a visitor without a session (a reminder opened in another
/// browser, a session past its renewal): log in, then follow the link
/// again.
pub fn login_to_continue(chrome: Chrome, what: &str) -> String {
    render(&MessagePage {
        chrome,
        heading: "Log in",
        message: &format!("Log in to {what}, then open the link from your e-mail again."),
        alert: false,
        link: Some(Link {
            href: "/login".into(),
            label: "Log in".into(),
        }),
    })
}

/// One `<url>` of a sitemap.
#[derive(Debug, Clone)]
pub struct SitemapUrl {
    /// Absolute URL.
    pub loc: String,
    /// Last change, RFC 3339.
    pub lastmod: String,
}

#[derive(Template)]
#[template(path = "sitemap.xml")]
struct Sitemap {
    urls: Vec<SitemapUrl>,
}

/// The sitemap of a city: `origin` (`scheme://host`) and each post's page.
pub fn sitemap(origin: &str, posts: &[(crate::model::Id, DateTime<Utc>)]) -> String {
    render(&Sitemap {
        urls: posts
            .iter()
            .map(|(id, at)| SitemapUrl {
                loc: format!("{origin}/post/{id}"),
                lastmod: rfc3339(*at),
            })
            .collect(),
    })
}
