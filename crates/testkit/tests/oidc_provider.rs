//! The OpenID provider the kit starts is the real oidc-provider, and it gives what the app and
//! the backend will rely on: JWT access tokens for the backend's audience with email and
//! groups, rotating refresh tokens, key rotation, the device flow, revocation, and a browser
//! sign-in that ends at the app's loopback redirect.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use dropship_testkit::{code_challenge, OidcOptions, OidcProvider};
use serde_json::Value;

/// A JWT's header and payload, not verified (the provider signed it; these tests read it).
fn decode_jwt(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWS has three parts: {token}");
    let part = |p: &str| -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).expect("base64url")).expect("a JSON part")
    };
    (part(parts[0]), part(parts[1]))
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs()
}

fn jwks_kids(provider: &OidcProvider) -> Vec<String> {
    let jwks = provider.jwks();
    jwks["keys"].as_array().expect("keys").iter().map(|k| k["kid"].as_str().expect("a kid").to_owned()).collect()
}

#[test]
fn discovery_names_the_issuer_and_every_endpoint_the_app_uses() {
    let provider = OidcProvider::start();
    let discovery = provider.discovery();
    assert_eq!(discovery["issuer"], provider.issuer(), "the issuer is the provider's own loopback URL");
    assert!(provider.issuer().starts_with("http://127.0.0.1:"), "it listens on loopback only");
    for endpoint in
        ["authorization_endpoint", "token_endpoint", "jwks_uri", "device_authorization_endpoint", "revocation_endpoint"]
    {
        let url = provider.endpoint(endpoint);
        assert!(url.starts_with(provider.issuer()), "{endpoint} is on the provider: {url}");
    }
    assert_eq!(discovery["code_challenge_methods_supported"], serde_json::json!(["S256"]), "PKCE with S256");
}

#[test]
fn alices_access_token_is_an_rs256_jwt_for_the_backend_with_her_email_and_groups() {
    let provider = OidcProvider::start();
    let tokens = provider.tokens_for("alice@example.test");
    let (header, claims) = decode_jwt(&tokens.access_token);
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "at+jwt", "an RFC 9068 access token");
    let kid = header["kid"].as_str().expect("the header names its key");
    assert!(jwks_kids(&provider).contains(&kid.to_owned()), "the signing key {kid} is in the JWKS");

    assert_eq!(claims["aud"], "urn:dropship:backend", "the audience is the backend's resource");
    assert_eq!(claims["iss"], provider.issuer());
    assert_eq!(claims["sub"], "user-alice", "sub is the stable id, not the email");
    assert_eq!(claims["client_id"], "dropship");
    assert_eq!(claims["email"], "alice@example.test");
    assert_eq!(claims["groups"], serde_json::json!(["staff", "dropship-admins"]));
    let exp = claims["exp"].as_u64().expect("exp");
    assert!(exp.abs_diff(now() + 300) <= 5, "exp is now + the default 300 s TTL, not {exp}");
    assert_eq!(tokens.expires_in, 300);

    let (_, id_claims) = decode_jwt(tokens.id_token.as_deref().expect("an ID token for the openid scope"));
    assert_eq!(id_claims["aud"], "dropship", "the ID token is for the client");
    assert_eq!(id_claims["email"], "alice@example.test", "with the email scope's claims");
    assert_eq!(id_claims["groups"], serde_json::json!(["staff", "dropship-admins"]));
    assert!(tokens.refresh_token.is_some(), "offline_access brings a refresh token");
}

#[test]
fn a_refresh_buys_a_new_access_token_and_rotates_the_refresh_token() {
    let provider = OidcProvider::start();
    let first = provider.tokens_for("bob@example.test");
    let first_refresh = first.refresh_token.expect("a refresh token");
    let second = provider.refresh(&first_refresh).expect("the refresh token is accepted");
    let (_, claims) = decode_jwt(&second.access_token);
    assert_eq!(claims["aud"], "urn:dropship:backend");
    assert_eq!(claims["email"], "bob@example.test", "refreshed tokens carry the email too");
    assert_eq!(claims["groups"], serde_json::json!(["staff"]));
    assert_ne!(second.access_token, first.access_token);
    let second_refresh = second.refresh_token.expect("a new refresh token with every refresh");
    assert_ne!(second_refresh, first_refresh, "the public client's refresh token is rotated");

    let reused = provider.refresh(&first_refresh).expect_err("a rotated-away refresh token is refused");
    assert_eq!(reused.error, "invalid_grant", "{reused}");
    let after_reuse = provider.refresh(&second_refresh);
    assert!(after_reuse.is_err(), "reusing an old refresh token revokes the whole grant: {after_reuse:?}");
}

