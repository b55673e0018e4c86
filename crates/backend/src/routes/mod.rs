//! The HTTP surface: the route table, bearer-token auth, request logging and the JSON 404/405.
//! Handlers live in `native` (our API), `multipart` (its multipart routes) and `rails` (the
//! guide's two routes).

mod body;
mod multipart;
mod native;
mod rails;

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::handler::Handler;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter};
use axum::Router;

use crate::db::Db;
use crate::error::ApiError;
use crate::keys::KeyScheme;
use crate::limits::MAX_BODY_BYTES;
use crate::signer::Signer;

/// The OpenAPI 3.1 description of every route, served as-is at `/openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("../../openapi.json");

/// What every handler can reach.
#[derive(Debug)]
pub struct App {
    pub signer: Signer,
    pub db: Db,
    pub keys: KeyScheme,
    pub tokens: Vec<String>,
}

pub type AppState = Arc<App>;

/// The HTTP methods the backend serves (kept small so the route table can name them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Post,
}

impl Verb {
    fn filter(self) -> MethodFilter {
        match self {
            Verb::Get => MethodFilter::GET,
            Verb::Post => MethodFilter::POST,
        }
    }

    /// The lower-case name OpenAPI uses as the operation key.
    #[cfg(test)]
    pub fn openapi_name(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::Post => "post",
        }
    }
}

/// A router that remembers which (method, path) pairs it serves, so a test can hold the
/// OpenAPI document to exactly the routes the server has.
pub struct RouteTable {
    router: Router<AppState>,
    served: Vec<(Verb, &'static str)>,
}

impl RouteTable {
    fn new() -> Self {
        Self { router: Router::new(), served: Vec::new() }
    }

    fn add<H, T>(mut self, verb: Verb, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.router = self.router.route(path, on(verb.filter(), handler));
        self.served.push((verb, path));
        self
    }
}

/// Routes anyone may call.
fn public_routes() -> RouteTable {
    RouteTable::new().add(Verb::Get, "/openapi.json", openapi)
}

/// Routes that need a bearer token.
fn protected_routes() -> RouteTable {
    RouteTable::new()
        .add(Verb::Get, "/api/v1/ping", native::ping)
        .add(Verb::Post, "/api/v1/uploads/presign", native::presign_batch)
        .add(Verb::Post, "/api/v1/uploads/{client_upload_id}/report", native::report_upload)
        .add(Verb::Post, "/api/v1/reports", native::report_batch)
        .add(Verb::Get, "/api/v1/records", native::list_records)
        .add(Verb::Get, "/api/v1/records/{client_upload_id}", native::get_record)
        .add(Verb::Post, "/api/v1/multipart", multipart::create_upload)
        .add(Verb::Post, "/api/v1/multipart/sign", multipart::sign_parts)
        .add(Verb::Get, "/api/v1/multipart/parts", multipart::list_parts)
        .add(Verb::Post, "/api/v1/multipart/complete", multipart::complete_upload)
        .add(Verb::Post, "/api/v1/multipart/abort", multipart::abort_upload)
        .add(Verb::Post, "/api/attachments/generate_upload_url", rails::generate_upload_url)
        .add(Verb::Post, "/api/attachments", rails::create_attachment)
}

/// Every (method, path) the server answers.
#[cfg(test)]
pub fn served_routes() -> Vec<(Verb, &'static str)> {
    let mut all = public_routes().served;
    all.extend(protected_routes().served);
    all
}

/// The whole application, ready to serve.
pub fn router(state: AppState) -> Router {
    let protected =
        protected_routes().router.route_layer(middleware::from_fn_with_state(Arc::clone(&state), require_token));
    Router::new()
        .merge(public_routes().router)
        .merge(protected)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], OPENAPI_JSON).into_response()
}

async fn not_found() -> ApiError {
    ApiError::not_found("No such route; GET /openapi.json lists the routes this backend serves.")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "This route does not take that HTTP method; GET /openapi.json lists what it takes.",
    )
}

/// Lets a request through only with `Authorization: Bearer <a configured token>`.
async fn require_token(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let presented =
        request.headers().get(header::AUTHORIZATION).and_then(|value| value.to_str().ok()).and_then(bearer_token);
    match presented {
        None => {
            ApiError::unauthorized("Send the header `Authorization: Bearer <token>` with a token this backend accepts.")
                .into_response()
        }
        Some(token) if app.tokens.iter().any(|known| constant_time_eq(known, token)) => next.run(request).await,
        Some(_) => {
            ApiError::unauthorized("The backend does not accept this token; check the token in Dropship's settings.")
                .into_response()
        }
    }
}

/// The token of an `Authorization: Bearer …` value (the scheme is case-insensitive).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Compares without an early exit, so response timing does not reveal how much of a guessed
/// token was right.
fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut difference = a.len() ^ b.len();
    for (index, byte) in a.iter().enumerate() {
        difference |= usize::from(byte ^ b.get(index).copied().unwrap_or(0));
    }
    difference == 0
}

/// One line per request. Only the path is logged: query strings and headers (tokens) never are.
async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    tracing::info!(
        %method,
        %path,
        status = response.status().as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_describes_every_served_route() {
        let document: serde_json::Value = serde_json::from_str(OPENAPI_JSON).expect("openapi.json is valid JSON");
        assert!(document["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")), "it is an OpenAPI 3.1 document");
        let routes = served_routes();
        assert!(routes.len() >= 14, "the table lists all routes");
        for (verb, path) in routes {
            assert!(
                document["paths"][path][verb.openapi_name()].is_object(),
                "openapi.json documents {} {path}",
                verb.openapi_name().to_uppercase()
            );
        }
    }

    #[test]
    fn the_openapi_document_has_no_route_the_server_lacks() {
        let document: serde_json::Value = serde_json::from_str(OPENAPI_JSON).unwrap();
        let routes = served_routes();
        let paths = document["paths"].as_object().expect("paths is an object");
        for (path, operations) in paths {
            for method in operations.as_object().expect("operations").keys() {
                if method == "parameters" {
                    continue;
                }
                assert!(
                    routes.iter().any(|(verb, p)| p == path && verb.openapi_name() == method),
                    "openapi.json documents {method} {path}, which the server does not serve"
                );
            }
        }
    }

    #[test]
    fn bearer_tokens_are_read_case_insensitively_and_blank_ones_refused() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("abc"), None);
    }

    #[test]
    fn token_comparison_needs_every_byte_and_the_length_to_match() {
        assert!(constant_time_eq("secret", "secret"));
        assert!(!constant_time_eq("secret", "secreT"));
        assert!(!constant_time_eq("secret", "secret2"));
        assert!(!constant_time_eq("secret", "secre"));
        assert!(!constant_time_eq("", "x"));
    }
}
