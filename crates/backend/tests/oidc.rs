//! OpenID Connect access tokens against a small issuer this test runs itself (discovery and a
//! JWKS on 127.0.0.1, RSA keys made by the `openssl` CLI at test time), because forging the
//! tokens a backend must refuse needs a signing key the test controls.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::*;
use dropship_testkit::{runtime, Backend, BackendOptions};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{json, Value};

const AUDIENCE: &str = "urn:dropship:backend";

/// An RSA key made for this test run: its PKCS#1 DER (to sign), public PEM and JWK.
struct TestKey {
    kid: String,
    der: Vec<u8>,
    public_pem: Vec<u8>,
    jwk: Value,
}

fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let output = Command::new("openssl").args(args).current_dir(dir).output().expect("the openssl CLI runs");
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}

fn make_key(kid: &str) -> TestKey {
    let dir = tempfile::tempdir().expect("a temp dir for the key");
    openssl(dir.path(), &["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "key.pem"]);
    openssl(dir.path(), &["rsa", "-in", "key.pem", "-traditional", "-outform", "DER", "-out", "key.der"]);
    openssl(dir.path(), &["rsa", "-in", "key.pem", "-pubout", "-out", "pub.pem"]);
    let modulus = String::from_utf8(openssl(dir.path(), &["rsa", "-in", "key.pem", "-noout", "-modulus"])).unwrap();
    let hex = modulus.trim().trim_start_matches("Modulus=");
    let n: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
    TestKey {
        kid: kid.to_owned(),
        der: std::fs::read(dir.path().join("key.der")).unwrap(),
        public_pem: std::fs::read(dir.path().join("pub.pem")).unwrap(),
        jwk: json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
            "n": URL_SAFE_NO_PAD.encode(n), "e": "AQAB",
        }),
    }
}

/// Two keys for the whole test process (2048-bit generation takes a moment).
fn keys() -> &'static (TestKey, TestKey) {
    static KEYS: OnceLock<(TestKey, TestKey)> = OnceLock::new();
    KEYS.get_or_init(|| (make_key("key-1"), make_key("key-2")))
}

/// What the test issuer serves, and how often its JWKS was fetched.
struct IssuerState {
    issuer: String,
    jwks: Mutex<Vec<Value>>,
    jwks_fetches: AtomicUsize,
}

/// A running test issuer on 127.0.0.1.
struct Issuer {
    url: String,
    state: Arc<IssuerState>,
}

impl Issuer {
    fn start(served: &[&TestKey]) -> Issuer {
        Self::start_with(std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port"), served)
    }

    fn start_with(listener: std::net::TcpListener, served: &[&TestKey]) -> Issuer {
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(IssuerState {
            issuer: url.clone(),
            jwks: Mutex::new(served.iter().map(|key| key.jwk.clone()).collect()),
            jwks_fetches: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(|State(state): State<Arc<IssuerState>>| async move {
                    Json(json!({ "issuer": state.issuer, "jwks_uri": format!("{}/jwks", state.issuer) }))
                }),
            )
            .route(
                "/jwks",
                get(|State(state): State<Arc<IssuerState>>| async move {
                    state.jwks_fetches.fetch_add(1, Ordering::SeqCst);
                    Json(json!({ "keys": state.jwks.lock().unwrap().clone() }))
                }),
            )
            .with_state(Arc::clone(&state));
        runtime().spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
            axum::serve(listener, app).await.expect("the test issuer serves");
        });
        Issuer { url, state }
    }

    fn serve(&self, served: &[&TestKey]) {
        *self.state.jwks.lock().unwrap() = served.iter().map(|key| key.jwk.clone()).collect();
    }

    fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    /// A backend that accepts this issuer's tokens; `alice-admins` members are admins.
    fn backend(&self) -> Backend {
        start_backend_with(BackendOptions {
            extra_args: [
                "--oidc-issuer",
                &self.url,
                "--oidc-audience",
                AUDIENCE,
                "--oidc-client-id",
                "dropship-app",
                "--admin-group",
                "dropship-admins",
            ]
            .map(str::to_owned)
            .to_vec(),
            ..Default::default()
        })
    }

    /// Claims that pass every check, to be spoiled one at a time.
    fn claims(&self) -> Value {
        let now = now();
        json!({
            "iss": self.url, "aud": AUDIENCE, "sub": "user-123", "email": "alice@example.com",
            "groups": ["staff"], "iat": now, "nbf": now, "exp": now + 600,
        })
    }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn sign(key: &TestKey, claims: &Value) -> String {
    let header = Header { kid: Some(key.kid.clone()), ..Header::new(Algorithm::RS256) };
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_rsa_der(&key.der)).expect("the test key signs")
}

