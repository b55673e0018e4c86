//! Reading JSON request bodies with errors a person can act on. Both flavours use it and
//! map its [`BodyError`] into their own error shape.
//!
//! The `Content-Type` header is not checked: the routes only ever take JSON, and bearer-token
//! auth (no cookies) leaves nothing for a cross-site form post to exploit.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::limits::MAX_BODY_BYTES;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    TooLarge,
    /// The connection failed while the body was read.
    Unreadable(String),
    /// Not JSON at all (or empty).
    Syntax(String),
    /// JSON, but not the shape the route takes. `path` is like `files[0].size` (empty at the root).
    Shape {
        path: String,
        message: String,
    },
}

impl BodyError {
    pub fn message(&self) -> String {
        match self {
            BodyError::TooLarge => format!(
                "The request body is larger than {} MiB; send fewer files per request.",
                MAX_BODY_BYTES / (1024 * 1024)
            ),
            BodyError::Unreadable(detail) => format!("The request body could not be read: {detail}."),
            BodyError::Syntax(detail) => format!("The request body is not valid JSON: {detail}."),
            BodyError::Shape { path, message } if path.is_empty() => {
                format!("The request body does not have the expected shape: {message}.")
            }
            BodyError::Shape { path, message } => {
                format!("The request body does not have the expected shape at `{path}`: {message}.")
            }
        }
    }
}

/// Reads the whole body (the router's `DefaultBodyLimit` caps it) and parses it as `T`.
pub async fn read_json<T: DeserializeOwned, S: Send + Sync>(request: Request, state: &S) -> Result<T, BodyError> {
    let bytes = Bytes::from_request(request, state).await.map_err(|rejection: BytesRejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            BodyError::TooLarge
        } else {
            BodyError::Unreadable(rejection.body_text())
        }
    })?;
    parse_json(&bytes)
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, BodyError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(BodyError::Syntax("the body is empty; send a JSON object".to_owned()));
    }
    match parse_exactly(bytes) {
        // JSON has one number type: `602.0` is the integer 602 to JSON Schema (and to
        // JavaScript clients), but serde's integers refuse it. Only on that rare path is the
        // body read a second time with integral floats turned into integers.
        Err(shape @ BodyError::Shape { .. }) => {
            let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(bytes) else { return Err(shape) };
            if !integral_floats_to_integers(&mut value) {
                return Err(shape);
            }
            serde_path_to_error::deserialize(value).map_err(|error| BodyError::Shape {
                path: match error.path().to_string() {
                    path if path == "." => String::new(),
                    path => path,
                },
                message: without_position(&error.into_inner().to_string()),
            })
        }
        other => other,
    }
}

/// Rewrites every float with no fractional part (and within `i64`/`u64`) as an integer;
/// whether it changed anything.
fn integral_floats_to_integers(value: &mut serde_json::Value) -> bool {
    match value {
        serde_json::Value::Number(number) if number.is_f64() => {
            let float = number.as_f64().unwrap_or(f64::NAN);
            let integral = float.fract() == 0.0 && float.abs() < 9.0e15;
            if integral {
                *number = serde_json::Number::from(float as i64);
            }
            integral
        }
        serde_json::Value::Array(items) => {
            items.iter_mut().fold(false, |changed, v| integral_floats_to_integers(v) | changed)
        }
        serde_json::Value::Object(fields) => {
            fields.values_mut().fold(false, |changed, v| integral_floats_to_integers(v) | changed)
        }
        _ => false,
    }
}

fn parse_exactly<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, BodyError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if inner.is_data() {
            BodyError::Shape {
                path: if path == "." { String::new() } else { path },
                message: without_position(&inner.to_string()),
            }
        } else {
            BodyError::Syntax(inner.to_string())
        }
    })?;
    deserializer.end().map_err(|error| BodyError::Syntax(error.to_string()))?;
    Ok(value)
}

/// serde_json appends " at line L column C" to data errors; for a shape error the path says
/// more than the position does.
fn without_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) if message[at..].contains(" column ") => message[..at].to_owned(),
        _ => message.to_owned(),
    }
}

/// A JSON body for the native API: failures become `{"error":{code,message}}` (400 or 413).
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        read_json(request, state).await.map(ApiJson).map_err(ApiError::from)
    }
}

impl From<BodyError> for ApiError {
    fn from(error: BodyError) -> Self {
        let message = error.message();
        match error {
            BodyError::TooLarge => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message),
            BodyError::Unreadable(_) => ApiError::bad_request("unreadable_body", message),
            BodyError::Syntax(_) => ApiError::bad_request("malformed_json", message),
            BodyError::Shape { .. } => ApiError::bad_request("invalid_request", message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integral_floats_count_as_integers_as_json_schema_says() {
        #[derive(serde::Deserialize, Debug)]
        struct Sized {
            size: u64,
        }
        let parsed: Sized = parse_json(br#"{"size": 602.0}"#).expect("602.0 is the integer 602");
        assert_eq!(parsed.size, 602);
        let refused = parse_json::<Sized>(br#"{"size": 602.5}"#).unwrap_err();
        assert!(
            matches!(refused, BodyError::Shape { ref path, .. } if path == "size"),
            "a fraction is still refused: {refused:?}"
        );
    }
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Batch {
        files: Vec<File>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct File {
        name: String,
        size: u64,
    }

    #[test]
    fn a_missing_field_names_its_place_in_the_body() {
        let err = parse_json::<Batch>(br#"{"files":[{"name":"a","size":1},{"name":"b"}]}"#).unwrap_err();
        assert_eq!(
            err,
            BodyError::Shape { path: "files[1]".to_owned(), message: "missing field `size`".to_owned() },
            "the path points at the second file"
        );
        assert!(err.message().contains("`files[1]`"), "{}", err.message());
    }

    #[test]
    fn a_wrong_type_names_the_field() {
        let err = parse_json::<Batch>(br#"{"files":[{"name":"a","size":-1}]}"#).unwrap_err();
        assert!(matches!(err, BodyError::Shape { ref path, .. } if path == "files[0].size"), "{err:?}");
    }

    #[test]
    fn broken_json_is_a_syntax_error() {
        assert!(matches!(parse_json::<Batch>(b"{\"files\": ["), Err(BodyError::Syntax(_))));
        assert!(matches!(parse_json::<Batch>(b"not json"), Err(BodyError::Syntax(_))));
        assert!(matches!(parse_json::<Batch>(b"{\"files\":[]} trailing"), Err(BodyError::Syntax(_))));
    }

    #[test]
    fn an_empty_body_says_so() {
        let err = parse_json::<Batch>(b"  ").unwrap_err();
        assert!(err.message().contains("empty"), "{}", err.message());
    }

    #[test]
    fn a_root_shape_error_has_no_path() {
        let err = parse_json::<Batch>(b"{}").unwrap_err();
        assert_eq!(err, BodyError::Shape { path: String::new(), message: "missing field `files`".to_owned() });
    }
}
