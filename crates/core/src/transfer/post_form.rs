//! One presigned POST form (S3's browser-upload policy): the signed fields in the order the
//! backend gave them, then the file as the last field, streamed from disk with an exact
//! Content-Length so memory stays flat and S3 knows the size up front.

use std::path::Path;

use reqwest::multipart::{Form, Part};
use tokio::io::AsyncReadExt;

use super::put::{parse_s3_error, Progress};
use super::TransferError;

/// POSTs `fields` then the file's `size` bytes to the form's URL. S3 answers 201 (or 204, or 200,
/// as `success_action_status` asks) on success, and an XML error otherwise.
pub async fn post_form(
    client: &reqwest::Client,
    url: &url::Url,
    fields: &[(String, String)],
    path: &Path,
    size: u64,
    progress: Progress,
    throttle: &std::sync::Arc<super::Throttle>,
) -> Result<(), TransferError> {
    let shown = path.display().to_string();
    let changed = |detail: String| TransferError::FileChanged { path: shown.clone(), detail };
    let file = tokio::fs::File::open(path).await.map_err(|e| changed(e.to_string()))?;
    let now = file.metadata().await.map_err(|e| changed(e.to_string()))?.len();
    if now != size {
        return Err(changed(format!("it was {size} bytes when checked and is {now} bytes now")));
    }

    let stream = super::put::body_stream(file.take(size), progress, throttle);
    // A declared length for the file part lets reqwest compute the whole body's length.
    let part = if size == 0 {
        Part::bytes(Vec::new())
    } else {
        Part::stream_with_length(reqwest::Body::wrap_stream(stream), size)
    };
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "file".into());
    let part = part
        .file_name(file_name)
        .mime_str(&form_content_type(fields))
        .expect("form_content_type gives only valid MIME types");
    let form = fields
        .iter()
        .fold(Form::new(), |form, (name, value)| form.text(name.clone(), value.clone()))
        .part("file", part);

    let response = client.post(url.clone()).multipart(form).send().await.map_err(|e| TransferError::unanswered(&e))?;
    if let Some(redirected) = super::put::redirect_error(&response) {
        return Err(redirected);
    }
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = super::put::read_error_body(response).await;
    Err(form_error(status.as_u16(), &body))
}

/// The content type the policy signed (`Content-Type` is a form field), for the file part too.
fn form_content_type(fields: &[(String, String)]) -> String {
    fields
        .iter()
        .find(|(name, value)| {
            name.eq_ignore_ascii_case("content-type") && value.parse::<mime_guess::mime::Mime>().is_ok()
        })
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
        (407, _) => TransferError::ProxyAuth,
        (status, _) => TransferError::S3Error { status, code, message },
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use super::*;

    /// Accepts one request on a loopback port, answers `status`, and hands back what it got:
    /// the head (lower-cased) and the body. The real S3 cannot show the wire format.
    fn capture_one_request(status: &'static str) -> (url::Url, std::thread::JoinHandle<(String, Vec<u8>)>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/bucket", listener.local_addr().unwrap()).parse().unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream);
            let mut head = String::new();
            // Header lines until the empty one.
            while reader.read_line(&mut head).unwrap() > 2 {}
            let head = head.to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            write!(reader.get_mut(), "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
            (head, body)
        });
        (url, server)
    }

    fn fields() -> Vec<(String, String)> {
        ["key", "Content-Type", "Policy", "X-Amz-Signature"]
            .iter()
            .zip(["k/résumé.pdf", "application/pdf", "eyJ9", "abc"])
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[tokio::test]
    async fn the_form_sends_the_fields_in_order_then_the_file_last_with_an_exact_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("résumé.pdf");
        let bytes: Vec<u8> = (0..700_000u32).map(|i| (i * 31 % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let (url, server) = capture_one_request("201 Created");
        let reported = Arc::new(AtomicU64::new(0));
        let progress: Progress = {
            let reported = reported.clone();
            Arc::new(move |sent| {
                reported.fetch_max(sent, Ordering::Relaxed);
            })
        };

        post_form(&reqwest::Client::new(), &url, &fields(), &path, bytes.len() as u64, progress, &Default::default())
            .await
            .unwrap();
        let (head, body) = server.join().unwrap();

        assert!(head.starts_with("post /bucket "), "a POST to the form's URL: {head}");
        assert!(head.contains(&format!("content-length: {}", body.len())), "an exact length: {head}");
        assert!(!head.contains("chunked"), "not chunked: S3 refuses a POST without a length");
        let text = String::from_utf8_lossy(&body);
        let at = |needle: &str| text.find(needle).unwrap_or_else(|| panic!("{needle} should be in the body"));
        assert!(
            at("name=\"key\"") < at("name=\"Content-Type\"") && at("name=\"Policy\"") < at("name=\"X-Amz-Signature\"")
        );
        assert!(at("name=\"X-Amz-Signature\"") < at("name=\"file\""), "the file is the last field");
        assert!(text.contains("k/résumé.pdf"), "field values go as they are");
        let start = body.windows(64).position(|w| w == &bytes[..64]).expect("the file's bytes are in the body");
        assert_eq!(&body[start..start + bytes.len()], bytes.as_slice(), "the file's bytes, unchanged");
        assert_eq!(reported.load(Ordering::Relaxed), bytes.len() as u64, "progress reaches the file's size");
    }

    #[tokio::test]
    async fn an_empty_file_is_still_a_form_with_an_empty_file_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.bin");
        std::fs::write(&path, b"").unwrap();
        let (url, server) = capture_one_request("204 No Content");
        post_form(&reqwest::Client::new(), &url, &fields(), &path, 0, Arc::new(|_| {}), &Default::default())
            .await
            .unwrap();
        let (head, body) = server.join().unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert!(String::from_utf8_lossy(&body).contains("name=\"file\"; filename=\"empty.bin\""));
    }

    #[tokio::test]
    async fn a_file_that_changed_size_since_it_was_hashed_is_not_sent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grew.txt");
        std::fs::write(&path, b"longer now").unwrap();
        let url = "http://127.0.0.1:9/never".parse().unwrap();
        let error =
            post_form(&reqwest::Client::new(), &url, &fields(), &path, 3, Arc::new(|_| {}), &Default::default())
                .await
                .unwrap_err();
        assert!(matches!(error, TransferError::FileChanged { .. }), "{error}");
    }

    #[test]
    fn an_expired_policy_is_rejected_so_the_form_is_signed_again() {
        let xml =
            "<Error><Code>AccessDenied</Code><Message>Invalid according to Policy: Policy expired.</Message></Error>";
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
