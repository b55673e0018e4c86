//! JWT access tokens from the organisation's OpenID Connect provider, checked with the
//! maintained `jsonwebtoken` crate against the provider's JWKS: found through OpenID discovery,
//! cached, refetched when a token names a key the cache lacks (key rotation) but at most once
//! per [`UNKNOWN_KEY_REFETCH_INTERVAL`], so a flood of made-up key ids cannot hammer the provider.
//! Only asymmetric algorithms are accepted, and only the one the key allows: `alg: none` and
//! HMAC (whose "secret" an attacker could take from the public key) are refused outright.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use tokio::sync::Mutex;

use super::Principal;

/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 60;
/// A token naming an unknown key refetches the JWKS at most this often.
pub const UNKNOWN_KEY_REFETCH_INTERVAL: Duration = Duration::from_secs(10);
/// When the provider could not be reached and no keys are cached, how soon to try again.
const FAILED_FETCH_RETRY: Duration = Duration::from_secs(1);
/// Cached keys are refreshed after this long, so a key the provider withdrew stops working.
const JWKS_MAX_AGE: Duration = Duration::from_secs(15 * 60);
/// Discovery and JWKS requests give up after this long.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The OpenID settings from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcSettings {
    pub issuer: String,
    pub audience: String,
    pub client_id: String,
    pub user_claim: String,
    pub groups_claim: String,
    pub admin_group: Option<String>,
    pub scopes: Vec<String>,
}

/// Why an access token was refused, in words a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("The access token has expired; sign in again (or refresh it).")]
    Expired,
    #[error("The access token is not yet valid (its nbf is in the future); check this computer's clock.")]
    NotYetValid,
    #[error("The access token has the wrong issuer: this backend accepts tokens from {expected} only.")]
    WrongIssuer { expected: String },
    #[error("The access token has the wrong audience: this backend accepts tokens issued for {expected} only.")]
    WrongAudience { expected: String },
    #[error("The access token uses an unsupported algorithm ({0}); only asymmetric signatures (RS*, PS*, ES256, ES384, EdDSA) that the signing key allows are accepted.")]
    UnsupportedAlgorithm(String),
    #[error(
        "The access token was signed with an unknown signing key ({0}); the identity provider does not publish it."
    )]
    UnknownKey(String),
    #[error("The access token has a bad signature: it was changed after it was issued, or signed with another key.")]
    BadSignature,
    #[error("The access token lacks the claim {0}.")]
    MissingClaim(String),
    #[error("The access token is malformed: {0}.")]
    Malformed(String),
    #[error(
        "The backend cannot check access tokens right now: the identity provider is unreachable. Try again shortly."
    )]
    ProviderUnavailable(String),
}

/// Three dot-separated base64url parts: a JWS in compact form.
pub fn is_jwt_shaped(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3
        && parts[..2].iter().all(|p| !p.is_empty())
        && parts.iter().all(|p| p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'='))
}

/// Keys as last fetched, and when.
#[derive(Debug, Default)]
struct KeyCache {
    jwks_uri: Option<String>,
    keys: Vec<Jwk>,
    fetched_at: Option<Instant>,
    attempted_at: Option<Instant>,
    refetched_for_unknown_key_at: Option<Instant>,
}

/// The validator for one issuer.
#[derive(Debug)]
pub struct Oidc {
    settings: OidcSettings,
    http: reqwest::Client,
    cache: Mutex<KeyCache>,
}

impl Oidc {
    pub fn new(settings: OidcSettings) -> Self {
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            // A redirect could lead off the issuer's host; discovery names the JWKS URL itself.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self { settings, http, cache: Mutex::new(KeyCache::default()) }
    }

    pub fn settings(&self) -> &OidcSettings {
        &self.settings
    }

