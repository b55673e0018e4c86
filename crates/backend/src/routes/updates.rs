//! The update routes tauri-plugin-updater calls: the static manifest, the dynamic
//! `{target}/{arch}/{current_version}` endpoint and the artifacts. No principal: installers are
//! not secrets, and an app whose sign-in broke must still be able to update itself.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Map, Value};

use super::AppState;
use crate::error::ApiError;
use crate::updates::{parse_version, Artifact, ArtifactUrl, ChannelError, Manifest, UpdateChannels};

/// What a file name keeps unescaped in a URL: the unreserved characters of RFC 3986.
const FILE_NAME: &AsciiSet = &NON_ALPHANUMERIC.remove(b'.').remove(b'_').remove(b'-').remove(b'~');

/// `GET /updates/{channel}/latest.json`: the manifest with local file names made absolute URLs.
pub async fn static_manifest(
    State(app): State<AppState>,
    Path(channel): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let manifest = load(&app, &channel).await?;
    let base = files_base(&headers, &channel);
    let platforms: Map<String, Value> = manifest
        .platforms
        .iter()
        .map(|(platform, artifact)| {
            (platform.clone(), json!({ "signature": artifact.signature, "url": url_of(artifact, &base) }))
        })
        .collect();
    let mut body = header_fields(&manifest);
    body.insert("platforms".into(), Value::Object(platforms));
    Ok(no_cache(Json(Value::Object(body)).into_response()))
}

/// `?bundle_type=` of the dynamic endpoint: how the asking app was installed (the updater's
/// `{{bundle_type}}`: `appimage`, `deb`, `rpm`, `nsis`, `msi`, `app`, or `unknown`).
#[derive(Debug, Default, serde::Deserialize)]
pub struct InstalledAs {
    bundle_type: Option<String>,
}

/// `GET /updates/{channel}/{target}/{arch}/{current_version}[?bundle_type=deb]`: 204 when the
/// app is up to date or the channel has nothing for its platform, else that one platform's
/// update: `<target>-<arch>-<bundle_type>` first (a .deb install gets the .deb), then
/// `<target>-<arch>`, as the updater itself looks them up in a static manifest.
pub async fn dynamic_manifest(
    State(app): State<AppState>,
    Path((channel, target, arch, current_version)): Path<(String, String, String, String)>,
    Query(installed): Query<InstalledAs>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let manifest = load(&app, &channel).await?;
    let current = parse_version(&current_version).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_version",
            format!("{current_version:?} is not a semantic version such as 1.2.3 (the app's current version)"),
        )
    })?;
    let bundle = installed.bundle_type.filter(|b| !b.is_empty() && b != "unknown");
    let for_bundle = bundle.and_then(|b| manifest.platforms.get(&format!("{target}-{arch}-{b}")));
    let Some(artifact) = for_bundle.or_else(|| manifest.platforms.get(&format!("{target}-{arch}"))) else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    if manifest.version <= current {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let mut body = header_fields(&manifest);
    body.insert("url".into(), Value::String(url_of(artifact, &files_base(&headers, &channel))));
    body.insert("signature".into(), Value::String(artifact.signature.clone()));
    Ok(no_cache(Json(Value::Object(body)).into_response()))
}

