//! Who is calling: every request to a protected route carries a bearer token that names a
//! [`Principal`], either a static token (`tokens`) or a JWT access token from the
//! organisation's OpenID provider (`oidc`). Handlers take the principal as an extractor, so a
//! route cannot forget authentication and holds the principal it must scope by.

mod oidc;
mod tokens;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

pub use oidc::{Oidc, OidcSettings, TokenError};
#[cfg(test)]
pub use tokens::default_name as default_token_name;
pub use tokens::StaticToken;

use crate::config::AuthSettings;
use crate::error::ApiError;
use crate::routes::AppState;

/// The person or service behind a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// What records' `uploaded_by` and the audit log say: a static token's name, or the OpenID
    /// user claim (`email` by default, `sub` without it).
    pub name: String,
    /// OpenID groups; empty for static tokens.
    pub groups: Vec<String>,
    /// May read everyone's records and the audit log.
    pub admin: bool,
}

/// Checks bearer tokens against the static tokens and the OpenID provider.
#[derive(Debug)]
pub struct Authenticator {
    tokens: Vec<StaticToken>,
    admin_principals: Vec<String>,
    oidc: Option<Oidc>,
}

impl Authenticator {
    pub fn new(settings: AuthSettings) -> Self {
        Self {
            tokens: settings.tokens,
            admin_principals: settings.admin_principals,
            oidc: settings.oidc.map(Oidc::new),
        }
    }

    pub fn oidc(&self) -> Option<&Oidc> {
        self.oidc.as_ref()
    }

    /// The principal of a request's `Authorization: Bearer …` header.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, AuthError> {
        let presented = headers.get(header::AUTHORIZATION).and_then(|value| value.to_str().ok()).and_then(bearer_token);
        let Some(token) = presented else {
            return Err(AuthError::Missing);
        };
        // Every static token is compared (no early exit), so timing does not say which matched.
        let matched =
            self.tokens.iter().fold(None, |found, known| if known.matches(token) { Some(known) } else { found });
        if let Some(known) = matched {
            return Ok(Principal {
                name: known.name.clone(),
                groups: Vec::new(),
                admin: self.admin_principals.contains(&known.name),
            });
        }
        if !oidc::is_jwt_shaped(token) {
            return Err(AuthError::NotAccepted);
        }
        let Some(oidc) = &self.oidc else {
            return Err(AuthError::NotAccepted);
        };
        Ok(oidc.principal(token).await?)
    }
}

/// Why a request has no principal.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("Send the header `Authorization: Bearer <token>` with a token this backend accepts.")]
    Missing,
    #[error("The backend does not accept this token; check the token in Dropship's settings, or sign in again.")]
    NotAccepted,
    #[error(transparent)]
    Token(#[from] TokenError),
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        if let AuthError::Token(TokenError::ProviderUnavailable(detail)) = &self {
            tracing::warn!(%detail, "cannot check an access token: the OpenID provider is unreachable");
            return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "auth_unavailable", self.to_string())
                .into_response();
        }
        let message = self.to_string();
        let challenge = match &self {
            // RFC 6750 §3.1: no error code when the request had no credentials at all.
            AuthError::Missing => "Bearer".to_owned(),
            _ => format!(
                "Bearer error=\"invalid_token\", error_description=\"{}\"",
                message
                    .replace(['"', '\\'], "'")
                    .chars()
                    .filter(|c| c.is_ascii() && !c.is_control())
                    .collect::<String>()
            ),
        };
        if let AuthError::Token(error) = &self {
            tracing::info!(reason = %error, "refused an access token");
        }
        let mut response = ApiError::unauthorized(message).into_response();
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

/// The extractor: the principal the authentication middleware found, or (on a route outside
/// the protected table) the one the request's own token names.
impl FromRequestParts<AppState> for Principal {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(principal) = parts.extensions.get::<Principal>() {
            return Ok(principal.clone());
        }
        app.auth.authenticate(&parts.headers).await
    }
}

/// The token of an `Authorization: Bearer …` value (the scheme is case-insensitive).
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_case_insensitively_and_blank_ones_refused() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("abc"), None);
    }

    fn headers(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
        headers
    }

    #[tokio::test]
    async fn static_tokens_name_their_principal_and_admins_are_listed_by_name() {
        let auth = Authenticator::new(AuthSettings {
            tokens: vec![StaticToken::parse("alice:a-secret").unwrap(), StaticToken::parse("svc:s-secret").unwrap()],
            admin_principals: vec!["svc".to_owned()],
            oidc: None,
        });
        let alice = auth.authenticate(&headers("a-secret")).await.expect("alice's token is accepted");
        assert_eq!(alice, Principal { name: "alice".to_owned(), groups: vec![], admin: false });
        let svc = auth.authenticate(&headers("s-secret")).await.unwrap();
        assert!(svc.admin, "a service account listed in --admin-principals is an admin");
        assert!(matches!(auth.authenticate(&headers("nope")).await, Err(AuthError::NotAccepted)));
        assert!(matches!(auth.authenticate(&HeaderMap::new()).await, Err(AuthError::Missing)));
        let jwt_shaped = auth.authenticate(&headers("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln")).await;
        assert!(matches!(jwt_shaped, Err(AuthError::NotAccepted)), "without OIDC a JWT is just an unknown token");
    }
}
