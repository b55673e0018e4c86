//! One PUT of a byte range of a file to a presigned URL: a whole file, or one part of a
//! multipart upload. The bytes are streamed from disk in fixed-size chunks, so memory stays
//! flat whatever the size.

use std::collections::BTreeMap;
use std::io::SeekFrom;
use std::path::Path;
use std::sync::Arc;

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use super::{Throttle, TransferError};

/// Read size for streaming a file into a request body.
const STREAM_CHUNK: usize = 256 * 1024;
/// Ranges up to this size are read in one go and sent from memory: one trip to the blocking
/// pool per file instead of one per chunk (plus open and stat), which was most of the client's
/// CPU per small file. At most this much per request in flight.
const SMALL_BODY: u64 = 1024 * 1024;

/// Permits of the engine's shared semaphore per unit of the concurrency setting. A request
/// takes all of them, unless its body is at most [`SHARED_SLOT_BODY`]: then it takes one.
/// Such uploads are bound by round trips rather than by bandwidth or CPU, so a concurrency of 8
/// keeps 32 of them in flight while never sending more than 8 larger bodies at once (2,000 ×
/// 64 KiB went about a tenth faster against SeaweedFS with 32 in flight). The bodies held in
/// memory stay within concurrency × [`SMALL_BODY`], as with one slot each.
pub const PERMITS_PER_SLOT: u32 = 4;
const SHARED_SLOT_BODY: u64 = SMALL_BODY / PERMITS_PER_SLOT as u64;

/// The permits a request sending `len` bytes takes; see [`PERMITS_PER_SLOT`].
pub fn permits_for(len: u64) -> u32 {
    if len <= SHARED_SLOT_BODY {
        1
    } else {
        PERMITS_PER_SLOT
    }
}

/// Called with the number of bytes of this request handed to the connection so far.
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// The bytes to send: `len` bytes at `offset` of a file expected to be `file_size` bytes long.
#[derive(Debug, Clone, Copy)]
pub struct Range {
    pub offset: u64,
    pub len: u64,
    pub file_size: u64,
}

/// Sends a whole file the way its presigned upload says: a PUT, or a presigned POST form.
pub async fn send_file(
    client: &reqwest::Client,
    upload: &crate::backend::PresignedUpload,
    path: &Path,
    size: u64,
    progress: Progress,
    throttle: &Arc<Throttle>,
) -> Result<(), TransferError> {
    let range = Range { offset: 0, len: size, file_size: size };
    check_destination(&upload.url)?;
    match &upload.method {
        crate::backend::UploadMethod::Put => {
            put_range(client, &upload.url, &upload.headers, path, range, progress, throttle).await.map(drop)
        }
        crate::backend::UploadMethod::PostForm { fields } => {
            super::post_form::post_form(client, &upload.url, fields, path, size, progress, throttle).await
        }
    }
}

/// Refuses to send a file's bytes in the clear to another machine: a plain-http upload URL is
/// only accepted for a loopback host (a local S3 such as the test stack). Checked before each
/// request, so a hostile or misconfigured backend fails that one file, not the batch.
pub fn check_destination(url: &url::Url) -> Result<(), TransferError> {
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    match url.scheme() {
        "https" if url.host().is_some() => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err(TransferError::UnsafeUrl {
            reason: format!(
                "plain http to {}, which is not this machine, would send the file unencrypted",
                url.host_str().unwrap_or("?")
            ),
        }),
        other => Err(TransferError::UnsafeUrl { reason: format!("the scheme {other:?} is not http(s)") }),
    }
}