/// A token request as an app would send it, without the kit's `resource` parameter.
fn post_token(provider: &OidcProvider, form: &[(&str, &str)]) -> Value {
    dropship_testkit::block_on(async {
        let response = reqwest::Client::new()
            .post(provider.endpoint("token_endpoint"))
            .form(form)
            .send()
            .await
            .expect("the token endpoint answers");
        let status = response.status();
        let answer: Value = response.json().await.expect("JSON");
        assert!(status.is_success(), "the token endpoint answered {status}: {answer}");
        answer
    })
}

#[test]
fn neither_the_code_exchange_nor_a_refresh_needs_the_resource_parameter() {
    let provider = OidcProvider::start();
    let (port, _targets) = loopback_app();
    let redirect_uri = format!("http://127.0.0.1:{port}/callback");
    let verifier = "another-verifier-that-is-long-enough-for-pkce-0123456789";
    let url = provider.authorization_url(&redirect_uri, "s", &code_challenge(verifier));
    assert!(!url.as_str().contains("resource="), "no resource on the authorization request: {url}");
    let callback = provider.login_in_browser(url.as_str(), "alice@example.test");
    let query: HashMap<String, String> =
        reqwest::Url::parse(&callback).expect("a URL").query_pairs().into_owned().collect();

    let exchanged = post_token(
        &provider,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", "dropship"),
            ("code", &query["code"]),
            ("redirect_uri", &redirect_uri),
            ("code_verifier", verifier),
        ],
    );
    let (_, claims) = decode_jwt(exchanged["access_token"].as_str().expect("an access token"));
    assert_eq!(claims["aud"], "urn:dropship:backend", "the default resource is granted and used");

    let refreshed = post_token(
        &provider,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "dropship"),
            ("refresh_token", exchanged["refresh_token"].as_str().expect("a refresh token")),
        ],
    );
    let (_, claims) = decode_jwt(refreshed["access_token"].as_str().expect("an access token"));
    assert_eq!(claims["aud"], "urn:dropship:backend", "the granted resource is used");
}

#[test]
fn after_a_key_rotation_new_tokens_carry_the_new_kid_and_the_jwks_holds_both_keys() {
    let provider = OidcProvider::start();
    let before = provider.tokens_for("alice@example.test");
    let (old_header, _) = decode_jwt(&before.access_token);
    let old_kid = old_header["kid"].as_str().expect("a kid").to_owned();

    let new_kid = provider.rotate_signing_key();
    assert_ne!(new_kid, old_kid);
    let kids = jwks_kids(&provider);
    assert!(kids.contains(&old_kid) && kids.contains(&new_kid), "the JWKS holds the old and the new key: {kids:?}");

    let refreshed = provider.refresh(before.refresh_token.as_deref().expect("a refresh token"));
    let refreshed = refreshed.expect("refresh tokens survive the rotation");
    let (header, _) = decode_jwt(&refreshed.access_token);
    assert_eq!(header["kid"], new_kid.as_str(), "the new key signs refreshed tokens");
    let (header, _) = decode_jwt(&provider.tokens_for("alice@example.test").access_token);
    assert_eq!(header["kid"], new_kid.as_str(), "and new sign-ins");
}

#[test]
fn a_shorter_access_token_ttl_applies_to_tokens_issued_after_the_change() {
    let provider = OidcProvider::start_with(OidcOptions { access_token_ttl_secs: 120, ..OidcOptions::default() });
    assert_eq!(provider.tokens_for("bob@example.test").expires_in, 120, "the option sets the TTL");
    provider.set_access_token_ttl(5);
    let tokens = provider.tokens_for("bob@example.test");
    assert_eq!(tokens.expires_in, 5);
    let (_, claims) = decode_jwt(&tokens.access_token);
    assert!(claims["exp"].as_u64().expect("exp").abs_diff(now() + 5) <= 2);
}

#[test]
fn the_device_flow_signs_bob_in_once_he_approves_the_code() {
    let provider = OidcProvider::start();
    let device = provider.start_device_flow();
    assert!(device.verification_uri.starts_with(provider.issuer()), "{}", device.verification_uri);
    let pending = provider.device_tokens(&device).expect_err("no tokens before approval");
    assert_eq!(pending.error, "authorization_pending", "{pending}");

    provider.approve_device_code(&device.user_code, "bob@example.test");
    let tokens = provider.device_tokens(&device).expect("tokens after approval");
    let (_, claims) = decode_jwt(&tokens.access_token);
    assert_eq!(claims["aud"], "urn:dropship:backend");
    assert_eq!(claims["email"], "bob@example.test");
    assert!(tokens.refresh_token.is_some(), "the device gets a refresh token too");
}

