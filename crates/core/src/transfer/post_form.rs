//! One presigned POST form (S3's browser-upload policy): the signed fields in the order the
//! backend gave them, then the file as the last field, streamed from disk with an exact
//! Content-Length so memory stays flat and S3 knows the size up front.

use std::path::Path;

use futures_util::StreamExt;
use reqwest::multipart::{Form, Part};
use tokio::io::AsyncReadExt;
use tokio_util::io::ReaderStream;

use super::put::{parse_s3_error, Progress};
use super::TransferError;

/// Read size for streaming the file into the form.
const STREAM_CHUNK: usize = 256 * 1024;

/// POSTs `fields` then the file's `size` bytes to the form's URL. S3 answers 201 (or 204, or 200,
/// as `success_action_status` asks) on success, and an XML error otherwise.
pub async fn post_form(
    client: &reqwest::Client,
    url: &url::Url,
    fields: &[(String, String)],
    path: &Path,
    size: u64,
    progress: Progress,
) -> Result<(), TransferError> {
    let shown = path.display().to_string();
    let changed = |detail: String| TransferError::FileChanged { path: shown.clone(), detail };
    let file = tokio::fs::File::open(path).await.map_err(|e| changed(e.to_string()))?;
    let now = file.metadata().await.map_err(|e| changed(e.to_string()))?.len();
    if now != size {
        return Err(changed(format!("it was {size} bytes when checked and is {now} bytes now")));
    }

    let mut sent = 0u64;
    let stream = ReaderStream::with_capacity(file.take(size), STREAM_CHUNK).map(move |chunk| {
        if let Ok(bytes) = &chunk {
            sent += bytes.len() as u64;
            progress(sent);
        }
        chunk
    });
    // A declared length for the file part lets reqwest compute the whole body's length.
    let part = if size == 0 { Part::bytes(Vec::new()) } else { Part::stream_with_length(reqwest::Body::wrap_stream(stream), size) };
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "file".into());
    let part = part.file_name(file_name).mime_str(&form_content_type(fields)).map_err(|e| TransferError::S3Error {
        status: 0,
        code: "InvalidContentType".into(),
        message: e.to_string(),
    })?;
    let form = fields.iter().fold(Form::new(), |form, (name, value)| form.text(name.clone(), value.clone())).part("file", part);

    let response = client
        .post(url.clone())
        .multipart(form)
        .send()
        .await
        .map_err(|e| TransferError::Network { detail: crate::backend::http_error_detail(&e) })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    Err(form_error(status.as_u16(), &body))
}

/// The content type the policy signed (`Content-Type` is a form field), for the file part too.
fn form_content_type(fields: &[(String, String)]) -> String {
    fields
        .iter()
        .find(|(name, value)| name.eq_ignore_ascii_case("content-type") && value.parse::<mime_guess::mime::Mime>().is_ok())
        .map(|(_, value)| value.clone())
        .unwrap_or_else(|| "application/octet-stream".into())
}

/// S3's answer to a refused form: 403 for an expired or tampered policy (sign again), 400
/// `BadDigest` for a signed Content-MD5 that does not match, anything else as it is.
fn form_error(status: u16, body: &str) -> TransferError {
    let (code, message) = parse_s3_error(body);
    match (status, code.as_str()) {
        (400, "BadDigest" | "InvalidDigest") => TransferError::ChecksumMismatch { message },
        (403, _) => TransferError::UrlRejected { code, message },
        (status, _) => TransferError::S3Error { status, code, message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expired_policy_is_rejected_so_the_form_is_signed_again() {
        let xml = "<Error><Code>AccessDenied</Code><Message>Invalid according to Policy: Policy expired.</Message></Error>";
        assert!(matches!(form_error(403, xml), TransferError::UrlRejected { code, .. } if code == "AccessDenied"));
    }

    #[test]
    fn other_refusals_keep_s3s_status_code_and_message() {
        let xml = "<Error><Code>EntityTooLarge</Code><Message>Your proposed upload exceeds the maximum allowed size</Message></Error>";
        let TransferError::S3Error { status, code, message } = form_error(400, xml) else { panic!("an S3 error") };
        assert_eq!((status, code.as_str()), (400, "EntityTooLarge"));
        assert!(message.contains("maximum allowed size"));
    }

    #[test]
    fn the_file_part_takes_the_signed_content_type_or_falls_back_to_octet_stream() {
        let fields = |ct: &str| vec![("key".to_owned(), "k".to_owned()), ("Content-Type".to_owned(), ct.to_owned())];
        assert_eq!(form_content_type(&fields("application/pdf")), "application/pdf");
        assert_eq!(form_content_type(&fields("not a type")), "application/octet-stream");
        assert_eq!(form_content_type(&[]), "application/octet-stream");
    }
}
