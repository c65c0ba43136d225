//! The OpenAPI document, generated from the handlers' annotations; served at
//! `/openapi.json` and checked in at `region-core/openapi.json` (a test
//! fails when the two differ).

use axum::Json;
use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::http::{accounts, commands, health, pages, photos, posts, session, writes};

/// The api of one region.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "cityboard region api",
        description = "The origin of one region, reached through the edge. Every operation \
                       except `/healthz` and `/openapi.json` requires the edge's \
                       request signature (security scheme `edge`): without it, or with one \
                       that is forged, stale or replayed, the answer is 401 with problem type \
                       `signature`. City-scoped operations take the city from the signed \
                       `x-cityboard-city` (or the signed `x-forwarded-host`, `<city>.<apex>`); \
                       a city this region does not serve answers 421. Errors are RFC 9457 \
                       problem documents."
    ),
    paths(
        posts::get_post,
        posts::list_posts,
        writes::create_post,
        writes::update_post,
        writes::delete_post,
        writes::renew_form,
        writes::renew_post,
        writes::report,
        commands::get_command,
        accounts::signup_form,
        accounts::signup,
        accounts::login_form,
        accounts::login,
        session::logout,
        session::renew,
        session::me,
        session::delete_user,
        health::healthz,
        pages::home,
        pages::new_post,
        pages::my_posts,
        pages::logout_page,
        pages::sitemap,
        pages::edit_post,
        pages::submit_edit,
        pages::submit_delete,
        pages::report_form,
        photos::photos_page,
        photos::upload,
        photos::media,
        pages::cities,
        pages::static_file,
        serve,
    ),
    modifiers(&Security, &EdgeSignature, &Links, &BlankQueryValues),
    tags(
        (name = "posts", description = "Reading posts"),
        (name = "writes", description = "Posting, editing, deleting, renewing, reporting; the \
                                         status of a write accepted with 202"),
        (name = "accounts", description = "Sign-up and sessions"),
        (name = "pages", description = "The site's own HTML pages (forms post to the writes above)"),
        (name = "operations", description = "Health and this document (metrics and the operator's routes are on the operator listener, not here)"),
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

use crate::http::edge_trust::UNSIGNED_PATHS;

/// The edge signature (design §4): a security scheme naming the header,
/// and on every operation it covers the 401 of a refused signature and the
/// 503 of a nonce store that is down. It is not listed as a requirement of
/// the operations: it is the edge's to add, not a credential a client
/// holds, and a client that lists it would be asked for it by generic tools.
struct EdgeSignature;

impl Modify for EdgeSignature {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::ResponseBuilder;
        use utoipa::openapi::content::ContentBuilder;
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "edge",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                cityboard_protocol::sign::SIGNATURE_HEADER,
                "Added by the edge to every request it forwards: `v2 kid=<key id> \
                 ts=<unix seconds> nonce=<16-64 of [A-Za-z0-9_-]> mac=<hex HMAC-SHA256>` over \
                 method, `x-forwarded-host`, path and query, timestamp, nonce, \
                 `x-cityboard-client-ip`, `x-cityboard-city`, the body's SHA-256 and the \
                 `Content-Type` (cityboard_protocol::sign, length-prefixed; `v1` covers all \
                 but the `Content-Type` and is accepted unless the api retired it). Accepted \
                 within ±30 s, each nonce once, with the current or, until its expiry, the \
                 previous forwarding key. The three \
                 headers are believed only on a request whose signature verifies. An api \
                 started with the development flag `--allow-unsigned` also serves requests \
                 without this header.",
            ))),
        );
        let problem = || {
            ContentBuilder::new()
                .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                    "Problem",
                ))))
                .build()
        };
        for (path, item) in doc.paths.paths.iter_mut() {
            if UNSIGNED_PATHS.contains(&path.as_str()) {
                continue;
            }
            let ops = [
                item.get.as_mut(),
                item.post.as_mut(),
                item.put.as_mut(),
                item.delete.as_mut(),
                item.patch.as_mut(),
            ];
            for op in ops.into_iter().flatten() {
                let responses = &mut op.responses.responses;
                let unauthorized = "missing, malformed, stale, replayed or forged edge signature \
                                    (problem type `signature`)";
                match responses.get_mut("401") {
                    Some(RefOr::T(r)) => {
                        r.description = format!("{}; or {unauthorized}", r.description);
                    }
                    Some(RefOr::Ref(_)) => {}
                    None => {
                        responses.insert(
                            "401".to_string(),
                            RefOr::T(
                                ResponseBuilder::new()
                                    .description(sentence(unauthorized))
                                    .content("application/problem+json", problem())
                                    .build(),
                            ),
                        );
                    }
                }
                let unavailable = "the store that keeps signature nonces is down \
                                   (problem type `store-unavailable`)";
                match responses.get_mut("503") {
                    Some(RefOr::T(r)) => {
                        r.description = format!("{}; or {unavailable}", r.description);
                    }
                    Some(RefOr::Ref(_)) => {}
                    None => {
                        responses.insert(
                            "503".to_string(),
                            RefOr::T(
                                ResponseBuilder::new()
                                    .description(sentence(unavailable))
                                    .content("application/problem+json", problem())
                                    .build(),
                            ),
                        );
                    }
                }
            }
        }
    }
}

