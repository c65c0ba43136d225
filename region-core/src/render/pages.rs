//! One view struct per page, each bound to its template, and the functions
//! the handlers call. Values are plain text here; the templates escape.

use askama::Template;
use chrono::{DateTime, Utc};

use super::{Card, Choice, Chrome, category_choices, category_label, render, rfc3339};
use crate::model::post::FieldError;
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

/// One invalid field, as a form shows it.
#[derive(Debug, Clone)]
pub struct ShownError {
    /// The field's name (and the id of its input).
    pub field: String,
    /// The field's label.
    pub label: String,
    /// What is wrong.
    pub problem: String,
}

fn shown(errors: &[FieldError], label: fn(&str) -> &'static str) -> Vec<ShownError> {
    errors
        .iter()
        .map(|e| ShownError {
            field: e.field.to_string(),
            label: label(e.field).to_string(),
            problem: e.problem.clone(),
        })
        .collect()
}

/// A post's fields as typed into the form (kept on a 422).
#[derive(Debug, Clone, Default)]
pub struct PostValues {
    /// Title.
    pub title: String,
    /// Category slug.
    pub category: String,
    /// Price as typed.
    pub price: String,
    /// Place.
    pub location: String,
    /// Description.
    pub description: String,
}

impl PostValues {
    /// The values of a stored post (the edit form).
    pub fn of(p: &Post) -> PostValues {
        PostValues {
            title: p.fields.title.clone(),
            category: p.fields.category.clone(),
            price: p.fields.price.map(|v| v.to_string()).unwrap_or_default(),
            location: p.fields.location.clone().unwrap_or_default(),
            description: p.fields.description.clone(),
        }
    }
}

fn post_field_label(field: &str) -> &'static str {
    match field {
        "title" => "Title",
        "category" => "Category",
        "price" => "Price",
        "location" => "Place",
        "description" => "Description",
        "image_count" => "Photos",
        _ => "Form",
    }
}

#[derive(Template)]
#[template(path = "post_form.html")]
struct PostFormPage<'a> {
    chrome: Chrome,
    heading: &'a str,
    action: String,
    submit: &'a str,
    csrf: &'a str,
    currency: &'static str,
    v: &'a PostValues,
    categories: Vec<Choice>,
    summary: &'a str,
    errors: Vec<ShownError>,
}

impl PostFormPage<'_> {
    fn error_of(&self, field: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|e| e.field == field)
            .map(|e| e.problem.as_str())
    }
}

/// The new-post form (`editing`: none) or the edit form of post
/// `editing`, with `values` and the `errors` of a previous try.
pub fn post_form(
    chrome: Chrome,
    editing: Option<&str>,
    csrf: &str,
    values: &PostValues,
    errors: &[FieldError],
) -> String {
    let (heading, action, submit) = match editing {
        None => ("New post", "/post".to_string(), "Publish"),
        Some(id) => ("Edit post", format!("/post/{id}/edit"), "Save changes"),
    };
    let current = (!values.category.is_empty()).then_some(values.category.as_str());
    render(&PostFormPage {
        currency: chrome.locale.currency,
        chrome,
        heading,
        action,
        submit,
        csrf,
        v: values,
        categories: category_choices(current),
        summary: "The post was not saved. Please correct these fields:",
        errors: shown(errors, post_field_label),
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
            }
        })
        .collect();
    render(&MyPage {
        chrome,
        csrf,
        posts,
    })
}

/// Sign-up or log-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountForm {
    /// `/signup`.
    SignUp,
    /// `/login`.
    LogIn,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage<'a> {
    chrome: Chrome,
    heading: &'static str,
    action: &'static str,
    csrf: &'a str,
    email: &'a str,
    password_autocomplete: &'static str,
    other_prompt: &'static str,
    other_href: &'static str,
    other_label: &'static str,
    summary: &'static str,
    errors: Vec<ShownError>,
}

impl AccountPage<'_> {
    fn error_of(&self, field: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|e| e.field == field)
            .map(|e| e.problem.as_str())
    }
}

fn account_field_label(field: &str) -> &'static str {
    match field {
        "email" => "E-mail",
        "password" => "Password",
        _ => "Form",
    }
}

/// The sign-up or log-in form with its CSRF token; `email` and `errors`
/// from a previous try (the password is never sent back).
pub fn account_form(
    chrome: Chrome,
    which: AccountForm,
    csrf: &str,
    email: &str,
    errors: &[FieldError],
) -> String {
    let page = match which {
        AccountForm::SignUp => AccountPage {
            chrome,
            heading: "Sign up",
            action: "/signup",
            csrf,
            email,
            password_autocomplete: "new-password",
            other_prompt: "Have an account?",
            other_href: "/login",
            other_label: "Log in",
            summary: "The account was not created. Please correct these fields:",
            errors: shown(errors, account_field_label),
        },
        AccountForm::LogIn => AccountPage {
            chrome,
            heading: "Log in",
            action: "/login",
            csrf,
            email,
            password_autocomplete: "current-password",
            other_prompt: "No account yet?",
            other_href: "/signup",
            other_label: "Sign up",
            summary: "Please correct these fields:",
            errors: shown(errors, account_field_label),
        },
    };
    render(&page)
}

#[derive(Template)]
#[template(path = "logout.html")]
struct LogoutPage<'a> {
    chrome: Chrome,
    csrf: Option<&'a str>,
}

/// The log-out page: one button that posts `POST /logout` with the
/// session's CSRF token (none: not logged in).
pub fn logout_page(chrome: Chrome, csrf: Option<&str>) -> String {
    render(&LogoutPage { chrome, csrf })
}

#[derive(Template)]
#[template(path = "report.html")]
struct ReportPage<'a> {
    chrome: Chrome,
    post_id: String,
    title: &'a str,
    csrf: &'a str,
}

/// The report form of one post, per visitor (it carries the CSRF token the
/// shared post page cannot).
pub fn report_form(chrome: Chrome, p: &Post, csrf: &str) -> String {
    render(&ReportPage {
        chrome,
        post_id: p.id.to_string(),
        title: &p.fields.title,
        csrf,
    })
}

#[derive(Template)]
#[template(path = "renew.html")]
struct RenewPage<'a> {
    chrome: Chrome,
    id: String,
    title: &'a str,
    state: &'static str,
    expires: String,
    csrf: &'a str,
}

/// The page a renewal reminder links to: the post's title and end of life,
/// and one button that posts the renewal with the session's CSRF token (a
/// link alone must not change anything: mail scanners follow links).
pub fn renew_form(chrome: Chrome, p: &Post, csrf: &str) -> String {
    let expires = chrome.locale.date_time(p.expires_at);
    render(&RenewPage {
        id: p.id.to_string(),
        title: &p.fields.title,
        state: if p.status == PostStatus::Expired {
            "Expired"
        } else {
            "Expires"
        },
        expires,
        csrf,
        chrome,
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
