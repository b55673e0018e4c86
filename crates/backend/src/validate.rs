//! Checks on individual request fields shared by both API flavours.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use uuid::Uuid;

use crate::limits::MAX_CONTENT_TYPE_BYTES;

/// What an upload gets when the client names no content type.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// The canonical (lower-case, hyphenated) form of a client upload id, if it is a UUID.
/// Ids are compared in this form, so `ABC…` and `abc…` are the same upload.
pub fn canonical_upload_id(raw: &str) -> Option<String> {
    Uuid::parse_str(raw.trim()).ok().map(|id| id.hyphenated().to_string())
}

/// True for the standard, padded base64 of exactly 32 bytes, the form S3 expects in
/// `x-amz-checksum-sha256`.
pub fn is_sha256_base64(value: &str) -> bool {
    STANDARD.decode(value).is_ok_and(|bytes| bytes.len() == 32)
}

/// True for the standard, padded base64 of exactly 4 bytes: a CRC32C as S3 expects it in
/// `x-amz-checksum-crc32c` (big-endian).
pub fn is_crc32c_base64(value: &str) -> bool {
    STANDARD.decode(value).is_ok_and(|bytes| bytes.len() == 4)
}

/// True for a whole-object CRC32C as S3 reports it: a file's CRC32C, or for a multipart object
/// created with CRC32C the CRC32C of its parts' CRC32Cs followed by `-<number of parts>`.
pub fn is_object_crc32c(value: &str) -> bool {
    match value.rsplit_once('-') {
        Some((crc, parts)) => is_crc32c_base64(crc) && parts.parse::<u32>().is_ok_and(|n| (1..=10_000).contains(&n)),
        None => is_crc32c_base64(value),
    }
}

/// True for a whole-object checksum as S3 reports it: a file's SHA-256 (see
/// [`is_sha256_base64`]), or for a multipart object the SHA-256 of its parts' SHA-256s
/// followed by `-<number of parts>`.
pub fn is_object_checksum(value: &str) -> bool {
    match value.rsplit_once('-') {
        Some((digest, parts)) => {
            is_sha256_base64(digest) && parts.parse::<u32>().is_ok_and(|n| (1..=10_000).contains(&n))
        }
        None => is_sha256_base64(value),
    }
}

/// Whether two object checksums can be compared: both of a whole file, or both composite.
pub fn same_checksum_kind(a: &str, b: &str) -> bool {
    a.contains('-') == b.contains('-')
}

/// The content type to sign, or `None` when the value cannot be an HTTP header a client sends
/// (control characters, non-ASCII) or does not look like `type/subtype`.
pub fn content_type_or_default(raw: Option<&str>) -> Option<String> {
    let value = raw.map(str::trim).unwrap_or_default();
    if value.is_empty() {
        return Some(DEFAULT_CONTENT_TYPE.to_owned());
    }
    let printable = value.bytes().all(|b| b == b' ' || b.is_ascii_graphic());
    let shaped = value.split(';').next().is_some_and(|essence| {
        let mut parts = essence.trim().splitn(2, '/');
        let (kind, subtype) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
        !kind.is_empty() && !subtype.is_empty() && !kind.contains(' ') && !subtype.contains(' ')
    });
    (printable && shaped && value.len() <= MAX_CONTENT_TYPE_BYTES).then(|| value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_ids_are_compared_in_canonical_form() {
        let id = "0B6B6B0E-5F2C-4C1E-9A55-2A8F3F5B9C11";
        assert_eq!(canonical_upload_id(id).as_deref(), Some("0b6b6b0e-5f2c-4c1e-9a55-2a8f3f5b9c11"));
        assert_eq!(canonical_upload_id("not-a-uuid"), None);
        assert_eq!(canonical_upload_id(""), None);
    }

    #[test]
    fn only_32_byte_padded_base64_is_a_sha256() {
        assert!(is_sha256_base64("ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="));
        assert!(is_object_checksum("ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=-3"), "composite");
        assert!(!is_object_checksum("ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=-0"), "no parts");
        assert!(!is_object_checksum("ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=-x"));
        assert!(!is_sha256_base64("ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0"), "padding needed");
        assert!(!is_sha256_base64("AAAA"), "too short");
        assert!(
            !is_sha256_base64("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            "hex is not base64 of 32 bytes"
        );
    }

    #[test]
    fn only_4_byte_padded_base64_is_a_crc32c() {
        assert!(is_crc32c_base64("4waSgw=="));
        assert!(is_object_crc32c("4waSgw==-32"), "composite");
        assert!(!is_object_crc32c("4waSgw==-0"), "no parts");
        assert!(!is_crc32c_base64("4waSgw"), "padding needed");
        assert!(!is_crc32c_base64("ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="), "a SHA-256 is not a CRC32C");
    }

    #[test]
    fn content_types_must_be_sendable_headers_shaped_like_type_slash_subtype() {
        assert_eq!(content_type_or_default(None).as_deref(), Some(DEFAULT_CONTENT_TYPE));
        assert_eq!(content_type_or_default(Some(" ")).as_deref(), Some(DEFAULT_CONTENT_TYPE));
        assert_eq!(
            content_type_or_default(Some("text/plain; charset=utf-8")).as_deref(),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(content_type_or_default(Some("text/plain\r\nx-evil: 1")), None, "no header injection");
        assert_eq!(content_type_or_default(Some("texte/é")), None, "ASCII only");
        assert_eq!(content_type_or_default(Some("plain")), None, "needs a subtype");
        assert_eq!(content_type_or_default(Some(&format!("a/{}", "b".repeat(300)))), None, "bounded");
    }
}