    /// Fetches discovery and the keys once at start-up. A provider that is down is only
    /// warned about: it may come up later, and tokens are checked lazily.
    pub async fn warm_up(&self) {
        let mut cache = self.cache.lock().await;
        match self.refetch(&mut cache).await {
            Ok(()) => {
                tracing::info!(issuer = %self.settings.issuer, keys = cache.keys.len(), "fetched the OpenID signing keys")
            }
            Err(detail) => tracing::warn!(
                issuer = %self.settings.issuer,
                %detail,
                "the OpenID provider is unreachable at start-up; access tokens will be checked once it answers"
            ),
        }
    }

    /// Checks `token` and names its principal.
    pub async fn principal(&self, token: &str) -> Result<Principal, TokenError> {
        let claims = self.validate(token).await?;
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::trim).filter(|v| !v.is_empty());
        let name = text(&self.settings.user_claim)
            .or_else(|| text("sub"))
            .ok_or_else(|| TokenError::MissingClaim(format!("{} (or sub)", self.settings.user_claim)))?
            .to_owned();
        let groups: Vec<String> = match claims.get(&self.settings.groups_claim) {
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            Some(Value::String(one)) => vec![one.clone()],
            _ => Vec::new(),
        };
        let admin = self.settings.admin_group.as_ref().is_some_and(|group| groups.contains(group));
        Ok(Principal { name, groups, admin })
    }

    /// The token's claims, once its signature, issuer, audience and times check out.
    async fn validate(&self, token: &str) -> Result<Map<String, Value>, TokenError> {
        let (algorithm, kid) = read_header(token)?;
        let jwk = self.key_for(algorithm, kid.as_deref()).await?;
        let key = DecodingKey::from_jwk(&jwk)
            .map_err(|e| TokenError::Malformed(format!("the signing key is unusable ({e})")))?;
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation).map(|data| data.claims).map_err(|error| {
            match error.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                ErrorKind::InvalidIssuer => TokenError::WrongIssuer { expected: self.settings.issuer.clone() },
                ErrorKind::InvalidAudience => TokenError::WrongAudience { expected: self.settings.audience.clone() },
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                ErrorKind::InvalidAlgorithm => TokenError::UnsupportedAlgorithm(format!("{algorithm:?}")),
                ErrorKind::MissingRequiredClaim(claim) => TokenError::MissingClaim(claim.clone()),
                other => TokenError::Malformed(format!("{other:?}")),
            }
        })
    }

    /// The published key that may verify a token with this `alg` and `kid`, refetching the
    /// JWKS when the cache is empty, old, or lacks the key (rate-limited).
    async fn key_for(&self, algorithm: Algorithm, kid: Option<&str>) -> Result<Jwk, TokenError> {
        let mut cache = self.cache.lock().await;
        let stale = cache.fetched_at.is_none_or(|at| at.elapsed() > JWKS_MAX_AGE);
        let may_retry = cache.attempted_at.is_none_or(|at| at.elapsed() >= FAILED_FETCH_RETRY);
        if stale && may_retry {
            if let Err(detail) = self.refetch(&mut cache).await {
                if cache.fetched_at.is_none() {
                    return Err(TokenError::ProviderUnavailable(detail));
                }
                tracing::warn!(%detail, "could not refresh the OpenID signing keys; using the cached ones");
            }
        } else if cache.fetched_at.is_none() {
            return Err(TokenError::ProviderUnavailable("the last attempt failed moments ago".to_owned()));
        }
        if let Some(found) = pick_key(&cache.keys, algorithm, kid)? {
            return Ok(found);
        }
        let may_refetch =
            cache.refetched_for_unknown_key_at.is_none_or(|at| at.elapsed() >= UNKNOWN_KEY_REFETCH_INTERVAL);
        let unknown = || TokenError::UnknownKey(kid.map_or_else(|| "no kid".to_owned(), |kid| format!("kid {kid:?}")));
        if !may_refetch {
            return Err(unknown());
        }
        cache.refetched_for_unknown_key_at = Some(Instant::now());
        tracing::info!(kid = kid.unwrap_or(""), "a token names a signing key not in the cache; refetching the JWKS");
        if let Err(detail) = self.refetch(&mut cache).await {
            tracing::warn!(%detail, "could not refetch the OpenID signing keys");
        }
        pick_key(&cache.keys, algorithm, kid)?.ok_or_else(unknown)
    }

    /// Discovery (once) and the JWKS, into the cache.
    async fn refetch(&self, cache: &mut KeyCache) -> Result<(), String> {
        cache.attempted_at = Some(Instant::now());
        let jwks_uri = match &cache.jwks_uri {
            Some(uri) => uri.clone(),
            None => {
                let uri = self.discover().await?;
                cache.jwks_uri = Some(uri.clone());
                uri
            }
        };
        let document = self.get_json(&jwks_uri).await?;
        let entries = document.get("keys").and_then(Value::as_array).ok_or("the JWKS has no `keys` array")?;
        // A key of a type this crate cannot read (say, an encryption key) must not hide the others.
        cache.keys = entries.iter().filter_map(|entry| serde_json::from_value::<Jwk>(entry.clone()).ok()).collect();
        cache.fetched_at = Some(Instant::now());
        Ok(())
    }

    /// The JWKS URL from `{issuer}/.well-known/openid-configuration`, whose `issuer` must be
    /// exactly the configured one (OpenID Connect Discovery §4.3).
    async fn discover(&self) -> Result<String, String> {
        let url = format!("{}/.well-known/openid-configuration", self.settings.issuer.trim_end_matches('/'));
        let document = self.get_json(&url).await?;
        let issuer = document.get("issuer").and_then(Value::as_str).unwrap_or_default();
        if issuer != self.settings.issuer {
            return Err(format!(
                "the discovery document at {url} names the issuer {issuer:?}, not the configured {:?}",
                self.settings.issuer
            ));
        }
        let jwks_uri =
            document.get("jwks_uri").and_then(Value::as_str).ok_or("the discovery document has no jwks_uri")?;
        crate::config::check_issuer_url(jwks_uri).map_err(|reason| format!("jwks_uri {jwks_uri:?}: {reason}"))?;
        Ok(jwks_uri.to_owned())
    }

    async fn get_json(&self, url: &str) -> Result<Value, String> {
        let response = self.http.get(url).send().await.map_err(|e| format!("GET {url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("GET {url} answered {}", response.status()));
        }
        response.json().await.map_err(|e| format!("GET {url}: not JSON ({e})"))
    }
}

