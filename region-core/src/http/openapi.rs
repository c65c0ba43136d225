//! The OpenAPI document, generated from the handlers' annotations; served at
//! `/openapi.json` and checked in at `region-core/openapi.json` (a test
//! fails when the two differ).

use axum::Json;
use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::http::{accounts, health, metrics, posts};

/// The api of one region.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "cityboard region api",
        description = "The origin of one region. City-scoped operations take the city from \
                       the Host header (`<city>.<apex>`); a city this region does not serve \
                       answers 421. Errors are RFC 9457 problem documents."
    ),
    paths(
        posts::get_post,
        posts::list_posts,
        accounts::signup_form,
        accounts::signup,
        accounts::login_form,
        accounts::login,
        accounts::logout,
        accounts::me,
        health::healthz,
        metrics::metrics,
        serve,
    ),
    modifiers(&Security),
    tags(
        (name = "posts", description = "Reading posts"),
        (name = "accounts", description = "Sign-up and sessions"),
        (name = "operations", description = "Health, metrics, this document"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("`access_token` from POST /login"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("cb_session"))),
        );
    }
}

/// The document as pretty JSON with a trailing newline (the checked-in form).
pub fn document() -> String {
    let mut s = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1 document", body = Object)))]
pub async fn serve() -> Json<serde_json::Value> {
    Json(serde_json::to_value(ApiDoc::openapi()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    /// The checked-in document is the generated one: regenerate it with
    /// `cargo run -p region-core -- openapi > region-core/openapi.json`.
    #[test]
    fn checked_in_openapi_json_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
        let checked_in = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            checked_in == super::document(),
            "{path} is out of date: run `cargo run -p region-core -- openapi > region-core/openapi.json`"
        );
    }
}
