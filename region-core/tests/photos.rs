//! Photo uploads through the in-process api against the stack's writer: the
//! owner's photos page gives the form's action (with its upload token), the
//! upload stores the three sizes without any EXIF or GPS and adds them with
//! one command, and the post, its page and the listings show them. Every
//! bad upload (no token, a forged one, a text file named `.jpg`, a GIF, a
//! truncated JPEG, a decompression bomb, one photo too many, a file over
//! 10 MB) is refused with nothing stored.

mod common;
#[path = "common/posting.rs"]
mod posting;

use std::io::Cursor;
use std::path::Path;

use axum::body::Body;
use axum::http::Request;
use common::api::{Api, Reply, Setup};
use common::*;
use image::codecs::jpeg::JpegEncoder;
use image::{ImageEncoder, RgbImage};
use posting::*;

/// An api whose photos go to a directory of the test's own.
async fn api_with_photos() -> (Api, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start_with(Setup {
        photos_url: Some(dir.path().to_string_lossy().into_owned()),
        ..Setup::default()
    })
    .await;
    (api, dir)
}

/// Every file under `dir`.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                found.push(p);
            }
        }
    }
    found
}

/// A 800×600 JPEG carrying EXIF with a GPS position (40° 44′ 54″ N), as a
/// phone writes it.
fn jpeg_with_gps() -> Vec<u8> {
    let mut exif = b"MM\0\x2a\0\0\0\x08".to_vec();
    exif.extend_from_slice(&1u16.to_be_bytes());
    // GPSInfo, LONG, 1 value: the GPS IFD at 26.
    exif.extend_from_slice(&[0x88, 0x25, 0, 4, 0, 0, 0, 1, 0, 0, 0, 26]);
    exif.extend_from_slice(&0u32.to_be_bytes());
    // GPS IFD: GPSLatitudeRef "N", GPSLatitude 3 RATIONALs at 56.
    exif.extend_from_slice(&2u16.to_be_bytes());
    exif.extend_from_slice(&[0, 1, 0, 2, 0, 0, 0, 2, b'N', 0, 0, 0]);
    exif.extend_from_slice(&[0, 2, 0, 5, 0, 0, 0, 3, 0, 0, 0, 56]);
    exif.extend_from_slice(&0u32.to_be_bytes());
    for (num, den) in [(40u32, 1u32), (44, 1), (54, 1)] {
        exif.extend_from_slice(&num.to_be_bytes());
        exif.extend_from_slice(&den.to_be_bytes());
    }
    let pixels = RgbImage::from_fn(800, 600, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
    });
    let mut out = Vec::new();
    let mut encoder = JpegEncoder::new_with_quality(&mut out, 90);
    encoder.set_exif_metadata(exif).unwrap();
    encoder
        .write_image(pixels.as_raw(), 800, 600, image::ExtendedColorType::Rgb8)
        .unwrap();
    assert!(out.windows(4).any(|w| w == b"Exif"));
    out
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    image::DynamicImage::new_rgb8(w, h)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