fn me(backend: &Backend, token: &str) -> Reply {
    call(backend, "GET", "/api/v1/me", Some(token), None)
}

/// The 401 a refused token gets: the message and the `WWW-Authenticate` header name the problem.
fn assert_refused(backend: &Backend, token: &str, words: &str, intent: &str) {
    let reply = me(backend, token);
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{intent}: {}", reply.text);
    assert_eq!(error_code(&reply), "unauthorized", "{intent}");
    let message = reply.body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(words), "{intent}: the message says {words:?}: {message}");
    let challenge = www_authenticate(backend, token);
    assert!(
        challenge.starts_with("Bearer error=\"invalid_token\"") && challenge.contains(words),
        "{intent}: WWW-Authenticate names the problem too: {challenge}"
    );
}

fn www_authenticate(backend: &Backend, token: &str) -> String {
    let url = format!("{}/api/v1/me", backend.url);
    let token = token.to_owned();
    dropship_testkit::block_on(async move {
        let response = reqwest::Client::new().get(&url).bearer_auth(token).send().await.unwrap();
        response.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
    })
}

#[test]
fn a_valid_access_token_names_its_user_groups_and_admin_rights() {
    let (key, _) = keys();
    let issuer = Issuer::start(&[key]);
    let backend = issuer.backend();
    let reply = me(&backend, &sign(key, &issuer.claims()));
    assert_eq!(reply.status, StatusCode::OK, "a token that passes every check is accepted: {}", reply.text);
    assert_eq!(
        reply.body,
        json!({ "user": "alice@example.com", "groups": ["staff"], "admin": false }),
        "the user is the email claim, groups come from the groups claim"
    );

    let mut admin = issuer.claims();
    admin["groups"] = json!(["staff", "dropship-admins"]);
    admin.as_object_mut().unwrap().remove("email");
    let reply = me(&backend, &sign(key, &admin));
    assert_eq!(reply.body["user"], "user-123", "without an email the user is the sub claim: {}", reply.text);
    assert_eq!(reply.body["admin"], true, "a member of --admin-group is an admin");
}

