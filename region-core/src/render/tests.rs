//! Every page escapes what users typed.

use super::*;
use crate::model::post::FieldError;
use crate::model::{Id, PostFields, PostStatus};

fn hostile() -> Post {
    let now = chrono::Utc::now();
    Post {
        city: "boston".into(),
        id: Id(5),
        user_id: Id(6),
        fields: PostFields {
            category: "for-sale".into(),
            title: "<script>x</script>".into(),
            description: "a\n<b>b</b>".into(),
            price: Some(3),
            location: Some("\"><img src=x onerror=alert(1)>".into()),
            image_count: 0,
        },
        status: PostStatus::Live,
        version: 1,
        created_at: now,
        updated_at: now,
        expires_at: now + chrono::Duration::days(3),
        listed_at: now,
        photos: Vec::new(),
    }
}

fn clean(html: &str) {
    assert!(!html.contains("<script>"), "{html}");
    assert!(!html.contains("<img"), "{html}");
    assert!(!html.contains("<b>"), "{html}");
    // A URL attribute never starts with user text.
    assert!(!html.contains("href=\"javascript:"), "{html}");
}

#[test]
fn html_and_quotes_are_escaped() {
    assert_eq!(
        escape("<script>alert('x')</script> & \""),
        "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;"
    );
}

#[test]
fn user_text_is_escaped_in_every_page() {
    let p = hostile();
    let chrome = || {
        Chrome::new(
            "boston",
            "/x".into(),
            "//cityboard.localhost/cities".into(),
            Viewer::LoggedIn,
        )
    };
    let values = PostValues {
        title: "\"><script>alert(1)</script>".into(),
        category: "\"><script>".into(),
        price: "javascript:alert(1)\"".into(),
        location: "<img src=x>".into(),
        description: "</textarea><script>x</script>".into(),
    };
    let errors = [FieldError {
        field: "price",
        problem: "<script>bad</script>".into(),
    }];
    let filters = ListFilters {
        search: "\"><script>".into(),
        category: "<b>".into(),
        ..ListFilters::default()
    };
    for html in [
        post_page(&p),
        list_page(
            "boston",
            &filters,
            std::slice::from_ref(&p),
            Some("/post?a=1&b=\"<"),
        ),
        home_page(chrome(), &[], std::slice::from_ref(&p)),
        post_form(chrome(), Some("5"), "tok\"<", "key\"<", &values, &errors),
        my_page(
            chrome(),
            "tok",
            std::slice::from_ref(&p),
            chrono::Utc::now(),
        ),
        report_form(chrome(), &p, "tok"),
        renew_form(chrome(), &p, "tok"),
        account_form(chrome(), AccountForm::SignUp, "t", "\"><script>", &[]),
        error_page(chrome(), "Oops", "<script>x</script>", None),
    ] {
        clean(&html);
        assert!(html.contains("IP Geolocation by DB-IP"), "{html}");
        assert!(html.contains("rel=\"canonical\""), "{html}");
        assert!(
            !html.contains("<style") && !html.contains(" style="),
            "{html}"
        );
        assert!(!html.contains("<script>"), "no inline script: {html}");
    }
    let form = post_form(chrome(), Some("5"), "tok", "key", &values, &errors);
    assert!(form.contains("class=\"field-error\""), "{form}");
    assert!(form.contains("role=\"alert\""), "{form}");
    assert!(form.contains("&#60;/textarea&#62;"), "{form}");
}

#[test]
fn the_post_page_shows_the_city_price_and_report_link() {
    let html = post_page(&hostile());
    assert!(html.contains("data-post-id=\"5\""), "{html}");
    assert!(html.contains("data-version=\"1\""), "{html}");
    assert!(html.contains("href=\"/post/5/report\""), "{html}");
    assert!(html.contains("class=\"price\">$3<"), "{html}");
    assert!(html.contains("href=\"/logout\""), "{html}");
    assert!(
        !html.contains("csrf"),
        "a shared page carries no token: {html}"
    );
}

#[test]
fn expiry_reads_in_whole_days_rounded_up() {
    let now = chrono::Utc::now();
    let h = chrono::Duration::hours;
    assert_eq!(expires_in(now + h(30), now), "expires in 2 days");
    assert_eq!(expires_in(now + h(24), now), "expires in 1 day");
    assert_eq!(expires_in(now + h(7 * 24), now), "expires in 7 days");
    assert_eq!(expires_in(now - h(1), now), "expired");
}

#[test]
fn template_version_is_stable_within_a_build() {
    assert_eq!(template_version(), TEMPLATE_VERSION);
    assert_ne!(TEMPLATE_VERSION, 0);
}