/// `text` with its first letter upper-cased.
fn sentence(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// Links between operations (OpenAPI 3 `links`): how a client, or a
/// stateful test such as schemathesis, goes from one answer to the next
/// request.
/// `GET /post` as an HTML form sends it: every field, the empty ones as
/// `name=`, which the api takes as absent (`posts::ListParams`). The
/// document says so, so that generated clients and schemathesis agree with
/// the api on what is valid: each such parameter is its type or the empty
/// string, and a checkbox is one of `posts::FORM_BOOLS`. And
/// `/static/{name}` lists this build's asset names.
struct BlankQueryValues;

impl Modify for BlankQueryValues {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
        let Some(params) = doc
            .paths
            .paths
            .get_mut("/post")
            .and_then(|item| item.get.as_mut())
            .and_then(|op| op.parameters.as_mut())
        else {
            return;
        };
        for p in params {
            let blank = || {
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .max_length(Some(0))
            };
            match p.name.as_str() {
                "category" | "min_price" | "max_price" | "has_image" | "sort" | "limit" => {
                    if let Some(orig) = p.schema.take() {
                        p.schema = Some(RefOr::T(Schema::OneOf(
                            OneOfBuilder::new().item(orig).item(blank()).build(),
                        )));
                    }
                }
                "titles_only" | "today" => {
                    p.schema = Some(RefOr::T(Schema::Object(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .enum_values(Some(crate::http::posts::FORM_BOOLS))
                            .build(),
                    )));
                }
                _ => {}
            }
        }
        // This build's asset names: the only ones `/static/{name}` serves.
        let Some(params) = doc
            .paths
            .paths
            .get_mut("/static/{name}")
            .and_then(|item| item.get.as_mut())
            .and_then(|op| op.parameters.as_mut())
        else {
            return;
        };
        for p in params.iter_mut().filter(|p| p.name == "name") {
            p.schema = Some(RefOr::T(Schema::Object(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(crate::render::assets::names()))
                    .build(),
            )));
        }
    }
}

struct Links;