/// A `multipart/form-data` body of `photo` parts: its content type and
/// bytes.
fn multipart(files: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "cityboard-test-boundary-7d1f";
    let mut body = Vec::new();
    for (name, bytes) in files {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"{name}\"\r\nContent-Type: image/jpeg\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// A poster: a bearer token, and the read-your-writes cookie of the
/// poster's last write (reads carry it, so a lagging replica is skipped).
struct Poster {
    token: String,
    ryw: String,
}

impl Poster {
    fn headers(&self) -> [(&'static str, String); 2] {
        [
            ("authorization", format!("Bearer {}", self.token)),
            ("cookie", format!("cb_ryw={}", self.ryw)),
        ]
    }

    /// Keeps the cookie of a write's answer, if it set one.
    fn wrote(&mut self, r: &Reply) {
        if let Some(c) = r.cookie("cb_ryw") {
            self.ryw = c;
        }
    }
}

/// A new post of a new user: its poster and the post's id.
async fn a_post(api: &Api, city: &str) -> (Poster, String) {
    let token = user(api, "photographer").await;
    let body = post_body(&unique_city("camera"));
    let r = write(api, city, &token, "POST", "/post", &body, &[]).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let ryw = r.cookie("cb_ryw").expect("read-your-writes cookie");
    let id = r.json()["post"].as_str().unwrap().to_string();
    (Poster { token, ryw }, id)
}

/// `path` read by `poster` (as JSON or HTML).
async fn read(api: &Api, city: &str, poster: &Poster, path: &str, accept: &str) -> Reply {
    let mut b = Request::get(path)
        .header("host", api.host(city))
        .header("accept", accept);
    for (k, v) in poster.headers() {
        b = b.header(k, v);
    }
    api.send(b.body(Body::empty()).unwrap()).await
}

/// The action of the upload form on the owner's photos page, if it has one.
async fn upload_action(api: &Api, city: &str, poster: &Poster, post: &str) -> Option<String> {
    let r = read(
        api,
        city,
        poster,
        &format!("/post/{post}/photos"),
        "text/html",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("enctype=\"multipart/form-data\"") || !r.body.contains("<form"));
    let start = r.body.find("action=\"/post/")? + "action=\"".len();
    let end = start + r.body[start..].find('"')?;
    Some(
        r.body[start..end]
            .replace("&amp;", "&")
            .replace("&#x2e;", "."),
    )
}

async fn upload(
    api: &Api,
    city: &str,
    action: &str,
    files: &[(&str, &[u8])],
    accept: &str,
) -> Reply {
    let (content_type, body) = multipart(files);
    api.send(
        Request::post(action)
            .header("host", api.host(city))
            .header("accept", accept)
            .header("content-type", content_type)
            .body(Body::from(body))
            .unwrap(),
    )
    .await
}

async fn get_bytes(api: &Api, city: &str, path: &str) -> (u16, axum::http::HeaderMap, Vec<u8>) {
    let req = api
        .signed(
            Request::get(path)
                .header("host", api.host(city))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    let res = tower::ServiceExt::oneshot(region_core::http::app(api.state.clone()), req)
        .await
        .unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, headers, bytes.to_vec())
}

#[tokio::test]
async fn photo_upload_stores_three_sizes_without_gps_and_the_post_shows_them() {
    let state = prepared().await;
    let city = city(&state);
    let (api, dir) = api_with_photos().await;
    let (mut poster, post) = a_post(&api, &city).await;
    let action = upload_action(&api, &city, &poster, &post)
        .await
        .expect("an upload form");

    let gps = jpeg_with_gps();
    let r = upload(
        &api,
        &city,
        &action,
        &[
            ("holiday.jpg", &gps),
            ("<script>alert(1)</script>.png", &png(400, 300)),
        ],
        "application/json",
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let photos = r.json()["photos"].as_array().unwrap().clone();
    assert_eq!(photos.len(), 2);
    assert_eq!(
        (photos[0]["width"].as_u64(), photos[0]["height"].as_u64()),
        (Some(800), Some(600))
    );
    assert_eq!(files(dir.path()).len(), 6, "three sizes of each");

    // Every size is a JPEG without EXIF (so without GPS), cached for good.
    for p in &photos {
        for size in ["thumb", "medium", "large"] {
            let (status, headers, bytes) = get_bytes(&api, &city, p[size].as_str().unwrap()).await;
            assert_eq!(status, 200, "{}", p[size]);
            assert_eq!(headers["content-type"], "image/jpeg");
            assert_eq!(
                headers["cache-control"],
                "public, max-age=31536000, immutable"
            );
            assert!(bytes.starts_with(&[0xFF, 0xD8, 0xFF]));
            assert!(
                !bytes.windows(4).any(|w| w == b"Exif"),
                "{} has EXIF",
                p[size]
            );
        }
    }
    let thumb = image::load_from_memory(
        &get_bytes(&api, &city, photos[0]["thumb"].as_str().unwrap())
            .await
            .2,
    )
    .unwrap();
    assert_eq!((thumb.width(), thumb.height()), (300, 300));

    // The count is the photos'; the post page shows them at 600×450.
    poster.wrote(&r);
    let json = read(
        &api,
        &city,
        &poster,
        &format!("/post/{post}"),
        "application/json",
    )
    .await;
    assert_eq!(json.json()["image_count"], 2, "{}", json.body);
    assert_eq!(
        json.json()["photos"],
        serde_json::Value::Array(photos.clone())
    );
    let page = read(&api, &city, &poster, &format!("/post/{post}"), "text/html").await;
    let medium = photos[0]["medium"].as_str().unwrap();
    assert!(
        page.body.contains(&format!(
            "<img src=\"{medium}\" width=\"600\" height=\"450\" loading=\"lazy\""
        )),
        "{}",
        page.body
    );
    assert!(page.body.contains(photos[0]["large"].as_str().unwrap()));
    // The file names went nowhere.
    assert!(!page.body.contains("<script>alert"));
    // The listing's card shows the 300×300 thumbnail.
    let list = read(&api, &city, &poster, "/post?has_image=true", "text/html").await;
    let thumb_url = photos[0]["thumb"].as_str().unwrap();
    assert!(
        list.body.contains(&format!(
            "<img src=\"{thumb_url}\" width=\"300\" height=\"300\" loading=\"lazy\""
        )),
        "{}",
        list.body
    );
}

#[tokio::test]
async fn photo_upload_without_a_valid_token_is_refused_and_stores_nothing() {
    let state = prepared().await;
    let city = city(&state);
    let (api, dir) = api_with_photos().await;
    let (poster, post) = a_post(&api, &city).await;
    let (_, other) = a_post(&api, &city).await;
    let action = upload_action(&api, &city, &poster, &post).await.unwrap();
    let photo = png(64, 64);

    let no_token = format!("/post/{post}/photos");
    // More slots than the page gave: the MAC no longer matches.
    let forged = action.replacen(".10.", ".11.", 1);
    assert_ne!(forged, action);
    // A token of one post does not open another.
    let elsewhere = action.replacen(&format!("/post/{post}/"), &format!("/post/{other}/"), 1);
    // Refused by the origin's trust check already: an upload is signed in
    // the unsigned-payload mode, which only a valid token for the path's
    // post on the signed city admits.
    for target in [no_token, forged, elsewhere] {
        let r = upload(
            &api,
            &city,
            &target,
            &[("a.png", &photo)],
            "application/json",
        )
        .await;
        r.problem(401);
    }
    // Another city's host: the token names the city it was made for.
    let other_city = state
        .region()
        .shards
        .iter()
        .flat_map(|s| s.cities.iter())
        .find(|c| **c != city)
        .expect("a second city")
        .clone();
    let r = upload(
        &api,
        &other_city,
        &action,
        &[("a.png", &photo)],
        "application/json",
    )
    .await;
    assert_eq!(r.status.as_u16(), 401, "{}", r.body);
    assert!(files(dir.path()).is_empty());
}

#[tokio::test]
async fn photo_bad_files_are_refused_with_a_message_and_nothing_stored() {
    let state = prepared().await;
    let city = city(&state);
    let (api, dir) = api_with_photos().await;
    let (poster, post) = a_post(&api, &city).await;
    let action = upload_action(&api, &city, &poster, &post).await.unwrap();

    let whole = jpeg_with_gps();
    let truncated = whole[..whole.len() / 2].to_vec();
    let mut bomb = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    bomb.extend_from_slice(&50_000u32.to_be_bytes());
    bomb.extend_from_slice(&50_000u32.to_be_bytes());
    bomb.extend_from_slice(&[8, 2, 0, 0, 0]);
    bomb.extend_from_slice(&crc32(&bomb[12..]).to_be_bytes());
    let text = b"I am not a photo, whatever my name says.\n".to_vec();
    let gif = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;".to_vec();
    for (name, bytes) in [
        ("notes.jpg", &text),
        ("cat.gif", &gif),
        ("cut.jpg", &truncated),
        ("bomb.png", &bomb),
    ] {
        // A good photo first: it is stored, then removed with the refusal.
        let r = upload(
            &api,
            &city,
            &action,
            &[("good.png", &png(32, 32)), (name, bytes)],
            "application/json",
        )
        .await;
        r.problem(422);
        assert!(files(dir.path()).is_empty(), "{name} left files");
        // A browser gets the photos page again, saying why.
        let page = upload(&api, &city, &action, &[(name, bytes)], "text/html").await;
        assert_eq!(page.status, 422, "{name}");
        assert!(page.body.contains("role=\"alert\""), "{}", page.body);
    }
    // Over 10 MB.
    let big = vec![0u8; 10 * 1024 * 1024 + 1];
    upload(
        &api,
        &city,
        &action,
        &[("big.jpg", &big)],
        "application/json",
    )
    .await
    .problem(413);
    assert!(files(dir.path()).is_empty());
    let json = read(
        &api,
        &city,
        &poster,
        &format!("/post/{post}"),
        "application/json",
    )
    .await;
    assert_eq!(json.json()["image_count"], 0);
}

#[tokio::test]
async fn photo_an_eleventh_is_refused_whole() {
    let state = prepared().await;
    let city = city(&state);
    let (api, dir) = api_with_photos().await;
    let (mut poster, post) = a_post(&api, &city).await;
    let first = upload_action(&api, &city, &poster, &post).await.unwrap();
    let small = png(20, 20);
    let nine: Vec<(&str, &[u8])> = (0..9).map(|_| ("p.png", small.as_slice())).collect();
    let r = upload(&api, &city, &first, &nine, "application/json").await;
    assert_eq!(r.status, 201, "{}", r.body);
    poster.wrote(&r);
    // The page now offers one more; two are refused, none kept.
    let second = upload_action(&api, &city, &poster, &post).await.unwrap();
    assert!(second.contains(".1."), "{second}");
    upload(
        &api,
        &city,
        &second,
        &[("a.png", &small), ("b.png", &small)],
        "application/json",
    )
    .await
    .problem(422);
    assert_eq!(files(dir.path()).len(), 27);
    // The first form's token still says 10 free: the command refuses the
    // eleventh and the photo goes.
    let r = upload(
        &api,
        &city,
        &first,
        &[("c.png", &small), ("d.png", &small)],
        "application/json",
    )
    .await;
    r.problem(422);
    assert_eq!(files(dir.path()).len(), 27);
    let r = upload(
        &api,
        &city,
        &second,
        &[("e.png", &small)],
        "application/json",
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    poster.wrote(&r);
    assert_eq!(
        upload_action(&api, &city, &poster, &post).await,
        None,
        "no form at 10"
    );
    let json = read(
        &api,
        &city,
        &poster,
        &format!("/post/{post}"),
        "application/json",
    )
    .await;
    assert_eq!(json.json()["image_count"], 10);
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = u32::MAX;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
