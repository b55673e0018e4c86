//! Sign-in in the system browser: authorisation code with PKCE (S256) and a loopback redirect
//! to `http://127.0.0.1:<free port>/callback` (RFC 8252), with `state` and `nonce` checked.

use std::time::Duration;

use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::provider::IdentityProvider;
use super::session::{token_request, Session};
use super::{id_token, random_token, AuthError};

/// A browser that sends more than this before the blank line is not sending a redirect.
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// A sign-in waiting for the browser to come back.
pub struct BrowserSignIn {
    provider: IdentityProvider,
    listener: TcpListener,
    redirect_uri: String,
    verifier: String,
    state: String,
    nonce: String,
    /// Where to send the person: open it in their browser.
    pub authorization_url: url::Url,
}

impl BrowserSignIn {
    /// Listens on a free loopback port and builds the provider's authorisation address.
    pub async fn start(provider: IdentityProvider) -> Result<BrowserSignIn, AuthError> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| AuthError::Storage(format!("cannot listen on 127.0.0.1 for the browser's answer: {e}")))?;
        let port = listener.local_addr().map_err(|e| AuthError::Storage(e.to_string()))?.port();
        let redirect_uri = format!("http://127.0.0.1:{port}/callback");
        let (verifier, state, nonce) = (random_token(), random_token(), random_token());
        let challenge = pkce_challenge(&verifier);
        let mut authorization_url =
            url::Url::parse(&provider.authorization_endpoint).map_err(|e| AuthError::BadAnswer {
                what: "The identity provider",
                url: provider.authorization_endpoint.clone(),
                detail: e.to_string(),
            })?;
        authorization_url
            .query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &provider.client_id)
            .append_pair("redirect_uri", &redirect_uri)
            .append_pair("scope", &provider.scopes.join(" "))
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            // Refresh tokens for offline access need consent at some providers (oidc-provider).
            .append_pair("prompt", "consent");
        Ok(BrowserSignIn { provider, listener, redirect_uri, verifier, state, nonce, authorization_url })
    }

    /// Waits (up to `timeout`) for the browser to come back with a code, exchanges it, checks
    /// the ID token and asks the backend who signed in.
    pub async fn finish(
        self,
        http: &reqwest::Client,
        backend_url: &url::Url,
        timeout: Duration,
    ) -> Result<Session, AuthError> {
        let code =
            tokio::time::timeout(timeout, self.wait_for_code()).await.map_err(|_| AuthError::TimedOut(timeout))??;
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", self.redirect_uri.as_str()),
            ("client_id", self.provider.client_id.as_str()),
            ("code_verifier", self.verifier.as_str()),
        ];
        let answer = token_request(http, &self.provider, &form)
            .await?
            .map_err(|(code, description)| AuthError::Refused(format!("{code} {description}").trim().to_owned()))?;
        let id_token = answer.id_token.as_deref().ok_or_else(|| {
            AuthError::Mismatch("the identity provider sent no ID token; is `openid` among the scopes?".into())
        })?;
        id_token::check(http, &self.provider, id_token, &self.nonce).await?;
        Session::establish(http, backend_url, self.provider, answer).await
    }

    /// Answers loopback requests until one is this sign-in's redirect. Others (a favicon, a
    /// forged redirect with the wrong `state`) are answered and ignored.
    async fn wait_for_code(&self) -> Result<String, AuthError> {
        loop {
            let (mut stream, _) = self
                .listener
                .accept()
                .await
                .map_err(|e| AuthError::Storage(format!("the loopback listener failed: {e}")))?;
            let Some(target) = read_request_target(&mut stream).await else { continue };
            let Ok(url) = url::Url::parse(&format!("http://127.0.0.1{target}")) else { continue };
            if url.path() != "/callback" {
                respond(&mut stream, 404, "Not found", "This address only takes Dropship's sign-in.").await;
                continue;
            }
            let query: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
            if query.get("state") != Some(&self.state) {
                respond(
                    &mut stream,
                    400,
                    "Unknown sign-in",
                    "This answer belongs to another sign-in; start again from Dropship.",
                )
                .await;
                continue;
            }
            if let Some(error) = query.get("error") {
                let description = query.get("error_description").cloned().unwrap_or_default();
                respond(
                    &mut stream,
                    200,
                    "Sign-in refused",
                    &format!("The identity provider said: {error} {description}"),
                )
                .await;
                return Err(AuthError::Refused(format!("{error} {description}").trim().to_owned()));
            }
            let Some(code) = query.get("code").filter(|c| !c.is_empty()) else {
                respond(&mut stream, 400, "No code", "The identity provider sent no code; start again from Dropship.")
                    .await;
                continue;
            };
            respond(&mut stream, 200, "Signed in", "You are signed in to Dropship. You can close this tab.").await;
            return Ok(code.clone());
        }
    }
}

/// `BASE64URL(SHA-256(verifier))`, RFC 7636's S256.
fn pkce_challenge(verifier: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()))
}

/// The request target of `GET <target> HTTP/1.1`, or `None` for anything else.
async fn read_request_target(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buffer = [0u8; 2048];
    let read = async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST_HEAD {
            let n = stream.read(&mut buffer).await.ok()?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buffer[..n]);
        }
        Some(())
    };
    tokio::time::timeout(Duration::from_secs(10), read).await.ok()??;
    let line = String::from_utf8_lossy(&head).lines().next()?.to_owned();
    let mut parts = line.split(' ');
    (parts.next()? == "GET").then_some(())?;
    parts.next().map(str::to_owned)
}

async fn respond(stream: &mut TcpStream, status: u16, title: &str, text: &str) {
    let body = format!(
        "<!doctype html><meta charset=utf-8><title>Dropship: {title}</title>\
         <body style=\"font:16px system-ui;margin:3em\"><h1>{title}</h1><p>{text}</p></body>"
    );
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        _ => "Not Found",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pkce_challenge_is_rfc_7636_s256() {
        // The example of RFC 7636, appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "S256 of the RFC's verifier"
        );
    }
}