impl Modify for Links {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::link::LinkBuilder;
        use utoipa::openapi::path::HttpMethod;
        // The log-out, renewal and form delete bodies are optional (only a
        // form carries one). Account deletion's is not: it carries the
        // password.
        for path in ["/logout", "/session/renew", "/post/{id}/delete"] {
            let op = doc.paths.paths.get_mut(path).and_then(|i| i.post.as_mut());
            if let Some(op) = op
                && let Some(body) = op.request_body.as_mut()
            {
                body.required = Some(utoipa::openapi::Required::False);
            }
        }
        let mut add = |path: &str, method: HttpMethod, status: &str, name: &str, link| {
            let Some(item) = doc.paths.paths.get_mut(path) else {
                return;
            };
            let op = match method {
                HttpMethod::Get => item.get.as_mut(),
                HttpMethod::Post => item.post.as_mut(),
                _ => None,
            };
            if let Some(RefOr::T(response)) =
                op.and_then(|op| op.responses.responses.get_mut(status))
            {
                response.links.insert(name.to_string(), RefOr::T(link));
            }
        };
        add(
            "/post",
            HttpMethod::Get,
            "200",
            "FirstPost",
            LinkBuilder::new()
                .operation_id("get_post")
                .parameter("id", "$response.body#/posts/0/id")
                .description("The first post of the page")
                .build(),
        );
        add(
            "/post",
            HttpMethod::Get,
            "200",
            "NextPage",
            LinkBuilder::new()
                .operation_id("list_posts")
                .parameter("cursor", "$response.body#/next_cursor")
                .description("The next page (send the same filters again)")
                .build(),
        );
        // From a new post to what its author can do with it next: the
        // body names the post and the command (a 202 as much as a 201).
        for status in ["201", "202"] {
            for (name, op, description) in [
                ("EditPost", "update_post", "Edit the new post"),
                ("DeletePost", "delete_post", "Delete the new post"),
                ("RenewPost", "renew_post", "Renew the new post"),
                ("RenewForm", "renew_form", "The new post's renewal page"),
                ("EditForm", "edit_post", "The new post's edit form"),
                (
                    "EditPostForm",
                    "submit_edit",
                    "Edit the new post as a form does",
                ),
                (
                    "DeletePostForm",
                    "submit_delete",
                    "Delete the new post as a form does",
                ),
                ("ReportForm", "report_form", "The new post's report form"),
            ] {
                add(
                    "/post",
                    HttpMethod::Post,
                    status,
                    name,
                    LinkBuilder::new()
                        .operation_id(op)
                        .parameter("id", "$response.body#/post")
                        .description(description)
                        .build(),
                );
            }
            add(
                "/post",
                HttpMethod::Post,
                status,
                "ReportPost",
                LinkBuilder::new()
                    .operation_id("report")
                    .request_body(Some(serde_json::json!({
                        "post_id": "$response.body#/post",
                        "reason": "spam",
                    })))
                    .description("Report the new post")
                    .build(),
            );
            add(
                "/post",
                HttpMethod::Post,
                status,
                "CommandStatus",
                LinkBuilder::new()
                    .operation_id("get_command")
                    .parameter("id", "$response.body#/command")
                    .description("The status of the write")
                    .build(),
            );
        }
        add(
            "/signup",
            HttpMethod::Post,
            "201",
            "LogIn",
            LinkBuilder::new()
                .operation_id("login")
                .request_body(Some(serde_json::json!({
                    "email": "$request.body#/email",
                    "password": "$request.body#/password",
                })))
                .description("Log in to the new account")
                .build(),
        );
    }
}

/// The document as JSON. utoipa 5 writes a link's `operationId` and
/// `requestBody` in snake case, which no client recognises; they are renamed
/// here.
pub fn json() -> serde_json::Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    if let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) {
        let links = paths
            .values_mut()
            .filter_map(|item| item.as_object_mut())
            .flat_map(|item| item.values_mut())
            .filter_map(|op| op.get_mut("responses").and_then(|r| r.as_object_mut()))
            .flat_map(|responses| responses.values_mut())
            .filter_map(|res| res.get_mut("links").and_then(|l| l.as_object_mut()))
            .flat_map(|links| links.values_mut())
            .filter_map(|link| link.as_object_mut());
        for link in links {
            for (from, to) in [
                ("operation_id", "operationId"),
                ("request_body", "requestBody"),
            ] {
                if let Some(v) = link.remove(from) {
                    link.insert(to.to_string(), v);
                }
            }
        }
    }
    doc
}

/// The document as pretty JSON with a trailing newline (the checked-in form).
pub fn document() -> String {
    let mut s = serde_json::to_string_pretty(&json()).unwrap_or_default();
    s.push('\n');
    s
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1 document", body = Object)))]
pub async fn serve() -> Json<serde_json::Value> {
    Json(json())
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
