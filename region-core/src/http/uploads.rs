//! What the layers in front of the upload handler (`http::photos::upload`)
//! need to know about it: which requests are uploads, their size limits
//! and their query. Apart from `photos`, so that the edge check and the
//! request timeout need not import the handlers.

use serde::Deserialize;

use crate::auth::upload::UploadKey;
use crate::model::photo::MAX_PHOTOS;

/// The most one photo may weigh.
pub const PHOTO_LIMIT: usize = 10 * 1024 * 1024;

/// The most an upload request may carry: ten photos and the multipart
/// framing around them. Each photo is held to `PHOTO_LIMIT` on its own.
pub const UPLOAD_LIMIT: usize = MAX_PHOTOS * PHOTO_LIMIT + 64 * 1024;

/// How long an upload may take (the api's request timeout, meant for
/// queries, would cut off a phone sending ten photos).
pub const UPLOAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Whether `req` is a photo upload (`POST /post/{id}/photos`).
pub fn is_upload<B>(req: &axum::http::Request<B>) -> bool {
    req.method() == axum::http::Method::POST
        && req
            .uri()
            .path()
            .strip_prefix("/post/")
            .and_then(|rest| rest.strip_suffix("/photos"))
            .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether `req` is an upload whose token opens for the city it names and
/// names the post of its path:
/// the one request the edge check accepts in the unsigned-payload mode
/// (`edge_trust`), whose body it then streams to the handler unread. The
/// city header is not verified yet when this is asked, but the signature
/// checked next covers it, and the path and query that carry the token.
pub fn carries_upload_token<B>(
    uploads: &UploadKey,
    now: i64,
    req: &axum::http::Request<B>,
) -> bool {
    if !is_upload(req) {
        return false;
    }
    let Some(city) = req
        .headers()
        .get(cityboard_protocol::sign::CITY_HEADER)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let post = req
        .uri()
        .path()
        .strip_prefix("/post/")
        .and_then(|rest| rest.strip_suffix("/photos"))
        .and_then(|id| id.parse::<i64>().ok());
    req.uri()
        .query()
        .and_then(|q| serde_urlencoded::from_str::<UploadQuery>(q).ok())
        .and_then(|q| uploads.open(city, &q.token, now))
        .is_some_and(|u| Some(u.post.0) == post)
}

/// The upload's query: the token of the form's action.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// The upload token of the photos page's form (15 minutes).
    #[param(pattern = "^[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9a-f]{32}$")]
    pub token: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, uri: &str, city: &str) -> axum::http::Request<()> {
        axum::http::Request::builder()
            .method(method)
            .uri(uri)
            .header(cityboard_protocol::sign::CITY_HEADER, city)
            .body(())
            .unwrap()
    }

    #[test]
    fn only_a_post_to_a_post_s_photos_is_an_upload() {
        assert!(is_upload(&request("POST", "/post/12/photos?token=x", "")));
        assert!(!is_upload(&request("GET", "/post/12/photos", "")));
        assert!(!is_upload(&request("POST", "/post/12", "")));
        assert!(!is_upload(&request("POST", "/post//photos", "")));
        assert!(!is_upload(&request("POST", "/post/1/2/photos", "")));
    }

    #[test]
    fn only_an_upload_with_a_token_for_its_city_carries_one() {
        let key = UploadKey::new(b"upload key".to_vec());
        let now = 1_800_000_000;
        let token = key.issue("boston", crate::model::Id(12), crate::model::Id(3), 10, now);
        let uri = format!("/post/12/photos?token={token}");
        let carries = |method: &str, uri: &str, city: &str| {
            carries_upload_token(&key, now, &request(method, uri, city))
        };
        assert!(carries("POST", &uri, "boston"));
        assert!(!carries("POST", &uri, "chicago"));
        assert!(!carries("PUT", &uri, "boston"));
        assert!(!carries(
            "POST",
            &format!("/post/13/photos?token={token}"),
            "boston"
        ));
        assert!(!carries(
            "POST",
            "/post/12/photos?token=1.2.3.4.00",
            "boston"
        ));
        assert!(!carries("POST", "/post/12/photos", "boston"));
        assert!(!carries("POST", &format!("/post?token={token}"), "boston"));
        // Expired (15 minutes).
        assert!(!carries_upload_token(
            &key,
            now + 16 * 60,
            &request("POST", &uri, "boston")
        ));
    }
}
