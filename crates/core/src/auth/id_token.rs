//! Checks the ID token that comes back with a browser sign-in: signed by the provider's key,
//! issued by it, for this client, and carrying the nonce this sign-in sent (so an answer from
//! another sign-in cannot be replayed into this one). `jsonwebtoken` does the JOSE.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::provider::IdentityProvider;
use super::{read_json, unreachable, AuthError};

/// Clocks on laptops drift; the provider's and ours may disagree by this much.
const LEEWAY_SECS: u64 = 60;

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    nonce: Option<String>,
}

pub(super) async fn check(
    http: &reqwest::Client,
    provider: &IdentityProvider,
    id_token: &str,
    expected_nonce: &str,
) -> Result<(), AuthError> {
    let mismatch = |detail: String| AuthError::Mismatch(detail);
    let header =
        jsonwebtoken::decode_header(id_token).map_err(|e| mismatch(format!("the ID token is malformed: {e}")))?;
    if !is_asymmetric(header.alg) {
        return Err(mismatch(format!("the ID token is signed with {:?}, which Dropship does not accept", header.alg)));
    }
    let jwks_url = url::Url::parse(&provider.jwks_uri).map_err(|e| AuthError::BadAnswer {
        what: "The identity provider",
        url: provider.jwks_uri.clone(),
        detail: e.to_string(),
    })?;
    let response =
        http.get(jwks_url.clone()).send().await.map_err(|e| unreachable("The identity provider", &jwks_url, &e))?;
    let keys: JwkSet = read_json("The identity provider", response).await?;
    let jwk = match &header.kid {
        Some(kid) => keys.find(kid),
        None if keys.keys.len() == 1 => keys.keys.first(),
        None => None,
    }
    .ok_or_else(|| mismatch("the ID token is signed with a key the provider does not publish".into()))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| mismatch(format!("the provider's key is unusable: {e}")))?;
    let mut validation = Validation::new(header.alg);
    validation.leeway = LEEWAY_SECS;
    validation.set_issuer(&[provider.issuer.as_str()]);
    validation.set_audience(&[provider.client_id.as_str()]);
    let claims = jsonwebtoken::decode::<Claims>(id_token, &key, &validation)
        .map_err(|e| mismatch(format!("the ID token did not pass its checks: {e}")))?
        .claims;
    if claims.nonce.as_deref() != Some(expected_nonce) {
        return Err(mismatch("the ID token carries another sign-in's nonce".into()));
    }
    Ok(())
}

fn is_asymmetric(alg: Algorithm) -> bool {
    !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}
