//! The webhook outbox: one row per newly recorded upload, written in the transaction that
//! records it, so a record without its webhook (or the reverse) cannot exist. The body is
//! rendered once, here, so every retry sends the same bytes under the same signature.
//! Delivery is `crate::webhook`'s job.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::Record;

/// The `event` of every webhook body so far.
pub const UPLOAD_RECORDED: &str = "upload.recorded";

/// A webhook taken from the outbox for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingWebhook {
    pub id: i64,
    /// Sent as `Idempotency-Key`: the receiver keeps one attachment per key.
    pub idempotency_key: String,
    /// The JSON body, exactly as signed.
    pub body: String,
    /// Failed attempts so far.
    pub attempts: u32,
}

#[derive(Serialize)]
struct Body<'a> {
    event: &'static str,
    idempotency_key: &'a str,
    /// The backend's row id, as the rails flavour answers it.
    id: i64,
    record: &'a Record,
}

/// The stable id a receiver deduplicates on: the client's upload id for native records (what
/// the client itself retries with), and for rails records, which have none,
/// `rails-<hex SHA-256 of the key>`; a key belongs to exactly one record, and hashing keeps the
/// header ASCII whatever the key holds.
pub fn idempotency_key(record: &Record) -> String {
    match &record.client_upload_id {
        Some(id) => id.clone(),
        None => format!("rails-{}", hex::encode(Sha256::digest(record.key.as_bytes()))),
    }
}

/// `(idempotency key, JSON body)` of the webhook announcing `record`.
pub fn render(record: &Record) -> (String, String) {
    let key = idempotency_key(record);
    let body = Body { event: UPLOAD_RECORDED, idempotency_key: &key, id: record.id, record };
    // A struct of strings and numbers always serialises; the fallback keeps the row writable.
    let json = serde_json::to_string(&body).unwrap_or_else(|_| format!("{{\"event\":\"{UPLOAD_RECORDED}\"}}"));
    (key, json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Flavour;

    fn record(client_upload_id: Option<&str>) -> Record {
        Record {
            id: 7,
            client_upload_id: client_upload_id.map(str::to_owned),
            key: "uploads/alice/ü.txt".to_owned(),
            file_name: "ü.txt".to_owned(),
            size: 3,
            content_type: "text/plain".to_owned(),
            checksum_sha256: None,
            checksum_crc32c: None,
            object_url: "http://s3/b/uploads/alice/ü.txt".to_owned(),
            flavour: Flavour::Rails,
            recorded_at: "2026-12-05T10:00:00Z".to_owned(),
            uploaded_by: Some("alice".to_owned()),
        }
    }

    #[test]
    fn native_records_are_keyed_by_the_client_upload_id() {
        assert_eq!(idempotency_key(&record(Some("u1"))), "u1", "the client's own id");
    }

    #[test]
    fn rails_records_are_keyed_by_an_ascii_hash_of_their_key() {
        let key = idempotency_key(&record(None));
        assert!(key.starts_with("rails-") && key.len() == 6 + 64, "rails-<64 hex>: {key}");
        assert!(key.is_ascii(), "fits a header whatever the S3 key holds");
        assert_eq!(key, idempotency_key(&record(None)), "stable across calls");
    }

    #[test]
    fn the_body_carries_the_record_with_who_uploaded_it() {
        let (_, body) = render(&record(Some("u1")));
        let value: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(value["event"], "upload.recorded");
        assert_eq!(value["idempotency_key"], "u1");
        assert_eq!(value["id"], 7, "the row id, as rails answers it");
        assert_eq!(value["record"]["uploaded_by"], "alice", "the principal is part of the record");
        assert_eq!(value["record"]["key"], "uploads/alice/ü.txt");
    }
}