#[test]
fn refused_access_tokens_each_say_what_is_wrong() {
    let (key, other) = keys();
    let issuer = Issuer::start(&[key]);
    let backend = issuer.backend();
    let spoiled = |field: &str, value: Value| {
        let mut claims = issuer.claims();
        claims[field] = value;
        sign(key, &claims)
    };
    assert_refused(&backend, &spoiled("exp", json!(now() - 120)), "expired", "an expired token (beyond 60 s leeway)");
    assert_refused(&backend, &spoiled("nbf", json!(now() + 600)), "not yet valid", "a token valid only later");
    assert_refused(&backend, &spoiled("iss", json!("http://127.0.0.1:1")), "wrong issuer", "another issuer's token");
    assert_refused(&backend, &spoiled("aud", json!("urn:someone:else")), "wrong audience", "a token for another API");

    let payload = URL_SAFE_NO_PAD.encode(issuer.claims().to_string());
    let none = format!("{}.{payload}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#));
    assert_refused(&backend, &none, "unsupported algorithm", "alg: none is never accepted");

    // The classic confusion: HMAC "signed" with the public key, which anyone can download.
    let hs256 = jsonwebtoken::encode(
        &Header { kid: Some(key.kid.clone()), ..Header::new(Algorithm::HS256) },
        &issuer.claims(),
        &EncodingKey::from_secret(&key.public_pem),
    )
    .unwrap();
    assert_refused(&backend, &hs256, "unsupported algorithm", "HS256 keyed with the issuer's public key");

    let unknown_kid = TestKey { kid: "never-published".to_owned(), der: other.der.clone(), ..make_stub() };
    assert_refused(
        &backend,
        &sign(&unknown_kid, &issuer.claims()),
        "unknown signing key",
        "a key the issuer does not publish",
    );

    let wrong_key = TestKey { kid: key.kid.clone(), der: other.der.clone(), ..make_stub() };
    assert_refused(
        &backend,
        &sign(&wrong_key, &issuer.claims()),
        "bad signature",
        "the right kid, signed with another key",
    );

    let token = sign(key, &issuer.claims());
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut claims = issuer.claims();
    claims["email"] = json!("mallory@example.com");
    parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
    assert_refused(&backend, &parts.join("."), "bad signature", "a payload changed after signing");

    assert_eq!(me(&backend, &token).status, StatusCode::OK, "the untouched token still works");
}

/// A key with only the fields a test overrides meaningful.
fn make_stub() -> TestKey {
    TestKey { kid: String::new(), der: Vec::new(), public_pem: Vec::new(), jwk: Value::Null }
}

#[test]
fn a_rotated_key_is_accepted_after_one_refetch_of_the_jwks() {
    let (old, new) = keys();
    let issuer = Issuer::start(&[old]);
    let backend = issuer.backend();
    assert_eq!(me(&backend, &sign(old, &issuer.claims())).status, StatusCode::OK, "the first key works");
    let before = issuer.jwks_fetches();
    issuer.serve(&[old, new]);
    let reply = me(&backend, &sign(new, &issuer.claims()));
    assert_eq!(reply.status, StatusCode::OK, "a token signed with the new key is accepted: {}", reply.text);
    assert_eq!(issuer.jwks_fetches(), before + 1, "after exactly one refetch of the JWKS");
    assert_eq!(me(&backend, &sign(new, &issuer.claims())).status, StatusCode::OK);
    assert_eq!(issuer.jwks_fetches(), before + 1, "the new key is cached from then on");
}

#[test]
fn a_flood_of_unknown_key_ids_refetches_the_jwks_at_most_once_per_interval() {
    let (key, other) = keys();
    let issuer = Issuer::start(&[key]);
    let backend = issuer.backend();
    assert_eq!(me(&backend, &sign(key, &issuer.claims())).status, StatusCode::OK);
    let before = issuer.jwks_fetches();
    for n in 0..25 {
        let junk = TestKey { kid: format!("junk-{n}"), der: other.der.clone(), ..make_stub() };
        let reply = me(&backend, &sign(&junk, &issuer.claims()));
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "junk kid {n} is refused");
    }
    assert!(
        issuer.jwks_fetches() <= before + 1,
        "25 made-up kids within the 10 s interval cost the issuer at most one JWKS fetch, not {}",
        issuer.jwks_fetches() - before
    );
    assert_eq!(me(&backend, &sign(key, &issuer.claims())).status, StatusCode::OK, "real tokens keep working");
}

#[test]
fn auth_names_the_issuer_client_scopes_and_audience_without_a_token() {
    let (key, _) = keys();
    let issuer = Issuer::start(&[key]);
    let backend = issuer.backend();
    let reply = call(&backend, "GET", "/api/v1/auth", None, None);
    assert_eq!(reply.status, StatusCode::OK, "public: {}", reply.text);
    assert_eq!(
        reply.body,
        json!({
            "issuer": issuer.url,
            "client_id": "dropship-app",
            "scopes": ["openid", "profile", "email", "offline_access"],
            "audience": AUDIENCE,
        }),
        "an app learns how to sign in from the backend URL alone"
    );

    let plain = start_backend();
    let reply = call(&plain, "GET", "/api/v1/auth", None, None);
    assert_eq!(reply.body, json!({ "issuer": null }), "without OIDC: issuer null, so apps ask for a token");
}

#[test]
fn a_backend_starts_while_its_identity_provider_is_down_and_checks_tokens_once_it_is_up() {
    let (key, _) = keys();
    // A port nobody listens on yet: the issuer comes up after the backend.
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = reserved.local_addr().unwrap().port();
    drop(reserved);
    let url = format!("http://127.0.0.1:{port}");
    let backend = start_backend_with(BackendOptions {
        extra_args: ["--oidc-issuer", &url, "--oidc-audience", AUDIENCE, "--oidc-client-id", "dropship-app"]
            .map(str::to_owned)
            .to_vec(),
        ..Default::default()
    });
    assert!(backend.log().contains("unreachable at start-up"), "a warning, not a failed start: {}", backend.log());
    let issuer = Issuer::start_on(port, &[key]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let reply = me(&backend, &sign(key, &issuer.claims()));
    assert_eq!(reply.status, StatusCode::OK, "once the provider answers, its tokens work: {}", reply.text);
}

impl Issuer {
    fn start_on(port: u16, served: &[&TestKey]) -> Issuer {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("the reserved port is still free");
        Self::start_with(listener, served)
    }
}
