//! One PUT of a whole file to a presigned URL.

use std::path::Path;
use std::sync::Arc;

use futures_util::StreamExt;
use tokio_util::io::ReaderStream;

use super::TransferError;
use crate::backend::PresignedUpload;

/// Read size for streaming a file into the request body.
const STREAM_CHUNK: usize = 256 * 1024;

/// Called with the number of bytes handed to the connection so far.
pub type Progress = Arc<dyn Fn(u64) + Send + Sync>;

/// PUTs `path` (expected to be `size` bytes) to the presigned URL with exactly the signed
/// headers. The length is declared up front, so a file that grows or shrinks meanwhile fails
/// instead of storing something else.
pub async fn put_file(
    client: &reqwest::Client,
    upload: &PresignedUpload,
    path: &Path,
    size: u64,
    progress: Progress,
) -> Result<(), TransferError> {
    let shown = path.display().to_string();
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| TransferError::FileChanged { path: shown.clone(), detail: e.to_string() })?;
    let now = file
        .metadata()
        .await
        .map_err(|e| TransferError::FileChanged { path: shown.clone(), detail: e.to_string() })?
        .len();
    if now != size {
        return Err(TransferError::FileChanged {
            path: shown,
            detail: format!("it was {size} bytes when checked and is {now} bytes now"),
        });
    }

    let mut sent = 0u64;
    let stream = ReaderStream::with_capacity(tokio::io::AsyncReadExt::take(file, size), STREAM_CHUNK).map(
        move |chunk| {
            if let Ok(bytes) = &chunk {
                sent += bytes.len() as u64;
                progress(sent);
            }
            chunk
        },
    );

    let mut request = upload
        .headers
        .iter()
        .fold(client.put(upload.url.clone()), |request, (name, value)| request.header(name, value))
        .header(reqwest::header::CONTENT_LENGTH, size);
    request = if size == 0 { request.body(Vec::new()) } else { request.body(reqwest::Body::wrap_stream(stream)) };

    let response = request
        .send()
        .await
        .map_err(|e| TransferError::Network { detail: crate::backend::http_error_detail(&e) })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    let (code, message) = parse_s3_error(&body);
    Err(match (status.as_u16(), code.as_str()) {
        (400, "BadDigest" | "XAmzContentChecksumMismatch" | "InvalidDigest") => {
            TransferError::ChecksumMismatch { message }
        }
        (403, _) => TransferError::UrlRejected { code, message },
        (status, _) => TransferError::S3Error { status, code, message },
    })
}

/// S3 errors are XML: `<Error><Code>…</Code><Message>…</Message></Error>`.
fn parse_s3_error(body: &str) -> (String, String) {
    let field = |tag: &str| {
        let open = format!("<{tag}>");
        let start = body.find(&open)? + open.len();
        let end = body[start..].find(&format!("</{tag}>"))? + start;
        Some(body[start..end].trim().to_owned())
    };
    let code = field("Code").unwrap_or_else(|| "UnknownError".into());
    let message = field("Message").unwrap_or_else(|| {
        let text: String = body.chars().take(200).collect();
        if text.is_empty() { "no details given".into() } else { text }
    });
    (code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_error_xml_gives_code_and_message() {
        let xml = "<?xml version=\"1.0\"?><Error><Code>BadDigest</Code><Message>The sha256 you specified did not match.</Message></Error>";
        assert_eq!(parse_s3_error(xml), ("BadDigest".into(), "The sha256 you specified did not match.".into()));
    }

    #[test]
    fn a_non_xml_error_body_is_still_shown() {
        assert_eq!(parse_s3_error("oops").1, "oops");
    }
}
