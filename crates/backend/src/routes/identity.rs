//! Who signs in and how: `GET /api/v1/auth` tells an app how to sign in from the backend URL
//! alone, `GET /api/v1/me` who the backend takes it for, and `GET /api/v1/audit` (admins) who
//! did what.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{audit_denial, AppState};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::limits::MAX_AUDIT_PAGE;
use crate::store::AuditFilter;

/// `GET /api/v1/auth` (no token): the OpenID provider the apps sign in with, or
/// `{"issuer": null}` when this backend takes static tokens only.
pub async fn sign_in(State(app): State<AppState>) -> Json<Value> {
    Json(match app.auth.oidc() {
        Some(oidc) => {
            let settings = oidc.settings();
            json!({
                "issuer": settings.issuer,
                "client_id": settings.client_id,
                "scopes": settings.scopes,
                "audience": settings.audience,
            })
        }
        None => json!({ "issuer": null }),
    })
}

/// `GET /api/v1/me`: the principal this request's token names.
pub async fn me(principal: Principal) -> Json<Value> {
    Json(json!({ "user": principal.name, "groups": principal.groups, "admin": principal.admin }))
}

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    since: Option<String>,
    until: Option<String>,
    user: Option<String>,
    limit: Option<u32>,
}

/// `GET /api/v1/audit?since=&until=&user=&limit=` (admins): matching rows oldest first, one
/// JSON object per line (`application/x-ndjson`).
pub async fn audit_log(
    State(app): State<AppState>,
    principal: Principal,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    if !principal.admin {
        audit_denial(&app, &principal, "GET /api/v1/audit", None, None, "forbidden: not an admin").await?;
        return Err(forbidden("Only admins may read the audit log."));
    }
    let Query(query) = query.map_err(|_| {
        ApiError::bad_request("invalid_request", format!("`limit` must be a whole number from 1 to {MAX_AUDIT_PAGE}."))
    })?;
    let limit = query.limit.unwrap_or(MAX_AUDIT_PAGE);
    if !(1..=MAX_AUDIT_PAGE).contains(&limit) {
        return Err(ApiError::unprocessable(
            "invalid_limit",
            format!("`limit` must be from 1 to {MAX_AUDIT_PAGE}, got {limit}."),
        ));
    }
    let filter = AuditFilter {
        since: query.since.as_deref().map(|t| utc_seconds("since", t)).transpose()?,
        until: query.until.as_deref().map(|t| utc_seconds("until", t)).transpose()?,
        principal: query.user.filter(|u| !u.is_empty()),
        limit,
    };
    let rows = app.db.audit_rows(filter).await?;
    let mut body = String::new();
    for row in rows {
        body.push_str(&serde_json::to_string(&row).unwrap_or_default());
        body.push('\n');
    }
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"))], body).into_response())
}

/// 403 `forbidden`.
pub fn forbidden(message: &str) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
}

/// An RFC 3339 time as the audit rows store theirs (UTC, whole seconds), so text order is
/// time order.
fn utc_seconds(field: &str, raw: &str) -> Result<String, ApiError> {
    let parsed = OffsetDateTime::parse(raw, &Rfc3339).map_err(|_| {
        ApiError::unprocessable(
            "invalid_time",
            format!("`{field}` must be an RFC 3339 time like 2026-12-05T10:00:00Z."),
        )
    })?;
    let utc = parsed.to_offset(time::UtcOffset::UTC);
    Ok(utc.replace_nanosecond(0).unwrap_or(utc).format(&Rfc3339).unwrap_or_default())
}
