mod common;

use axum::body::Body;
use axum::http::Request;
use common::api::{Api, Reply};
use common::*;
use region_core::auth::{Claims, SessionKey};

fn unique_email(prefix: &str) -> String {
    format!("{}@example.com", unique_city(prefix))
}

async fn signed_up(api: &Api, prefix: &str) -> (String, String) {
    let email = unique_email(prefix);
    let password = "correct horse battery".to_string();
    let r = api
        .post_json(
            "/signup",
            serde_json::json!({"email": email, "password": password}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    (email, password)
}

async fn logged_in(api: &Api, email: &str, password: &str) -> Reply {
    api.post_json(
        "/login",
        serde_json::json!({"email": email, "password": password}),
    )
    .await
}

async fn me(api: &Api, header: (&str, String)) -> Reply {
    api.send(
        Request::get("/me")
            .header(header.0, header.1)
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn sign_up_log_in_use_the_session_and_log_out() {
    prepared().await;
    let api = Api::start(false).await;
    let (email, password) = signed_up(&api, "alice").await;

    // Case does not matter at log-in.
    let login = logged_in(&api, &email.to_uppercase(), &password).await;
    assert_eq!(login.status, 200, "{}", login.body);
    let session = login.json();
    let token = session["access_token"].as_str().unwrap().to_string();
    let csrf = session["csrf_token"].as_str().unwrap().to_string();
    let cookie = login
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|c| c.starts_with("cb_session="))
        .unwrap();
    for attr in ["HttpOnly", "Secure", "SameSite=Lax"] {
        assert!(cookie.contains(attr), "{cookie}");
    }

    let whoami = me(&api, ("authorization", format!("Bearer {token}"))).await;
    assert_eq!(whoami.status, 200, "{}", whoami.body);
    assert_eq!(whoami.json()["user_id"], session["user_id"]);
    assert_eq!(
        me(&api, ("cookie", format!("cb_session={token}")))
            .await
            .status,
        200
    );

    let logout = api
        .send(
            Request::post("/logout")
                .header("cookie", format!("cb_session={token}"))
                .header("x-csrf-token", csrf)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(logout.status, 204, "{}", logout.body);
    assert_eq!(logout.cookie("cb_session").as_deref(), Some(""));

    // The same token, from either place, is refused from now on.
    me(&api, ("authorization", format!("Bearer {token}")))
        .await
        .problem(401);
    me(&api, ("cookie", format!("cb_session={token}")))
        .await
        .problem(401);

    // A second account with the same address (any case) is refused.
    api.post_json(
        "/signup",
        serde_json::json!({"email": email.to_uppercase(), "password": "another password"}),
    )
    .await
    .problem(409);
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_user_get_the_same_answer() {
    prepared().await;
    let api = Api::start(false).await;
    let (email, _) = signed_up(&api, "bob").await;
    let wrong = logged_in(&api, &email, "not the password").await;
    let unknown = logged_in(&api, &unique_email("nobody"), "not the password").await;
    assert_eq!(wrong.problem(401), unknown.problem(401));
    assert_eq!(wrong.body, unknown.body);
    assert!(wrong.cookie("cb_session").is_none());
}

#[tokio::test]
async fn forged_expired_and_malformed_tokens_are_refused() {
    prepared().await;
    let api = Api::start(false).await;
    let (email, password) = signed_up(&api, "carol").await;
    let session = logged_in(&api, &email, &password).await.json();
    let token = session["access_token"].as_str().unwrap();
    let user: region_core::model::Id = session["user_id"].as_str().unwrap().parse().unwrap();

    // Signed with another key.
    let other = SessionKey::new(b"an attacker's key, not the region's".to_vec());
    let (forged, _) = other.issue(user, chrono::Utc::now(), chrono::Duration::minutes(5));
    // Claims edited, signature kept.
    let (_, tag) = token.rsplit_once('.').unwrap();
    let ours = SessionKey::new(common::api::secrets().session);
    let longer = ours.sign(&Claims {
        sub: user,
        jti: "0".repeat(32),
        iat: 0,
        exp: i64::MAX / 2,
    });
    let (body, _) = longer.rsplit_once('.').unwrap();
    let edited = format!("{body}.{tag}");
    // Properly signed but expired.
    let now = chrono::Utc::now().timestamp();
    let expired = ours.sign(&Claims {
        sub: user,
        jti: "1".repeat(32),
        iat: now - 3600,
        exp: now - 60,
    });
    for bad in [forged, edited, expired, "garbage".into(), String::new()] {
        me(&api, ("authorization", format!("Bearer {bad}")))
            .await
            .problem(401);
    }
    // No token at all.
    api.send(Request::get("/me").body(Body::empty()).unwrap())
        .await
        .problem(401);
}

#[tokio::test]
async fn forms_without_their_csrf_token_are_refused() {
    prepared().await;
    let api = Api::start(false).await;
    let (email, password) = signed_up(&api, "dave").await;
    let form = serde_urlencoded::to_string([("email", &email), ("password", &password)]).unwrap();
    let post_form = |body: String, cookie: Option<String>| {
        let mut req =
            Request::post("/login").header("content-type", "application/x-www-form-urlencoded");
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        req.body(Body::from(body)).unwrap()
    };

    // No token, a token without its cookie, a cookie of our own making.
    api.send(post_form(form.clone(), None)).await.problem(403);
    let page = api
        .send(Request::get("/login").body(Body::empty()).unwrap())
        .await;
    assert_eq!(page.status, 200);
    let token = page.cookie("cb_csrf").unwrap();
    assert!(page.body.contains(&token), "the form carries the token");
    let with_field = format!("{form}&csrf={token}");
    api.send(post_form(with_field.clone(), None))
        .await
        .problem(403);
    api.send(post_form(
        "email=x%40y.z&password=12345678&csrf=00.AA".into(),
        Some("cb_csrf=00.AA".into()),
    ))
    .await
    .problem(403);

    // With both, the form logs in and is redirected.
    let ok = api
        .send(post_form(with_field, Some(format!("cb_csrf={token}"))))
        .await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    let session = ok.cookie("cb_session").unwrap();

    // Log-out from the cookie session needs the session's token.
    let logout = |body: &str| {
        Request::post("/logout")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", format!("cb_session={session}"))
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    api.send(logout("")).await.problem(403);
    api.send(logout("csrf=wrong")).await.problem(403);
    let csrf = me(&api, ("cookie", format!("cb_session={session}")))
        .await
        .json()["csrf_token"]
        .as_str()
        .unwrap()
        .to_string();
    let out = api.send(logout(&format!("csrf={csrf}"))).await;
    assert_eq!(out.status, 303, "{}", out.body);
}

#[tokio::test]
async fn bad_bodies_are_client_errors() {
    prepared().await;
    let api = Api::start(false).await;
    let send = |ct: &str, body: Vec<u8>| {
        Request::post("/signup")
            .header("content-type", ct.to_string())
            .body(Body::from(body))
            .unwrap()
    };
    api.send(send("application/json", b"{not json".to_vec()))
        .await
        .problem(400);
    api.send(send("text/plain", b"hello".to_vec()))
        .await
        .problem(415);
    api.send(send("application/json", vec![b' '; 1024 * 1024]))
        .await
        .problem(413);
    let missing = api
        .send(send("application/json", br#"{"email":"a@b.c"}"#.to_vec()))
        .await;
    missing.problem(422);
    let invalid = api
        .post_json(
            "/signup",
            serde_json::json!({"email": "nope", "password": "short"}),
        )
        .await;
    invalid.problem(422);
    let fields: Vec<_> = invalid.json()["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(fields, ["email", "password"]);
}

#[tokio::test]
async fn a_session_is_renewed_at_home_and_the_old_token_stops_working() {
    prepared().await;
    let api = Api::start(false).await;
    let (email, password) = signed_up(&api, "erin").await;
    let old = logged_in(&api, &email, &password).await.json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let renew = |token: String| {
        Request::post("/session/renew")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    let renewed = api.send(renew(old.clone())).await;
    assert_eq!(renewed.status, 200, "{}", renewed.body);
    let new = renewed.json()["access_token"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    assert_eq!(
        me(&api, ("authorization", format!("Bearer {new}")))
            .await
            .status,
        200
    );
    me(&api, ("authorization", format!("Bearer {old}")))
        .await
        .problem(401);
    api.send(renew(old)).await.problem(401);

    // A user of another region renews there, not here.
    let ours = SessionKey::new(common::api::secrets().session);
    let foreigner = region_core::model::Id::compose(1, api.state.region_number + 1, 0, 1);
    let (token, _) = ours.issue(foreigner, chrono::Utc::now(), chrono::Duration::minutes(5));
    let t = api.send(renew(token)).await.problem(421);
    assert!(t.ends_with("/not-home-region"), "{t}");
}