/// A request body read from `file` in fixed-size chunks, each let out by the bandwidth limit
/// and then counted for progress.
pub(super) fn body_stream(
    file: impl tokio::io::AsyncRead + Send + 'static,
    progress: Progress,
    throttle: &Arc<Throttle>,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static {
    paced(ReaderStream::with_capacity(file, STREAM_CHUNK), progress, throttle)
}

/// A request body sent from memory in [`STREAM_CHUNK`] slices (no copies), paced and counted as
/// a streamed one is.
fn memory_stream(
    bytes: bytes::Bytes,
    progress: Progress,
    throttle: &Arc<Throttle>,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static {
    let slices = (0..bytes.len())
        .step_by(STREAM_CHUNK)
        .map(move |start| Ok(bytes.slice(start..bytes.len().min(start + STREAM_CHUNK))));
    paced(futures_util::stream::iter(slices.collect::<Vec<_>>()), progress, throttle)
}

/// Lets each chunk out through the bandwidth limit, then counts it for progress.
fn paced(
    chunks: impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static,
    progress: Progress,
    throttle: &Arc<Throttle>,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static {
    let throttle = throttle.clone();
    let mut sent = 0u64;
    chunks
        .then(move |chunk| {
            let throttle = throttle.clone();
            async move {
                if let Ok(bytes) = &chunk {
                    throttle.take(bytes.len()).await;
                }
                chunk
            }
        })
        .map(move |chunk| {
            if let Ok(bytes) = &chunk {
                sent += bytes.len() as u64;
                progress(sent);
            }
            chunk
        })
}

/// PUTs the range with exactly the signed headers and returns the ETag S3 answered with.
/// The length is declared up front, and the file's size is checked first, so a file that was
/// changed meanwhile fails instead of storing something else.
pub async fn put_range(
    client: &reqwest::Client,
    url: &url::Url,
    headers: &BTreeMap<String, String>,
    path: &Path,
    range: Range,
    progress: Progress,
    throttle: &Arc<Throttle>,
) -> Result<Option<String>, TransferError> {
    let request = signed_put(client, url, headers, range.len)?;
    if range.len <= SMALL_BODY {
        let body = read_small(path, range).await?;
        throttle.take(body.len()).await;
        progress(range.len);
        return finish(request.body(body), path, range).await;
    }
    let shown = path.display().to_string();
    let changed = |detail: String| TransferError::FileChanged { path: shown.clone(), detail };
    let mut file = tokio::fs::File::open(path).await.map_err(|e| changed(gone_or(e)))?;
    let now = file.metadata().await.map_err(|e| changed(e.to_string()))?.len();
    if now != range.file_size {
        return Err(changed(format!("it was {} bytes when checked and is {now} bytes now", range.file_size)));
    }
    if range.offset > 0 {
        file.seek(SeekFrom::Start(range.offset)).await.map_err(|e| changed(e.to_string()))?;
    }

    let stream = body_stream(file.take(range.len), progress, throttle);
    finish(request.body(reqwest::Body::wrap_stream(stream)), path, range).await
}

/// A PUT to a checked presigned URL with exactly the signed headers, its length declared up
/// front.
fn signed_put(
    client: &reqwest::Client,
    url: &url::Url,
    headers: &BTreeMap<String, String>,
    len: u64,
) -> Result<reqwest::RequestBuilder, TransferError> {
    check_destination(url)?;
    Ok(headers
        .iter()
        .fold(client.put(url.clone()), |request, (name, value)| request.header(name, value))
        .header(reqwest::header::CONTENT_LENGTH, len))
}

/// PUTs a range already read into memory (`bytes`, the `range` of the file at `path`): as
/// [`put_range`], without reading the file again.
#[allow(clippy::too_many_arguments)]
pub async fn put_bytes(
    client: &reqwest::Client,
    url: &url::Url,
    headers: &BTreeMap<String, String>,
    path: &Path,
    range: Range,
    bytes: bytes::Bytes,
    progress: Progress,
    throttle: &Arc<Throttle>,
) -> Result<Option<String>, TransferError> {
    let request = signed_put(client, url, headers, range.len)?;
    let stream = memory_stream(bytes, progress, throttle);
    finish(request.body(reqwest::Body::wrap_stream(stream)), path, range).await
}

/// The whole range in memory, after the same size check as a streamed one.
async fn read_small(path: &Path, range: Range) -> Result<bytes::Bytes, TransferError> {
    use std::io::{Read, Seek};
    let owned = path.to_owned();
    let read = tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&owned)?;
        let now = file.metadata()?.len();
        if now != range.file_size {
            return Ok(Err(format!("it was {} bytes when checked and is {now} bytes now", range.file_size)));
        }
        file.seek(SeekFrom::Start(range.offset))?;
        let mut body = vec![0u8; range.len as usize];
        file.read_exact(&mut body)?;
        Ok::<_, std::io::Error>(Ok(body))
    })
    .await;
    let changed = |detail: String| TransferError::FileChanged { path: path.display().to_string(), detail };
    match read {
        Ok(Ok(Ok(body))) => Ok(body.into()),
        Ok(Ok(Err(detail))) => Err(changed(detail)),
        Ok(Err(e)) => Err(changed(e.to_string())),
        Err(e) => Err(changed(e.to_string())),
    }
}

