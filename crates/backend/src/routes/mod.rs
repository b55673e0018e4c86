//! The HTTP surface: the route table, authentication, request logging and the JSON 404/405.
//! Handlers live in `native` (our API), `multipart` (its multipart routes), `rails` (the
//! guide's two routes) and `identity` (sign-in discovery, who am I, the audit log); each takes
//! the [`Principal`] it acts for. `updates` serves the desktop app's updates, to anyone.

mod body;
mod identity;
mod multipart;
mod native;
mod rails;
mod updates;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::handler::Handler;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter};
use axum::Router;

use crate::auth::{Authenticator, Principal};
use crate::error::ApiError;
use crate::keys::KeyScheme;
use crate::limits::MAX_BODY_BYTES;
use crate::ops;
use crate::ops::guard::Guards;
use crate::signer::Signer;
use crate::store::{AuditAction, AuditEntry, Db, Ownership};

/// The OpenAPI 3.1 description of every route, served as-is at `/openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("../../openapi.json");

/// What every handler can reach.
#[derive(Debug)]
pub struct App {
    pub signer: Signer,
    pub db: Db,
    pub keys: KeyScheme,
    pub auth: Authenticator,
    /// Request deadline, in-flight cap and rate limits.
    pub guards: Arc<Guards>,
    /// The update channels, when the backend was started with `--updates-dir`.
    pub updates: Option<Arc<crate::updates::UpdateChannels>>,
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

/// Routes anyone may call: the contract, sign-in discovery, the probes and metrics that
/// load balancers and Prometheus read without a token, and the desktop app's updates.
fn public_routes() -> RouteTable {
    RouteTable::new()
        .add(Verb::Get, "/openapi.json", openapi)
        .add(Verb::Get, "/api/v1/auth", identity::sign_in)
        .add(Verb::Get, "/healthz", ops::healthz)
        .add(Verb::Get, "/readyz", ops::readyz)
        .add(Verb::Get, "/metrics", ops::metrics)
        .add(Verb::Get, "/updates/{channel}/latest.json", updates::static_manifest)
        .add(Verb::Get, "/updates/{channel}/{target}/{arch}/{current_version}", updates::dynamic_manifest)
        .add(Verb::Get, "/updates/{channel}/files/{name}", updates::artifact)
}

/// Routes that need a principal: the middleware refuses a request without one, and each
/// handler takes the [`Principal`] extractor to scope by.
fn protected_routes() -> RouteTable {
    RouteTable::new()
        .add(Verb::Get, "/api/v1/ping", native::ping)
        .add(Verb::Get, "/api/v1/me", identity::me)
        .add(Verb::Get, "/api/v1/audit", identity::audit_log)
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

/// The whole application, ready to serve. Layers run outside in: the request id and metrics
/// (so refusals are counted and carry an id), then the in-flight cap and deadline, then the
/// body limit; protected routes then check the principal and its rate.
pub fn router(state: AppState) -> Router {
    let protected =
        protected_routes().router.route_layer(middleware::from_fn_with_state(Arc::clone(&state), require_principal));
    Router::new()
        .merge(public_routes().router)
        .merge(protected)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(Arc::clone(&state.guards), ops::guard::limit_requests))
        .layer(middleware::from_fn(ops::logs::observe))
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

/// Lets a request through only with a bearer token that names a principal, which it hands
/// on to the handler's [`Principal`] extractor, and only while that principal is within its
/// rate limit (429 with Retry-After beyond it).
async fn require_principal(State(app): State<AppState>, mut request: Request, next: Next) -> Response {
    match app.auth.authenticate(request.headers()).await {
        Ok(principal) => {
            if let Err(refusal) = app.guards.check_rate(&principal.name) {
                return refusal.into_response();
            }
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(error) => error.into_response(),
    }
}

/// Writes a denial to the audit log; the caller answers 404 or 403 as if nothing were there.
pub(crate) async fn audit_denial(
    app: &App,
    principal: &Principal,
    route: &str,
    key: Option<&str>,
    client_upload_id: Option<&str>,
    why: &str,
) -> Result<(), ApiError> {
    tracing::info!(principal = %principal.name, %route, key = key.unwrap_or(""), %why, "denied");
    let mut entry = AuditEntry::new(&principal.name, AuditAction::Denied, format!("{route}: {why}"));
    entry.key = key.map(str::to_owned);
    entry.client_upload_id = client_upload_id.map(str::to_owned);
    Ok(app.db.audit(vec![entry]).await?)
}

/// [`audit_denial`] for what a key or upload lookup found, unless it is the principal's own.
pub(crate) async fn deny_unless_mine(
    app: &App,
    principal: &Principal,
    ownership: Ownership,
    route: &str,
    key: &str,
    client_upload_id: Option<&str>,
) -> Result<bool, ApiError> {
    if ownership == Ownership::Mine {
        return Ok(true);
    }
    audit_denial(app, principal, route, Some(key), client_upload_id, ownership.denial()).await?;
    Ok(false)
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
}
