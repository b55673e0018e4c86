//! Why a request failed, when the reason is the network's set-up rather than the server: a
//! certificate this machine does not trust, or a proxy that wants other credentials. These get
//! their own messages (and are not retried), because waiting does not fix them; the person does.

/// What a failed request tells about the network's set-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkFailure {
    /// The TLS handshake failed on the server's certificate; the text says what is wrong with it.
    Certificate(String),
    /// The proxy answered 407: it wants a user name and password, or refused the ones given.
    ProxyAuth,
    /// Anything else (refused, reset, timed out…), described for a person.
    Other(String),
}

impl NetworkFailure {
    /// The sentence for an error message about `host`.
    pub fn describe(&self, host: &str) -> String {
        match self {
            NetworkFailure::Certificate(problem) => format!(
                "the certificate of {host} is not trusted: {problem}. If your organisation uses its own certificate \
                 authority or a TLS-inspecting proxy, install its certificate in the system's trust store, or give it \
                 with --ca-file (CA file in Settings › Network)"
            ),
            NetworkFailure::ProxyAuth => PROXY_AUTH.to_owned(),
            NetworkFailure::Other(text) => text.clone(),
        }
    }

    /// Certificates and proxy credentials do not fix themselves: retrying only delays the message.
    pub fn is_permanent(&self) -> bool {
        !matches!(self, NetworkFailure::Other(_))
    }
}

pub const PROXY_AUTH: &str = "the proxy refused the request (HTTP 407, proxy authentication required): set the \
     proxy's user name and password in Settings › Network, or put them in the proxy URL of --proxy \
     (http://user:password@proxy:3128)";

/// Reads the chain of a reqwest error for a certificate or proxy problem.
pub fn classify_failure(e: &reqwest::Error) -> NetworkFailure {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(error) = source {
        if let Some(problem) = certificate_problem(error) {
            return NetworkFailure::Certificate(problem);
        }
        // hyper-util's tunnel error is private; its text is what it exposes.
        if error.to_string().contains("proxy authorization required") {
            return NetworkFailure::ProxyAuth;
        }
        source = error.source();
    }
    NetworkFailure::Other(describe_other(e))
}

/// rustls's verdict on the server's certificate, which reaches reqwest wrapped in an `io::Error`
/// inside another `io::Error` (and `io::Error::source` skips the wrapped error, so the wrapping
/// is unpeeled here).
fn certificate_problem(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut error = error;
    let tls = loop {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            break tls;
        }
        error = error.downcast_ref::<std::io::Error>()?.get_ref()?;
    };
    use rustls::CertificateError as C;
    let text = match tls {
        rustls::Error::InvalidCertificate(problem) => match problem {
            C::UnknownIssuer => "it was issued by a certificate authority this machine does not trust".into(),
            C::Expired | C::ExpiredContext { .. } => "it has expired".into(),
            C::NotValidYet | C::NotValidYetContext { .. } => {
                "it is not valid yet (is this machine's clock right?)".into()
            }
            C::NotValidForName | C::NotValidForNameContext { .. } => "it was issued for another host name".into(),
            C::Revoked => "it has been revoked".into(),
            C::BadSignature => "its signature does not verify".into(),
            other => format!("{other:?}"),
        },
        other => return Some(format!("the TLS handshake failed ({other})")),
    };
    Some(text)
}

fn describe_other(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "the request timed out".into();
    }
    if e.is_connect() {
        return "connection refused or no route to the host".into();
    }
    innermost(e)
}

/// The innermost source is usually the useful part ("dns error", "connection reset"), without
/// the URL (a query string may hold a signature).
pub(crate) fn innermost(e: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = e;
    while let Some(next) = source.source() {
        source = next;
    }
    let mut text = source.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), &crate::backend::redact_url(url));
    }
    text
}