/// Sends the request and reads S3's answer: the ETag, or the error S3 gave. Either way the
/// file must still be the size it was, or the answer is about bytes that are no longer true.
async fn finish(request: reqwest::RequestBuilder, path: &Path, range: Range) -> Result<Option<String>, TransferError> {
    let response = match request.send().await {
        Ok(response) => response,
        // A file cut short or deleted mid-read ends the body early, which reads as a network
        // error: say what really happened, so it is not retried as one.
        Err(e) => return Err(changed_since(path, range.file_size).await.unwrap_or(TransferError::unanswered(&e))),
    };
    if let Some(redirected) = redirect_error(&response) {
        return Err(redirected);
    }
    let status = response.status();
    if status.is_success() {
        // S3 has a consistent snapshot, but not of the file as it is now: a file still being
        // written (or cut short) fails here instead of being reported as uploaded.
        if let Some(changed) = changed_since(path, range.file_size).await {
            return Err(changed);
        }
        let etag = response.headers().get(reqwest::header::ETAG).and_then(|v| v.to_str().ok()).map(str::to_owned);
        return Ok(etag);
    }
    let body = read_error_body(response).await;
    let (code, message) = parse_s3_error(&body);
    Err(match (status.as_u16(), code.as_str()) {
        (400, "BadDigest" | "XAmzContentChecksumMismatch" | "InvalidDigest") => {
            TransferError::ChecksumMismatch { message }
        }
        (403, _) => TransferError::UrlRejected { code, message },
        // A proxy forwarding plain http answers for itself when it wants credentials.
        (407, _) => TransferError::ProxyAuth,
        (status, _) => TransferError::S3Error { status, code, message },
    })
}

/// `Some(Redirected)` when the answer is a redirect. The client follows none (see where the
/// engine builds it), so the bytes went only to the URL that passed the checks; the error says
/// where the server wanted them instead, without the query string of either URL.
pub(super) fn redirect_error(response: &reqwest::Response) -> Option<TransferError> {
    if !response.status().is_redirection() {
        return None;
    }
    let from = response.url();
    let to = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|location| from.join(location).ok())
        .map(|to| to.host_str().map_or_else(|| crate::backend::redact_url(&to), str::to_owned))
        .unwrap_or_else(|| "an address it did not give".to_owned());
    Some(TransferError::Redirected { from: from.host_str().unwrap_or("?").to_owned(), to })
}

/// `Some(FileChanged)` when the file at `path` is gone or no longer `expected_size` bytes long.
pub(super) async fn changed_since(path: &Path, expected_size: u64) -> Option<TransferError> {
    let detail = match tokio::fs::metadata(path).await {
        Ok(meta) if meta.len() == expected_size => return None,
        Ok(meta) => format!("it was {expected_size} bytes when the upload started and is {} bytes now", meta.len()),
        Err(e) => gone_or(e),
    };
    Some(TransferError::FileChanged { path: path.display().to_string(), detail })
}

fn gone_or(e: std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::NotFound {
        "it was deleted or moved before all of it was sent".into()
    } else {
        e.to_string()
    }
}

/// S3's error bodies are a few hundred bytes of XML. Whatever answers at an upload URL, no
/// more than this is read of one, so a hostile or broken server cannot make the client buffer
/// without bound.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// The most of a code or message kept from an error body: enough for any S3 message.
const MAX_ERROR_FIELD: usize = 500;

