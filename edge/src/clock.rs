//! Time and randomness from the runtime, for signatures.
//!
//! In Workers `Date.now()` advances only across I/O, which is precise enough
//! for a ±30 s validity window. Nonces come from `crypto.getRandomValues`;
//! should that ever throw, `Math.random` stands in, since a nonce only has to
//! be unique for the window, not secret (the MAC is the secret part).

use js_sys::{Function, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};

/// Unix time in whole seconds.
pub fn now_secs() -> i64 {
    (js_sys::Date::now() / 1000.0) as i64
}

/// Unix time in milliseconds (the in-isolate keep of KV pages ages by it).
pub fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// 128 random bits as 32 lower-case hex digits.
pub fn nonce() -> String {
    let bytes = random_bytes().unwrap_or_else(|| {
        (0..16)
            .map(|_| (js_sys::Math::random() * 256.0) as u8)
            .collect()
    });
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_bytes() -> Option<Vec<u8>> {
    let crypto = Reflect::get(&js_sys::global(), &JsValue::from_str("crypto")).ok()?;
    let get = Reflect::get(&crypto, &JsValue::from_str("getRandomValues"))
        .ok()?
        .dyn_into::<Function>()
        .ok()?;
    let array = Uint8Array::new_with_length(16);
    get.call1(&crypto, &array).ok()?;
    Some(array.to_vec())
}
