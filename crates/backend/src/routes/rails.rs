//! The two routes of the Rails guide's contract, so clients written for such a backend work
//! here unchanged: `generate_upload_url` hands out a bare presigned PUT URL, `attachments`
//! records the upload. Failures use Rails' errors hash, `{"errors":{"field":["message"]}}`.
//! Like every route they act for a principal: a key is handed out to it, and only it can
//! record that key.

use std::collections::BTreeMap;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::body::{read_json, BodyError};
use super::{deny_unless_mine, AppState};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::signer::{without_query, PutConditions, SignerError};
use crate::store::{
    AuditAction, AuditEntry, DbError, Flavour, NewRecord, Ownership, PresignedPut, Record, RecordOutcome, Scoped,
};
use crate::validate::{content_type_or_default, is_sha256_base64};

const BLANK: &str = "can't be blank";

/// Rails' errors hash with its status (422 for validation, 400 for unreadable JSON).
#[derive(Debug)]
pub struct RailsErrors {
    status: StatusCode,
    errors: BTreeMap<String, Vec<String>>,
}

impl RailsErrors {
    fn new(status: StatusCode) -> Self {
        Self { status, errors: BTreeMap::new() }
    }

    fn unprocessable() -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY)
    }

    fn add(&mut self, field: &str, message: impl Into<String>) {
        self.errors.entry(field.to_owned()).or_default().push(message.into());
    }

    fn with(mut self, field: &str, message: impl Into<String>) -> Self {
        self.add(field, message);
        self
    }

    fn into_result(self) -> Result<(), Self> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }
}

impl IntoResponse for RailsErrors {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "errors": self.errors }))).into_response()
    }
}

impl From<BodyError> for RailsErrors {
    fn from(error: BodyError) -> Self {
        let message = error.message();
        match error {
            BodyError::TooLarge => Self::new(StatusCode::PAYLOAD_TOO_LARGE).with("base", message),
            BodyError::Unreadable(_) | BodyError::Syntax(_) => Self::new(StatusCode::BAD_REQUEST).with("base", message),
            // A field of the wrong type is a validation error on that field, as in Rails.
            BodyError::Shape { path, message } => {
                let field = path.rsplit('.').next().filter(|f| !f.is_empty()).unwrap_or("base");
                Self::unprocessable().with(field, message)
            }
        }
    }
}

impl From<DbError> for RailsErrors {
    fn from(error: DbError) -> Self {
        tracing::error!(%error, "records database failed");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR).with("base", "the backend could not write its records; try again")
    }
}

impl From<ApiError> for RailsErrors {
    /// Only failures on the backend's side (the database) reach here.
    fn from(error: ApiError) -> Self {
        Self::new(error.status).with("base", error.message)
    }
}

impl From<SignerError> for RailsErrors {
    fn from(error: SignerError) -> Self {
        tracing::error!(%error, "S3 call failed");
        match error {
            SignerError::Presign { .. } => Self::new(StatusCode::INTERNAL_SERVER_ERROR)
                .with("base", "the backend could not sign an upload URL; tell the operator"),
            SignerError::Head { .. } | SignerError::Storage { .. } => Self::new(StatusCode::BAD_GATEWAY)
                .with("base", "the backend could not reach the bucket to check the upload; try again later"),
        }
    }
}

#[derive(Debug, Deserialize)]
struct GenerateUploadUrlRequest {
    #[serde(default)]
    file_name: Option<String>,
}

/// `POST /api/attachments/generate_upload_url {"file_name"}` → `{"url"}`. Nothing but the host
/// is signed, so the client PUTs with any content type and no extra headers; the key is in the
/// URL's path (path-style: after the bucket segment).
pub async fn generate_upload_url(
    State(app): State<AppState>,
    principal: Principal,
    request: Request,
) -> Result<Json<Value>, RailsErrors> {
    let body: GenerateUploadUrlRequest = read_json(request, &()).await?;
    let file_name = body.file_name.filter(|name| !name.trim().is_empty());
    let Some(file_name) = file_name else {
        return Err(RailsErrors::unprocessable().with("file_name", BLANK));
    };
    let key = app.keys.new_key_in("", &file_name, &principal.name);
    let put = app.signer.presign_put(&key, PutConditions::default()).await?;
    tracing::debug!(%key, "presigned a rails PUT");
    // Remembered only to bind the key to the principal: nothing but the host is signed.
    let signed = PresignedPut {
        key: key.clone(),
        checksum_sha256: None,
        object_url: without_query(&put.url).to_owned(),
        uploaded_by: principal.name.clone(),
    };
    let audit = AuditEntry::new(&principal.name, AuditAction::Presign, "signed (rails)").key(&key);
    app.db.remember_presigned(vec![signed], vec![audit]).await?;
    Ok(Json(json!({ "url": put.url })))
}

const ATTACHMENTS_ROUTE: &str = "POST /api/attachments";

/// What an attachment of a key that is not the principal's answers, the same as for one that
/// was never handed out.
fn attachment_not_found() -> RailsErrors {
    RailsErrors::new(StatusCode::NOT_FOUND).with("key", "was not handed out to you")
}

#[derive(Debug, Deserialize)]
struct CreateAttachmentRequest {
    #[serde(default)]
    attachment: Option<Attachment>,
}

#[derive(Debug, Default, Deserialize)]
struct Attachment {
    #[serde(default)]
    file_name: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    byte_size: Option<u64>,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    checksum: Option<String>,
}