/// The start of an error response's body, at most [`MAX_ERROR_BODY`] bytes; the rest is never
/// read (the connection is dropped with the response).
pub(super) async fn read_error_body(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk[..chunk.len().min(MAX_ERROR_BODY - body.len())]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// S3 errors are XML: `<Error><Code>…</Code><Message>…</Message></Error>`.
pub(super) fn parse_s3_error(body: &str) -> (String, String) {
    let field = |tag: &str| {
        let open = format!("<{tag}>");
        let start = body.find(&open)? + open.len();
        let end = body[start..].find(&format!("</{tag}>"))? + start;
        Some(body[start..end].trim().chars().take(MAX_ERROR_FIELD).collect())
    };
    let code = field("Code").unwrap_or_else(|| "UnknownError".into());
    let message = field("Message").unwrap_or_else(|| {
        let text: String = body.chars().take(200).collect();
        if text.is_empty() {
            "no details given".into()
        } else {
            text
        }
    });
    (code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_of_256_kib_or_less_takes_a_quarter_of_a_slot() {
        assert_eq!(permits_for(0), 1);
        assert_eq!(permits_for(256 * 1024), 1);
        assert_eq!(permits_for(256 * 1024 + 1), PERMITS_PER_SLOT, "larger bodies keep a whole slot");
        assert_eq!(permits_for(5 * 1024 * 1024), PERMITS_PER_SLOT, "the smallest part");
    }

    #[test]
    fn s3_error_xml_gives_code_and_message() {
        let xml = "<?xml version=\"1.0\"?><Error><Code>BadDigest</Code><Message>The sha256 you specified did not match.</Message></Error>";
        assert_eq!(parse_s3_error(xml), ("BadDigest".into(), "The sha256 you specified did not match.".into()));
    }

    #[test]
    fn plain_http_is_only_for_this_machine() {
        let check = |u: &str| check_destination(&u.parse().unwrap());
        assert!(check("http://127.0.0.1:8333/b/k").is_ok());
        assert!(check("http://localhost/b/k").is_ok());
        assert!(check("http://[::1]:9000/b/k").is_ok());
        assert!(check("https://bucket.s3.amazonaws.com/k").is_ok());
        let refused = check("http://bucket.s3.amazonaws.com/k?X-Amz-Signature=abc").unwrap_err();
        assert_eq!(refused.code(), "unsafe_upload_url");
        assert!(refused.to_string().contains("bucket.s3.amazonaws.com"), "{refused}");
        assert!(!refused.to_string().contains("X-Amz-Signature"), "never the signature: {refused}");
        assert!(check("http://10.0.0.5/k").is_err(), "a LAN address is another machine");
        assert!(check("ftp://127.0.0.1/k").is_err());
    }

    #[tokio::test]
    async fn a_file_cut_short_during_the_upload_is_reported_as_changed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        assert!(changed_since(&path, 10).await.is_none(), "an unchanged file");
        std::fs::write(&path, b"01234").unwrap();
        let shrunk = changed_since(&path, 10).await.expect("a shorter file is a change");
        assert!(shrunk.to_string().contains("is 5 bytes now"), "{shrunk}");
        std::fs::remove_file(&path).unwrap();
        let gone = changed_since(&path, 10).await.expect("a deleted file is a change");
        assert_eq!(gone.code(), "file_changed");
        assert!(gone.to_string().contains("deleted or moved"), "{gone}");
    }

    #[tokio::test]
    async fn a_huge_error_body_is_read_only_up_to_the_cap() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url: url::Url = format!("http://{}/b/k", listener.local_addr().unwrap()).parse().unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            // A client that stopped reading blocks the writes: time out rather than hang.
            stream.set_write_timeout(Some(std::time::Duration::from_secs(2))).unwrap();
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let gib = 1u64 << 30;
            let _ = write!(stream, "HTTP/1.1 500 Internal Server Error\r\ncontent-length: {gib}\r\n\r\n<Error><Code>");
            let mut sent = 0u64;
            let chunk = vec![b'x'; 64 * 1024];
            while sent < gib && stream.write_all(&chunk).is_ok() {
                sent += chunk.len() as u64;
            }
            sent
        });
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        let range = Range { offset: 0, len: 10, file_size: 10 };
        let client = reqwest::Client::new();
        let throttle = Arc::new(Throttle::default());
        let error =
            put_range(&client, &url, &BTreeMap::new(), &path, range, Arc::new(|_| {}), &throttle).await.unwrap_err();
        drop(client);
        // Joined off the runtime's thread, which must stay free to close the connection.
        let sent = tokio::task::spawn_blocking(move || server.join().unwrap()).await.unwrap();
        assert_eq!(error.code(), "s3_error", "{error}");
        assert!(error.to_string().len() < 1000, "the message stays short: {} bytes", error.to_string().len());
        assert!(sent < 64 << 20, "the client stopped reading long before the gigabyte: {sent} bytes sent");
    }

    #[test]
    fn a_non_xml_error_body_is_still_shown() {
        assert_eq!(parse_s3_error("oops").1, "oops");
    }

    proptest::proptest! {
        #[test]
        fn any_error_body_gives_a_short_code_and_message_and_never_panics(body in ".{0,3000}") {
            let (code, message) = parse_s3_error(&body);
            proptest::prop_assert!(!code.is_empty() && !message.is_empty());
            proptest::prop_assert!(code.chars().count() <= MAX_ERROR_FIELD && message.chars().count() <= MAX_ERROR_FIELD);
        }

        #[test]
        fn a_well_formed_error_gives_back_its_code_and_message(code in "[A-Za-z]{1,40}", message in "[^<]{1,300}") {
            let xml = format!("<?xml version=\"1.0\"?><Error><Code>{code}</Code><Message>{message}</Message></Error>");
            let (got_code, got_message) = parse_s3_error(&xml);
            proptest::prop_assert_eq!(got_code, code);
            proptest::prop_assert_eq!(got_message, message.trim());
        }

        #[test]
        fn only_https_or_this_machine_passes_the_destination_check(raw in "(https?|ftp)://[a-z0-9.:\\[\\]-]{0,30}/[a-z?=&]{0,10}") {
            if let Ok(url) = raw.parse::<url::Url>() {
                if check_destination(&url).is_ok() {
                    proptest::prop_assert!(url.scheme() == "https" || crate::backend::is_this_machine(&url), "{url}");
                }
            }
        }
    }
}
