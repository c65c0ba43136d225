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

fn with_photos(n: i64) -> Post {
    let mut p = hostile();
    p.photos = (0..n)
        .map(|i| crate::model::Photo {
            id: Id(100 + i),
            width: 1200,
            height: 800,
        })
        .collect();
    p.fields.image_count = i16::try_from(n).unwrap();
    p
}

#[test]
fn the_post_page_shows_a_600_gallery_linking_to_1200() {
    let html = post_page(&with_photos(2));
    assert!(
        html.contains(
            "<li><a href=\"/media/5/100/1200.jpg\"><img src=\"/media/5/100/600.jpg\" \
             width=\"600\" height=\"400\" loading=\"lazy\" alt=\"Photo 1 of 2\"></a></li>"
        ),
        "{html}"
    );
    assert!(html.contains("/media/5/101/600.jpg"), "{html}");
    assert!(!post_page(&hostile()).contains("class=\"gallery\""));
}

#[test]
fn a_listing_card_shows_the_first_photo_as_a_300_thumbnail() {
    let html = list_page(
        "boston",
        &ListFilters::default(),
        &[with_photos(3), hostile()],
        None,
    );
    assert!(
        html.contains(
            "<a class=\"thumb\" href=\"/post/5\"><img src=\"/media/5/100/300.jpg\" \
             width=\"300\" height=\"300\" loading=\"lazy\" alt=\"\"></a>"
        ),
        "{html}"
    );
    assert_eq!(html.matches("class=\"thumb\"").count(), 1, "{html}");
}

#[test]
fn the_photos_page_posts_a_multipart_form_to_its_tokened_action_until_full() {
    let chrome = || Chrome::new("boston", "/x".into(), "/cities".into(), Viewer::LoggedIn);
    let action = "/post/5/photos?token=5.6.8.1800000900.00ff";
    let html = photos_page(
        chrome(),
        &with_photos(2),
        action,
        Some("<b>a GIF</b> is not accepted"),
    );
    assert!(
        html.contains(
            "<form method=\"post\" action=\"/post/5/photos?token=5.6.8.1800000900.00ff\" \
             enctype=\"multipart/form-data\">"
        ),
        "{html}"
    );
    assert!(html.contains("Add up to 8 more"), "{html}");
    assert!(html.contains("role=\"alert\""), "{html}");
    assert!(!html.contains("<b>a GIF"), "{html}");
    assert!(!html.contains("<script>x"), "{html}");
    let full = photos_page(chrome(), &with_photos(10), action, None);
    assert!(
        !full.contains("<form method=\"post\" action=\"/post/5/photos"),
        "{full}"
    );
    assert!(full.contains("the most a post can have"), "{full}");
}