/// The token header's `alg` (only asymmetric ones) and `kid`, read before anything else so
/// that `alg: none` and HMAC are refused by name.
fn read_header(token: &str) -> Result<(Algorithm, Option<String>), TokenError> {
    let encoded = token.split('.').next().unwrap_or_default();
    let bytes = URL_SAFE_NO_PAD
        .decode(encoded.trim_end_matches('='))
        .map_err(|_| TokenError::Malformed("its header is not base64url".to_owned()))?;
    let header: Map<String, Value> = serde_json::from_slice(&bytes)
        .map_err(|_| TokenError::Malformed("its header is not a JSON object".to_owned()))?;
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("(none given)");
    let algorithm = match alg {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        other => return Err(TokenError::UnsupportedAlgorithm(other.to_owned())),
    };
    Ok((algorithm, header.get("kid").and_then(Value::as_str).map(str::to_owned)))
}

/// The key with this `kid` (or the only one, when the token names none) if it allows
/// `algorithm`. `Ok(None)` when no such key is published; an error when it is but forbids
/// the algorithm (a refetch would not help).
fn pick_key(keys: &[Jwk], algorithm: Algorithm, kid: Option<&str>) -> Result<Option<Jwk>, TokenError> {
    let signing = |jwk: &&Jwk| !matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption));
    let candidates: Vec<&Jwk> = match kid {
        Some(kid) => keys.iter().filter(signing).filter(|jwk| jwk.common.key_id.as_deref() == Some(kid)).collect(),
        None => keys.iter().filter(signing).filter(|jwk| allows(jwk, algorithm)).collect(),
    };
    if candidates.is_empty() {
        return Ok(None);
    }
    if kid.is_none() && candidates.len() > 1 {
        return Err(TokenError::Malformed("it names no kid and the provider publishes several keys".to_owned()));
    }
    match candidates.into_iter().find(|jwk| allows(jwk, algorithm)) {
        Some(jwk) => Ok(Some(jwk.clone())),
        None => Err(TokenError::UnsupportedAlgorithm(format!("{algorithm:?}, which its signing key does not allow"))),
    }
}