/// `GET /updates/{channel}/files/{name}`: one file of the channel's folder, streamed.
pub async fn artifact(
    State(app): State<AppState>,
    Path((channel, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let updates = channels(&app)?;
    let lookup = {
        let (channel, name) = (channel.clone(), name.clone());
        tokio::task::spawn_blocking(move || updates.file(&channel, &name)).await
    };
    let path = match lookup.map_err(|_| internal())? {
        Ok(Some(path)) => path,
        Ok(None) => {
            return Err(ApiError::not_found(format!(
            "The update channel {channel:?} has no file {name:?}; file names are plain names of files in its folder."
        )))
        }
        Err(error) => return Err(channel_error(&channel, error)),
    };
    let file = tokio::fs::File::open(&path).await.map_err(|error| {
        tracing::warn!(path = %path.display(), %error, "cannot open an update file");
        ApiError::not_found(format!("The update channel {channel:?} has no file {name:?}."))
    })?;
    let length = file.metadata().await.map_err(|_| internal())?.len();
    let stream = tokio_util::io::ReaderStream::new(file);
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream")),
            (header::CONTENT_LENGTH, HeaderValue::from(length)),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

fn channels(app: &AppState) -> Result<Arc<UpdateChannels>, ApiError> {
    app.updates.clone().ok_or_else(|| {
        ApiError::not_found("This backend serves no update channels (it was started without --updates-dir).")
    })
}

/// The channel's checked manifest; reading and verifying it may touch large files, so off the runtime.
async fn load(app: &AppState, channel: &str) -> Result<Arc<Manifest>, ApiError> {
    let updates = channels(app)?;
    let name = channel.to_owned();
    let loaded = tokio::task::spawn_blocking(move || updates.channel(&name)).await.map_err(|_| internal())?;
    loaded.map_err(|error| channel_error(channel, error))
}

fn channel_error(channel: &str, error: ChannelError) -> ApiError {
    match error {
        ChannelError::Unknown => ApiError::not_found(format!(
            "There is no update channel {channel:?} on this backend (channels are folders of --updates-dir named [a-z0-9-]+)."
        )),
        ChannelError::Broken(problem) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "update_channel_unavailable",
            format!("The update channel {channel:?} is not served until its operator fixes it: {problem}."),
        ),
    }
}

fn internal() -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "The backend failed to read its update folder.")
}

/// `version`, and `notes` and `pub_date` when the manifest has them.
fn header_fields(manifest: &Manifest) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("version".into(), Value::String(manifest.version.to_string()));
    if let Some(notes) = &manifest.notes {
        body.insert("notes".into(), Value::String(notes.clone()));
    }
    if let Some(date) = &manifest.pub_date {
        body.insert("pub_date".into(), Value::String(date.clone()));
    }
    body
}

fn url_of(artifact: &Artifact, files_base: &str) -> String {
    match &artifact.url {
        ArtifactUrl::Absolute(url) => url.clone(),
        ArtifactUrl::Local(name) => format!("{files_base}/{}", utf8_percent_encode(name, FILE_NAME)),
    }
}

/// This backend's own address for the channel's files, as the client reached it: the `Host`
/// header, with `X-Forwarded-Proto`/`X-Forwarded-Host` when a TLS-terminating proxy sets them.
/// A client that forges them only misdirects its own answer.
fn files_base(headers: &HeaderMap, channel: &str) -> String {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(',').next().unwrap_or_default().trim().to_owned())
            .filter(|v| !v.is_empty() && !v.contains(['/', ' ', '@', '\\']))
    };
    let scheme = header("x-forwarded-proto").filter(|p| p == "https" || p == "http").unwrap_or_else(|| "http".into());
    let host = header("x-forwarded-host").or_else(|| header("host")).unwrap_or_else(|| "localhost".into());
    format!("{scheme}://{host}/updates/{channel}/files")
}

/// Clients and proxies must ask again each time: a publish changes the answer without a restart.
fn no_cache(mut response: Response) -> Response {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs.iter().map(|(name, value)| (header::HeaderName::from_static(name), value.parse().unwrap())).collect()
    }

    #[test]
    fn local_files_are_addressed_as_the_client_reached_the_backend() {
        let direct = headers(&[("host", "127.0.0.1:8080")]);
        assert_eq!(files_base(&direct, "stable"), "http://127.0.0.1:8080/updates/stable/files");
        let proxied = headers(&[
            ("host", "10.0.0.11:8080"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "uploads.example.com"),
        ]);
        assert_eq!(
            files_base(&proxied, "beta"),
            "https://uploads.example.com/updates/beta/files",
            "behind a TLS-terminating proxy, the address staff use"
        );
        let odd = headers(&[("host", "a.example.com"), ("x-forwarded-proto", "gopher"), ("x-forwarded-host", "x/y")]);
        assert_eq!(files_base(&odd, "stable"), "http://a.example.com/updates/stable/files", "nonsense is ignored");
    }

    #[test]
    fn file_names_are_percent_encoded_in_urls() {
        let artifact = Artifact { url: ArtifactUrl::Local("Dropship 1.0.deb".into()), signature: String::new() };
        assert_eq!(url_of(&artifact, "http://h/updates/s/files"), "http://h/updates/s/files/Dropship%201.0.deb");
    }
}
