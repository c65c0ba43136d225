//! Server-rendered HTML. Everything a user typed goes through `escape`.

use crate::model::Post;

/// The one escaping function of both sides of the edge.
pub use cityboard_protocol::html::escape;

/// The post page (the one the publisher will pre-render for the edge).
pub fn post_page(p: &Post) -> String {
    let price = p
        .fields
        .price
        .map(|v| format!("<p class=\"price\">${v}</p>"))
        .unwrap_or_default();
    let location = p
        .fields
        .location
        .as_deref()
        .map(|l| format!("<p class=\"location\">{}</p>", escape(l)))
        .unwrap_or_default();
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · cityboard</title></head>\n<body><article data-post-id=\"{id}\" \
         data-version=\"{version}\"><h1>{title}</h1>{price}{location}\
         <p class=\"category\">{category}</p><div class=\"description\">{description}</div>\
         <p class=\"posted\">posted {created}</p></article></body></html>\n",
        title = escape(&p.fields.title),
        id = p.id,
        version = p.version,
        category = escape(&p.fields.category),
        description = escape(&p.fields.description).replace('\n', "<br>"),
        created = p.created_at.format("%Y-%m-%d %H:%M UTC"),
    )
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · cityboard</title></head>\n<body>{body}</body></html>\n",
        escape(title)
    )
}

/// A listing page: links to each post, and a plain "older posts" link that
/// works without JavaScript (infinite scroll builds on it).
pub fn list_page(city: &str, search: Option<&str>, posts: &[Post], next: Option<&str>) -> String {
    let mut body = format!(
        "<form method=\"get\" action=\"/post\"><input type=\"search\" name=\"search\" \
         value=\"{}\" maxlength=\"200\"><button>Search</button></form><ul class=\"posts\">",
        escape(search.unwrap_or(""))
    );
    for p in posts {
        let price = p
            .fields
            .price
            .map(|v| format!(" <span class=\"price\">${v}</span>"))
            .unwrap_or_default();
        body.push_str(&format!(
            "<li><a href=\"/post/{}\">{}</a>{price}</li>",
            p.id,
            escape(&p.fields.title)
        ));
    }
    body.push_str("</ul>");
    if posts.is_empty() {
        body.push_str("<p>No posts.</p>");
    }
    if let Some(next) = next {
        body.push_str(&format!(
            "<a rel=\"next\" href=\"{}\">Older posts</a>",
            escape(next)
        ));
    }
    page(&format!("{city} posts"), &body)
}

/// The log-in or sign-up form, carrying its CSRF token.
pub fn account_form(action: &str, heading: &str, csrf: &str) -> String {
    page(
        heading,
        &format!(
            "<h1>{}</h1><form method=\"post\" action=\"{}\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <label>E-mail <input type=\"email\" name=\"email\" required></label>\
             <label>Password <input type=\"password\" name=\"password\" minlength=\"8\" required></label>\
             <button>{}</button></form>",
            escape(heading),
            escape(action),
            escape(csrf),
            escape(heading)
        ),
    )
}

/// The page a renewal reminder links to: the post's title and end of
/// life, and one button that posts the renewal with the session's CSRF
/// token (a link alone must not change anything: mail scanners follow
/// links).
pub fn renew_form(p: &Post, csrf: &str) -> String {
    page(
        "Renew your post",
        &format!(
            "<h1>Renew your post</h1><p class=\"title\"><a href=\"/post/{id}\">{title}</a></p>\
             <p class=\"expires\">{state} {expires}</p>\
             <form method=\"post\" action=\"/post/{id}/renew\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <button>Renew for another 7 days</button></form>",
            id = p.id,
            title = escape(&p.fields.title),
            state = if p.status == crate::model::PostStatus::Expired {
                "expired"
            } else {
                "expires"
            },
            expires = p.expires_at.format("%Y-%m-%d %H:%M UTC"),
            csrf = escape(csrf),
        ),
    )
}

/// Asked of a visitor without a session (a reminder opened in another
/// browser, a session past its renewal): log in, then follow the link
/// again.
pub fn login_to_continue(what: &str) -> String {
    page(
        "Log in",
        &format!(
            "<h1>Log in to {}</h1><p><a href=\"/login\">Log in</a>, then open the link \
             from your e-mail again.</p>",
            escape(what)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_and_quotes_are_escaped() {
        assert_eq!(
            escape("<script>alert('x')</script> & \""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;"
        );
    }
}

#[cfg(test)]
mod page_tests {
    use super::*;
    use crate::model::{Id, PostFields, PostStatus};

    #[test]
    fn user_text_is_escaped_in_every_page() {
        let now = chrono::Utc::now();
        let p = Post {
            city: "boston".into(),
            id: Id(5),
            user_id: Id(6),
            fields: PostFields {
                category: "for-sale".into(),
                title: "<script>x</script>".into(),
                description: "a\n<b>b</b>".into(),
                price: Some(3),
                location: Some("\"><img src=x>".into()),
                image_count: 0,
            },
            status: PostStatus::Live,
            version: 1,
            created_at: now,
            updated_at: now,
            expires_at: now,
        };
        for html in [
            post_page(&p),
            list_page(
                "boston",
                Some("\"><script>"),
                std::slice::from_ref(&p),
                Some("/post?a=1&b=<"),
            ),
        ] {
            assert!(!html.contains("<script>"), "{html}");
            assert!(!html.contains("<img"), "{html}");
            assert!(!html.contains("<b>"), "{html}");
        }
    }
}