/// `POST /api/attachments {"attachment":{…}}` → 200 `{"id", …record}`; idempotent on the key.
pub async fn create_attachment(
    State(app): State<AppState>,
    principal: Principal,
    request: Request,
) -> Result<Json<Value>, RailsErrors> {
    let body: CreateAttachmentRequest = read_json(request, &()).await?;
    let Some(attachment) = body.attachment else {
        return Err(RailsErrors::unprocessable().with("attachment", BLANK));
    };

    let mut errors = RailsErrors::unprocessable();
    let file_name = attachment.file_name.map(|n| crate::keys::clean_file_name(&n)).filter(|n| !n.is_empty());
    if file_name.is_none() {
        errors.add("file_name", BLANK);
    }
    if attachment.byte_size.is_none() {
        errors.add("byte_size", BLANK);
    }
    let key = attachment
        .key
        .filter(|k| !k.is_empty())
        .or_else(|| attachment.url.as_deref().and_then(|url| key_from_url(&app, url)));
    match &key {
        None => errors.add("key", BLANK),
        Some(key) if !app.keys.is_issued_shape(key) => errors.add("key", "is not a key this backend handed out"),
        Some(_) => {}
    }
    let content_type = content_type_or_default(attachment.content_type.as_deref());
    if content_type.is_none() {
        errors.add("content_type", "is not a valid media type");
    }
    let checksum = attachment.checksum.filter(|c| !c.is_empty());
    if checksum.as_deref().is_some_and(|c| !is_sha256_base64(c)) {
        errors.add("checksum", "is not a base64-encoded SHA-256 digest");
    }
    errors.into_result()?;
    // Each of these was checked above; the fallbacks are unreachable.
    let (Some(file_name), Some(byte_size), Some(key), Some(content_type)) =
        (file_name, attachment.byte_size, key, content_type)
    else {
        return Err(RailsErrors::unprocessable().with("base", "the attachment is incomplete"));
    };

    match app.db.record_by_key_of(principal.name.clone(), key.clone()).await? {
        Scoped::Mine(existing) => return Ok(Json(attachment_json(&existing))),
        Scoped::Others => {
            deny_unless_mine(&app, &principal, Ownership::Others, ATTACHMENTS_ROUTE, &key, None).await?;
            return Err(attachment_not_found());
        }
        Scoped::Missing => {}
    }
    let ownership = app.db.key_owner(principal.name.clone(), key.clone()).await?;
    if !deny_unless_mine(&app, &principal, ownership, ATTACHMENTS_ROUTE, &key, None).await? {
        return Err(attachment_not_found());
    }
    let outcome = record_attachment(&app, &principal, key.clone(), file_name, byte_size, content_type, checksum).await;
    let text = match &outcome {
        Ok(_) => "recorded (rails)".to_owned(),
        Err(errors) => format!("rejected: {}", errors.errors.keys().cloned().collect::<Vec<_>>().join(",")),
    };
    app.db.audit(vec![AuditEntry::new(&principal.name, AuditAction::Report, text).key(&key)]).await?;
    outcome
}

/// HEADs the object, checks it against the attachment and records it.
async fn record_attachment(
    app: &AppState,
    principal: &Principal,
    key: String,
    file_name: String,
    byte_size: u64,
    content_type: String,
    checksum: Option<String>,
) -> Result<Json<Value>, RailsErrors> {
    let head = app.signer.head(&key).await?.ok_or_else(|| {
        RailsErrors::unprocessable().with("key", "has no object in the bucket; upload the file first")
    })?;
    if head.size != byte_size {
        return Err(RailsErrors::unprocessable()
            .with("byte_size", format!("does not match the stored object ({} bytes)", head.size)));
    }
    if let (Some(stored), Some(sent)) = (&head.checksum_sha256, &checksum) {
        if stored != sent {
            return Err(RailsErrors::unprocessable().with("checksum", "does not match the stored object"));
        }
    }

    let new = NewRecord {
        client_upload_id: None,
        object_url: app.signer.object_url(&key).await?,
        key,
        file_name,
        size: byte_size,
        content_type,
        checksum_sha256: checksum,
        checksum_crc32c: None,
        flavour: Flavour::Rails,
        uploaded_by: principal.name.clone(),
    };
    match app.db.record_by_key(new).await? {
        RecordOutcome::Recorded(record) => {
            tracing::info!(key = %record.key, size = record.size, "recorded a rails attachment");
            Ok(Json(attachment_json(&record)))
        }
        RecordOutcome::AlreadyRecorded(record)
        | RecordOutcome::UploadIdConflict(record)
        | RecordOutcome::KeyConflict(record) => Ok(Json(attachment_json(&record))),
        RecordOutcome::OthersRecord => Err(attachment_not_found()),
    }
}

/// The record as Rails would render the model: its `id` first, then the fields.
fn attachment_json(record: &Record) -> Value {
    let mut value = json!({ "id": record.id });
    if let (Some(object), Value::Object(fields)) = (value.as_object_mut(), json!(record)) {
        object.extend(fields);
    }
    value
}

/// The key inside an object URL, as S3 clients derive it: the URL-decoded path, minus the
/// bucket segment when the URL is path-style.
fn key_from_url(app: &AppState, url: &str) -> Option<String> {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = after_scheme.split_once('/').map(|(_, path)| path)?;
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8().ok()?.into_owned();
    // Whether the bucket is in the path depends on how the client reached S3; the key is
    // whichever reading this backend could have issued.
    let without_bucket = decoded.strip_prefix(app.signer.bucket()).and_then(|rest| rest.strip_prefix('/'));
    let candidates = [without_bucket.map(str::to_owned), Some(decoded.clone())];
    candidates.into_iter().flatten().find(|key| app.keys.is_issued_shape(key)).or(Some(decoded))
}