#[test]
fn a_revoked_refresh_token_no_longer_refreshes() {
    let provider = OidcProvider::start();
    let tokens = provider.tokens_for("alice@example.test");
    let refresh_token = tokens.refresh_token.expect("a refresh token");
    provider.revoke(&refresh_token);
    let refused = provider.refresh(&refresh_token).expect_err("a revoked refresh token is refused");
    assert_eq!(refused.error, "invalid_grant", "{refused}");
}

/// A tiny app: answers every request on a loopback port and reports each request's target.
fn loopback_app() -> (u16, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let port = listener.local_addr().expect("an address").port();
    let (seen, targets) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request_line = String::new();
            let mut reader = BufReader::new(stream.try_clone().expect("a stream"));
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let target = request_line.split(' ').nth(1).unwrap_or_default().to_owned();
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\nconnection: close\r\n\r\nsigned in");
            if seen.send(target).is_err() {
                break;
            }
        }
    });
    (port, targets)
}

#[test]
fn a_browser_sign_in_delivers_the_code_to_the_apps_loopback_redirect_on_any_port() {
    let provider = OidcProvider::start();
    let (port, targets) = loopback_app();
    let redirect_uri = format!("http://127.0.0.1:{port}/callback");
    let verifier = "a-verifier-that-is-long-enough-for-pkce-0123456789";
    let url = provider.authorization_url(&redirect_uri, "state-1", &code_challenge(verifier));

    let callback = provider.login_in_browser(url.as_str(), "alice@example.test");
    let target = targets.recv_timeout(Duration::from_secs(5)).expect("the app received the redirect");
    assert_eq!(format!("http://127.0.0.1:{port}{target}"), callback, "the app saw the URL the browser returned");
    let query: HashMap<String, String> =
        reqwest::Url::parse(&callback).expect("a URL").query_pairs().into_owned().collect();
    assert_eq!(query["state"], "state-1");
    assert_eq!(query["iss"], provider.issuer(), "RFC 9207: the issuer comes with the code");
    let tokens = provider.exchange_code(&query["code"], &redirect_uri, verifier).expect("the code is exchanged");
    assert_eq!(decode_jwt(&tokens.access_token).1["email"], "alice@example.test");

    // Again: her session and grant are remembered, so no login or consent page shows.
    let url = provider.authorization_url(&redirect_uri, "state-2", &code_challenge(verifier));
    let again = provider.login_in_browser(url.as_str(), "alice@example.test");
    assert!(again.contains("state=state-2") && again.contains("code="), "{again}");
    targets.recv_timeout(Duration::from_secs(5)).expect("the app received the second redirect");
}

#[test]
fn bob_signs_in_with_his_own_session_after_alice() {
    let provider = OidcProvider::start();
    let alice = provider.tokens_for("alice@example.test");
    let bob = provider.tokens_for("bob@example.test");
    assert_eq!(decode_jwt(&alice.access_token).1["sub"], "user-alice");
    assert_eq!(decode_jwt(&bob.access_token).1["sub"], "user-bob", "each person has a browser of their own");
}

#[test]
fn a_sign_in_without_prompt_consent_reuses_the_session_and_brings_no_refresh_token() {
    let provider = OidcProvider::start();
    provider.tokens_for("bob@example.test");
    let (port, _targets) = loopback_app();
    let redirect_uri = format!("http://127.0.0.1:{port}/callback");
    let verifier = "yet-another-verifier-that-is-long-enough-for-pkce-0123456789";
    let mut url = provider.authorization_url(&redirect_uri, "s", &code_challenge(verifier));
    let without_prompt: Vec<(String, String)> = url.query_pairs().into_owned().filter(|(k, _)| k != "prompt").collect();
    url.query_pairs_mut().clear().extend_pairs(without_prompt);

    // Bob's session and grant exist: no login page, no consent page, straight back to the app.
    let callback = provider.login_in_browser(url.as_str(), "bob@example.test");
    let query: HashMap<String, String> =
        reqwest::Url::parse(&callback).expect("a URL").query_pairs().into_owned().collect();
    let tokens = provider.exchange_code(&query["code"], &redirect_uri, verifier).expect("the code is exchanged");
    assert!(tokens.refresh_token.is_none(), "oidc-provider drops offline_access without prompt=consent");
}

#[test]
#[should_panic(expected = "wrong login or password")]
fn the_login_page_refuses_a_wrong_password() {
    let mut options = OidcOptions::default();
    options.users[0].password = "not-what-the-provider-knows".to_owned();
    let provider = OidcProvider::start();
    // A second provider's idea of alice, with another password, typed into the first.
    let impostor = OidcProvider::start_with(options);
    let url = provider.authorization_url("http://127.0.0.1/callback", "s", &code_challenge("v".repeat(43).as_str()));
    impostor.login_in_browser(url.as_str(), "alice@example.test");
}