/// Whether `jwk` may verify `algorithm`: the key's type fits, and its `alg`, when published,
/// is exactly this one.
fn allows(jwk: &Jwk, algorithm: Algorithm) -> bool {
    if let Some(declared) = &jwk.common.key_algorithm {
        if declared.to_string() != format!("{algorithm:?}") {
            return false;
        }
    }
    match (&jwk.algorithm, algorithm) {
        (
            AlgorithmParameters::RSA(_),
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512,
        ) => true,
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES256) => ec.curve == EllipticCurve::P256,
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES384) => ec.curve == EllipticCurve::P384,
        (AlgorithmParameters::OctetKeyPair(okp), Algorithm::EdDSA) => okp.curve == EllipticCurve::Ed25519,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(json: &str) -> String {
        format!("{}.e30.c2ln", URL_SAFE_NO_PAD.encode(json))
    }

    #[test]
    fn only_asymmetric_algorithms_pass_the_header_check() {
        assert_eq!(
            read_header(&header(r#"{"alg":"RS256","kid":"k1"}"#)),
            Ok((Algorithm::RS256, Some("k1".to_owned())))
        );
        for alg in ["none", "HS256", "HS384", "HS512", "ES512", "nonsense"] {
            let refused = read_header(&header(&format!(r#"{{"alg":"{alg}"}}"#)));
            assert_eq!(refused, Err(TokenError::UnsupportedAlgorithm(alg.to_owned())), "{alg} is refused by name");
        }
        assert!(matches!(read_header(&header("{}")), Err(TokenError::UnsupportedAlgorithm(_))), "no alg at all");
    }

    #[test]
    fn jwt_shaped_means_three_base64url_parts() {
        assert!(is_jwt_shaped("eyJh.eyJz.c2ln"));
        assert!(is_jwt_shaped("eyJh.eyJz."), "an empty signature is still the shape (alg none)");
        assert!(!is_jwt_shaped("test-0123456789abcdef"), "a static token is not");
        assert!(!is_jwt_shaped("a.b"));
        assert!(!is_jwt_shaped("a.b.c d"));
    }

    fn rsa_jwk(kid: &str, alg: Option<&str>) -> Jwk {
        let mut value = serde_json::json!({"kty": "RSA", "kid": kid, "n": "AQAB", "e": "AQAB", "use": "sig"});
        if let Some(alg) = alg {
            value["alg"] = Value::from(alg);
        }
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_key_is_used_only_for_the_algorithm_it_allows() {
        let keys = [rsa_jwk("k1", Some("RS256")), rsa_jwk("k2", None)];
        assert!(pick_key(&keys, Algorithm::RS256, Some("k1")).unwrap().is_some(), "RS256 on an RS256 key");
        assert!(
            matches!(pick_key(&keys, Algorithm::PS256, Some("k1")), Err(TokenError::UnsupportedAlgorithm(_))),
            "PS256 on a key published for RS256 is refused"
        );
        assert!(
            pick_key(&keys, Algorithm::PS512, Some("k2")).unwrap().is_some(),
            "an RSA key without alg allows RS*/PS*"
        );
        assert!(
            matches!(pick_key(&keys, Algorithm::ES256, Some("k2")), Err(TokenError::UnsupportedAlgorithm(_))),
            "an EC algorithm never verifies with an RSA key"
        );
        assert_eq!(pick_key(&keys, Algorithm::RS256, Some("k3")), Ok(None), "an unknown kid is not found");
    }
}
