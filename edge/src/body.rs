//! Reading a request body once, with a size limit enforced while reading,
//! so that a chunked upload over the limit is refused after `limit` bytes
//! instead of filling the isolate's 128 MB first; and the one route whose
//! body is not read at all but streamed to the origin ([`streamed`]).

use js_sys::{Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::ReadableStreamDefaultReader;

use crate::error::EdgeError;
use crate::incoming::Incoming;

/// Limit of forwarded bodies: the api's own body limit (region-core
/// `BODY_LIMIT`), so an over-limit body is refused here without an origin
/// call. Photo uploads are the exception ([`streamed`]).
pub const FORWARD_LIMIT: usize = 64 * 1024;

/// Whether the request is a photo upload (`POST /post/{id}/photos`, the
/// token in its query; region-core `http::uploads::is_upload`): its body
/// (up to ten photos of 10 MB) is streamed to the origin unread and signed
/// in the unsigned-payload mode, since hashing it would mean holding it
/// whole in the isolate. The origin accepts that mode on this route alone
/// and only with a valid upload token, and caps the parts itself.
pub fn streamed(method: &str, path: &str) -> bool {
    method == "POST"
        && path
            .strip_prefix("/post/")
            .and_then(|rest| rest.strip_suffix("/photos"))
            .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
}

/// The whole body (empty when there is none), or 413 past `limit` bytes.
pub async fn read(req: &Incoming, limit: usize) -> Result<Vec<u8>, EdgeError> {
    let too_large = || EdgeError::PayloadTooLarge { limit };
    if let Some(declared) = req.header("content-length")
        && declared
            .trim()
            .parse::<u64>()
            .map_or(true, |n| n > limit as u64)
    {
        return Err(too_large());
    }
    let Some(stream) = req.raw.body() else {
        return Ok(Vec::new());
    };
    let reader: ReadableStreamDefaultReader = stream.get_reader().unchecked_into();
    let mut out = Vec::new();
    loop {
        let chunk = JsFuture::from(reader.read())
            .await
            .map_err(|_| EdgeError::BadRequest("the request body could not be read"))?;
        let done = Reflect::get(&chunk, &JsValue::from_str("done"))
            .ok()
            .and_then(|d| d.as_bool())
            .unwrap_or(true);
        if done {
            break;
        }
        let value = Reflect::get(&chunk, &JsValue::from_str("value")).map_err(EdgeError::js)?;
        let bytes = value
            .dyn_into::<Uint8Array>()
            .map_err(|_| EdgeError::BadRequest("body chunk is not bytes"))?;
        if out.len() + bytes.length() as usize > limit {
            let _ = reader.cancel();
            return Err(too_large());
        }
        let start = out.len();
        out.resize(start + bytes.length() as usize, 0);
        bytes.copy_to(&mut out[start..]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::streamed;

    #[test]
    fn only_a_post_to_a_post_s_photos_is_streamed() {
        assert!(streamed("POST", "/post/12/photos"));
        assert!(!streamed("GET", "/post/12/photos"));
        assert!(!streamed("PUT", "/post/12/photos"));
        assert!(!streamed("POST", "/post/12"));
        assert!(!streamed("POST", "/post//photos"));
        assert!(!streamed("POST", "/post/1/2/photos"));
        assert!(!streamed("POST", "/post/x/photos"));
        assert!(!streamed("POST", "/signup"));
    }
}
