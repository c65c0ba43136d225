//! The site as a browser sees it, in process against the stack: every page
//! renders with the layout, user text is escaped on each, a form that fails
//! validation comes back with its values, and errors are pages with their
//! status (the JSON api keeps its problem documents).

mod common;

use axum::body::Body;
use axum::http::Request;
use common::api::{Api, Reply};
use common::*;

const BROWSER: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
const FORM: &str = "application/x-www-form-urlencoded";

/// A served city of the stack's first region (its writer applies the
/// commands).
fn city(state: &State) -> String {
    state.region().shards[0].cities[0].clone()
}

/// A logged-in browser: its session cookie and the session's CSRF token.
struct Visitor {
    cookie: String,
    csrf: String,
    token: String,
}

async fn visitor(api: &Api, prefix: &str) -> Visitor {
    let email = format!("{}@example.com", unique_city(prefix));
    let body = serde_json::json!({"email": email, "password": "correct horse battery"});
    let r = api.post_json("/signup", body.clone()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = api.post_json("/login", body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let s = r.json();
    let token = s["access_token"].as_str().unwrap().to_string();
    Visitor {
        cookie: format!("cb_session={token}"),
        csrf: s["csrf_token"].as_str().unwrap().to_string(),
        token,
    }
}

/// A browser's GET, with `cookie` if any.
async fn page(api: &Api, city: &str, path: &str, cookie: Option<&str>) -> Reply {
    let mut b = Request::get(path)
        .header("host", api.host(city))
        .header("accept", BROWSER);
    if let Some(c) = cookie {
        b = b.header("cookie", c);
    }
    api.send(b.body(Body::empty()).unwrap()).await
}

/// A browser's form post.
async fn submit(api: &Api, city: &str, path: &str, cookie: &str, form: &[(&str, &str)]) -> Reply {
    let body = serde_urlencoded::to_string(form).unwrap();
    api.send(
        Request::post(path)
            .header("host", api.host(city))
            .header("accept", BROWSER)
            .header("cookie", cookie)
            .header("content-type", FORM)
            .body(Body::from(body))
            .unwrap(),
    )
    .await
}

/// Creates a post through the api (JSON, bearer) and returns its id and
/// the read-your-writes cookie.
async fn create(api: &Api, city: &str, v: &Visitor, fields: serde_json::Value) -> (String, String) {
    let r = api
        .send(
            Request::post("/post")
                .header("host", api.host(city))
                .header("authorization", format!("Bearer {}", v.token))
                .header("content-type", "application/json")
                .body(Body::from(fields.to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.headers["location"]
        .to_str()
        .unwrap()
        .trim_start_matches("/post/")
        .to_string();
    (id, format!("cb_ryw={}", r.cookie("cb_ryw").unwrap()))
}

/// What every page has: the layout's header and footer, the canonical
/// link, the fingerprinted stylesheet and script, no inline script or
/// style.
fn assert_layout(r: &Reply, what: &str) {
    assert_eq!(r.status, 200, "{what}: {}", r.body);
    let ct = r.headers["content-type"].to_str().unwrap();
    assert!(ct.starts_with("text/html"), "{what}: {ct}");
    let b = &r.body;
    for part in [
        "<header",
        "<main",
        "<footer",
        "<a href='https://db-ip.com'>IP Geolocation by DB-IP</a>",
        "rel=\"canonical\"",
        "id=\"change-city\"",
        "href=\"/post/new\"",
        "href=\"/my\"",
        "<link rel=\"stylesheet\" href=\"/static/site.",
        "<script src=\"/static/site.",
    ] {
        assert!(b.contains(part), "{what} lacks {part}: {b}");
    }
    assert!(
        !b.contains("<script>") && !b.contains("<style") && !b.contains(" style="),
        "{what} has inline script or style: {b}"
    );
}

/// An error page: the status, an HTML body with an alert.
fn assert_error_page(r: &Reply, status: u16, what: &str) {
    assert_eq!(r.status.as_u16(), status, "{what}: {}", r.body);
    let ct = r.headers["content-type"].to_str().unwrap();
    assert!(ct.starts_with("text/html"), "{what}: {ct} {}", r.body);
    assert!(r.body.contains("role=\"alert\""), "{what}: {}", r.body);
    assert!(r.body.contains("<h1>"), "{what}: {}", r.body);
}

/// The value of the first `name="csrf"` field of a page.
fn csrf_of(body: &str) -> String {
    body.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a CSRF field")
        .to_string()
}

/// No element, event handler or `javascript:` URL came from user text.
fn assert_inert(body: &str, what: &str) {
    for bad in [
        "<script>",
        "<img",
        "<b>",
        "onerror=\"",
        "href=\"javascript:",
        "\"><svg",
    ] {
        assert!(!body.contains(bad), "{what} contains {bad}: {body}");
    }
}

#[tokio::test]
async fn every_page_renders_with_the_layout() {
    let state = prepared().await;
    let city = city(&state);
    let api = Api::start(false).await;
    let alice = visitor(&api, "pages-alice").await;
    let (id, ryw) = create(
        &api,
        &city,
        &alice,
        serde_json::json!({"category": "for-sale", "title": "Red kayak", "price": 1200,
                           "location": "Harbour", "description": "Two paddles."}),
    )
    .await;
    let with_ryw = format!("{}; {ryw}", alice.cookie);

    let anonymous = [
        "/",
        "/post",
        "/post?category=for-sale&min_price=&max_price=&search=&sort=newest&cursor=",
        "/signup",
        "/login",
        "/logout",
        &format!("/post/{id}/report"),
    ];
    for path in anonymous {
        assert_layout(&page(&api, &city, path, Some(&ryw)).await, path);
    }
    let post = page(&api, &city, &format!("/post/{id}"), Some(&ryw)).await;
    assert_layout(&post, "post page");
    assert!(post.body.contains(&format!("data-post-id=\"{id}\"")));
    assert!(post.body.contains(&format!("href=\"/post/{id}/report\"")));
    assert!(post.body.contains("Red kayak") && post.body.contains("class=\"price\""));
    assert!(!post.body.contains("csrf"), "the shared page has no token");

    let home = page(&api, &city, "/", None).await;
    assert!(home.body.contains("role=\"search\""), "{}", home.body);
    let count = home
        .body
        .split("href=\"/post?category=for-sale\">For sale <span class=\"count\">(")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|n| n.parse::<i64>().ok())
        .expect("a count for the category");
    assert!(count >= 1, "{}", home.body);
    assert!(home.body.contains("href=\"/post?category=for-sale\""));
    assert!(home.body.contains("href=\"/login\""), "anonymous: Log in");

    for path in [
        "/post/new".to_string(),
        format!("/post/{id}/edit"),
        "/my".to_string(),
        format!("/post/{id}/report"),
        "/logout".to_string(),
        "/".to_string(),
    ] {
        let r = page(&api, &city, &path, Some(&with_ryw)).await;
        assert_layout(&r, &path);
        assert!(r.body.contains("href=\"/logout\""), "{path}: Log out");
    }
    let home = page(&api, &city, "/", Some(&alice.cookie)).await;
    assert_eq!(home.headers["cache-control"], "private, no-store");
    let my = page(&api, &city, "/my", Some(&alice.cookie)).await;
    assert!(
        my.body.contains(&format!("data-post-id=\"{id}\"")),
        "{}",
        my.body
    );
    assert!(my.body.contains("expires in 7 days"), "{}", my.body);
    assert!(my.body.contains(&format!("action=\"/post/{id}/renew\"")));
    assert!(my.body.contains(&format!("action=\"/post/{id}/delete\"")));
    assert_eq!(my.headers["cache-control"], "private, no-store");
    let logout = page(&api, &city, "/logout", Some(&alice.cookie)).await;
    assert!(logout.body.contains("action=\"/logout\""));
    assert_eq!(csrf_of(&logout.body), alice.csrf);

    let sitemap = page(&api, &city, "/sitemap.xml", None).await;
    assert_eq!(sitemap.status, 200);
    assert!(
        sitemap
            .body
            .contains(&format!("<loc>http://{}/post/{id}</loc>", api.host(&city))),
        "{}",
        sitemap.body
    );
}

#[tokio::test]
async fn user_text_is_escaped_on_every_page() {
    let state = prepared().await;
    let city = city(&state);
    let api = Api::start(false).await;
    let mallory = visitor(&api, "pages-xss").await;
    let payload = "\"><script>alert(1)</script><img src=x onerror=alert(2)>";
    let (id, ryw) = create(
        &api,
        &city,
        &mallory,
        serde_json::json!({"category": "for-sale", "title": format!("t{payload}"),
                           "price": 5, "location": format!("javascript:alert(3){payload}"),
                           "description": format!("<b>d</b>{payload}\"><svg onload=x>")}),
    )
    .await;
    let cookie = format!("{}; {ryw}", mallory.cookie);
    let search = format!(
        "/post?search={}",
        serde_urlencoded::to_string([("q", payload)])
            .unwrap()
            .trim_start_matches("q=")
    );
    for path in [
        "/".to_string(),
        "/post".to_string(),
        search,
        format!("/post/{id}"),
        format!("/post/{id}/edit"),
        format!("/post/{id}/report"),
        "/my".to_string(),
    ] {
        let r = page(&api, &city, &path, Some(&cookie)).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert_inert(&r.body, &path);
    }
    let post = page(&api, &city, &format!("/post/{id}"), Some(&ryw)).await;
    assert!(
        post.body
            .contains("&#60;script&#62;alert(1)&#60;/script&#62;")
    );
}

#[tokio::test]
async fn a_form_that_fails_validation_comes_back_with_its_values() {
    let state = prepared().await;
    let city = city(&state);
    let api = Api::start(false).await;
    let bob = visitor(&api, "pages-bob").await;
    let form = page(&api, &city, "/post/new", Some(&bob.cookie)).await;
    assert_layout(&form, "new post");
    assert!(form.body.contains("id=\"post-form\""));
    let csrf = csrf_of(&form.body);

    let r = submit(
        &api,
        &city,
        "/post",
        &bob.cookie,
        &[
            ("csrf", csrf.as_str()),
            ("title", ""),
            ("category", "weapons"),
            ("price", "-5\"><script>"),
            ("location", "\"><script>x</script>"),
            ("description", "kept </textarea><script>y</script>"),
        ],
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(r.body.contains("role=\"alert\""), "{}", r.body);
    for field in ["title", "category", "price"] {
        assert!(
            r.body.contains(&format!("id=\"{field}-error\"")),
            "{field}: {}",
            r.body
        );
    }
    assert!(r.body.matches("class=\"field-error\"").count() >= 3);
    assert!(
        r.body.contains("value=\"-5&#34;&#62;&#60;script&#62;\""),
        "{}",
        r.body
    );
    assert!(r.body.contains("kept &#60;/textarea&#62;"), "{}", r.body);
    assert_inert(&r.body, "422 page");

    // An empty price is no price, not an error.
    let r = submit(
        &api,
        &city,
        "/post",
        &bob.cookie,
        &[
            ("csrf", csrf.as_str()),
            ("title", "Free chairs"),
            ("category", "free"),
            ("price", ""),
            ("location", ""),
            ("description", ""),
        ],
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(
        r.headers["location"]
            .to_str()
            .unwrap()
            .starts_with("/post/")
    );

    // The JSON api still answers problems.
    let r = api
        .send(
            Request::post("/post")
                .header("host", api.host(&city))
                .header("authorization", format!("Bearer {}", bob.token))
                .header("content-type", "application/json")
                .body(Body::from(r#"{"category":"free","title":""}"#))
                .unwrap(),
        )
        .await;
    r.problem(422);
}

#[tokio::test]
async fn errors_reach_browsers_as_pages_with_their_status() {
    let state = prepared().await;
    let city = city(&state);
    let api = Api::start(false).await;
    let owner = visitor(&api, "pages-owner").await;
    let other = visitor(&api, "pages-other").await;
    let (id, ryw) = create(
        &api,
        &city,
        &owner,
        serde_json::json!({"category": "jobs", "title": "Cook wanted"}),
    )
    .await;

    // No CSRF token: 403 page; nothing written.
    let r = submit(
        &api,
        &city,
        "/post",
        &owner.cookie,
        &[("title", "x"), ("category", "free")],
    )
    .await;
    assert_error_page(&r, 403, "missing CSRF");
    // Not logged in.
    assert_error_page(
        &page(&api, &city, "/my", None).await,
        401,
        "my posts, anonymous",
    );
    // Someone else's post: its edit page and its form edit and delete.
    let other_cookie = format!("{}; {ryw}", other.cookie);
    let edit = format!("/post/{id}/edit");
    assert_error_page(
        &page(&api, &city, &edit, Some(&other_cookie)).await,
        403,
        "edit page",
    );
    let r = submit(
        &api,
        &city,
        &edit,
        &other.cookie,
        &[
            ("csrf", other.csrf.as_str()),
            ("title", "Mine now"),
            ("category", "jobs"),
        ],
    )
    .await;
    assert_error_page(&r, 403, "someone else's edit");
    let delete = format!("/post/{id}/delete");
    let r = submit(
        &api,
        &city,
        &delete,
        &other.cookie,
        &[("csrf", other.csrf.as_str())],
    )
    .await;
    assert_error_page(&r, 403, "someone else's delete");
    // An early renewal from "My posts": refused with the date it opens.
    let my = page(&api, &city, "/my", Some(&owner.cookie)).await;
    assert!(my.body.contains("renewable from"), "{}", my.body);
    let r = submit(
        &api,
        &city,
        &format!("/post/{id}/renew"),
        &owner.cookie,
        &[("csrf", owner.csrf.as_str())],
    )
    .await;
    assert_error_page(&r, 409, "early renewal");
    assert!(r.body.contains("allowed from"), "{}", r.body);
    assert!(
        r.body.contains(" time)"),
        "the date in the city's zone: {}",
        r.body
    );
    // Unknown post and route.
    assert_error_page(
        &page(&api, &city, "/post/1/edit", Some(&owner.cookie)).await,
        404,
        "no post",
    );
    let missing = page(&api, &city, "/no/such/page", None).await;
    assert_error_page(&missing, 404, "no route");
    let name = region_core::locale::city_locale(&city).name;
    assert!(
        missing
            .body
            .contains(&format!("<a class=\"city\" href=\"/\">{name}</a>")),
        "the error page is the city's: {}",
        missing.body
    );
    // The same to a script stays a problem document.
    api.get(&city, "/no/such/page", "application/json")
        .await
        .problem(404);

    // The owner edits by form, then deletes: to the post, then to /my; the
    // edit page of the deleted post is a 404 page.
    let r = submit(
        &api,
        &city,
        &edit,
        &owner.cookie,
        &[
            ("csrf", owner.csrf.as_str()),
            ("title", "Cook wanted, evenings"),
            ("category", "jobs"),
            ("price", ""),
        ],
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.headers["location"], format!("/post/{id}").as_str());
    let ryw = format!("cb_ryw={}", r.cookie("cb_ryw").unwrap());
    let shown = page(&api, &city, &format!("/post/{id}"), Some(&ryw)).await;
    assert!(
        shown.body.contains("Cook wanted, evenings"),
        "{}",
        shown.body
    );
    let r = submit(
        &api,
        &city,
        &delete,
        &owner.cookie,
        &[("csrf", owner.csrf.as_str())],
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.headers["location"], "/my");
    let ryw = format!("cb_ryw={}", r.cookie("cb_ryw").unwrap());
    let gone = page(
        &api,
        &city,
        &edit,
        Some(&format!("{}; {ryw}", owner.cookie)),
    )
    .await;
    assert_error_page(&gone, 404, "edit page of a deleted post");
}

#[tokio::test]
async fn static_assets_are_served_immutable_under_their_fingerprint() {
    let state = prepared().await;
    let city = city(&state);
    let api = Api::start(false).await;
    let home = page(&api, &city, "/", None).await;
    for (attr, kind) in [
        ("<link rel=\"stylesheet\" href=\"", "text/css"),
        ("<script src=\"", "text/javascript"),
    ] {
        let url = home
            .body
            .split(attr)
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap()
            .to_string();
        let r = page(&api, &city, &url, None).await;
        assert_eq!(r.status, 200, "{url}");
        assert!(
            r.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind),
            "{url}"
        );
        assert_eq!(
            r.headers["cache-control"],
            "public, max-age=31536000, immutable"
        );
        assert!(!r.body.is_empty());
    }
    let r = page(&api, &city, "/static/site.css", None).await;
    assert_eq!(r.status, 404, "an unfingerprinted name is not served");
    let r = page(&api, &city, "/static/..%2Fsecrets", None).await;
    assert_eq!(r.status, 404);
}
