//! A channel's `latest.json`: the static manifest tauri-plugin-updater reads, parsed and checked
//! before anything of it is served. An artifact `url` is either absolute (served as written) or
//! the plain name of a file beside the manifest (served by this backend).

use std::collections::BTreeMap;
use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// A parsed and checked `latest.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub version: semver::Version,
    pub notes: Option<String>,
    /// RFC 3339, as written (tauri-plugin-updater parses it itself).
    pub pub_date: Option<String>,
    /// `linux-x86_64`, `darwin-aarch64`, `windows-x86_64-nsis`, … → the artifact.
    pub platforms: BTreeMap<String, Artifact>,
}

/// One platform's update: where to download it and the minisign signature of its bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Artifact {
    pub url: ArtifactUrl,
    /// The `.sig` file's contents as the bundler writes them: base64 of minisign's signature text.
    pub signature: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactUrl {
    /// An `http(s)://` URL elsewhere (a CDN, a release page).
    Absolute(String),
    /// A file in the channel's folder, served at `/updates/{channel}/files/{name}`.
    Local(String),
}

/// What is wrong with a manifest, in words an operator can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError(pub String);

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The file as written; fields are checked one by one afterwards so each problem gets a sentence.
#[derive(Deserialize)]
struct RawManifest {
    version: String,
    #[serde(default)]
    notes: Option<String>,
    #[serde(default)]
    pub_date: Option<String>,
    platforms: BTreeMap<String, RawPlatform>,
}

#[derive(Deserialize)]
struct RawPlatform {
    signature: String,
    url: String,
}

impl Manifest {
    pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
        let raw: RawManifest = serde_json::from_str(text).map_err(|e| {
            ManifestError(format!(
                "is not a tauri-plugin-updater manifest ({e}); it needs \"version\" and \"platforms\": \
                 {{\"linux-x86_64\": {{\"signature\", \"url\"}}}}"
            ))
        })?;
        let version = parse_version(&raw.version).ok_or_else(|| {
            ManifestError(format!("\"version\" {:?} is not a semantic version such as 1.2.3", raw.version))
        })?;
        if let Some(date) = &raw.pub_date {
            OffsetDateTime::parse(date, &Rfc3339).map_err(|_| {
                ManifestError(format!("\"pub_date\" {date:?} is not an RFC 3339 date such as 2026-12-06T12:00:00Z"))
            })?;
        }
        if raw.platforms.is_empty() {
            return Err(ManifestError("\"platforms\" is empty: no platform would ever be offered this update".into()));
        }
        let mut platforms = BTreeMap::new();
        for (platform, entry) in raw.platforms {
            let artifact =
                Artifact::parse(&entry).map_err(|why| ManifestError(format!("platform {platform:?}: {why}")))?;
            platforms.insert(platform, artifact);
        }
        Ok(Manifest { version, notes: raw.notes, pub_date: raw.pub_date, platforms })
    }
}

impl Artifact {
    fn parse(raw: &RawPlatform) -> Result<Artifact, String> {
        let signature = raw.signature.trim().to_owned();
        decode_signature(&signature)?;
        let url = raw.url.trim();
        let url = if url.contains("://") {
            let parsed = reqwest::Url::parse(url).map_err(|e| format!("\"url\" {url:?} is not a URL ({e})"))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(format!("\"url\" {url:?} is not http(s)"));
            }
            ArtifactUrl::Absolute(url.to_owned())
        } else {
            let name = url.strip_prefix("./").unwrap_or(url);
            if !is_plain_file_name(name) {
                return Err(format!(
                    "\"url\" {url:?} is neither an http(s) URL nor the plain name of a file beside latest.json"
                ));
            }
            ArtifactUrl::Local(name.to_owned())
        };
        Ok(Artifact { url, signature })
    }
}

/// The minisign signature inside a `.sig` file's base64, or why it is not one.
pub fn decode_signature(signature: &str) -> Result<minisign_verify::Signature, String> {
    let text = STANDARD
        .decode(signature.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or("\"signature\" is not the base64 text of a .sig file (paste the file's contents as they are)")?;
    minisign_verify::Signature::decode(&text)
        .map_err(|e| format!("\"signature\" does not hold a minisign signature ({e}); paste the .sig file's contents"))
}

/// Versions as tauri-plugin-updater reads them: semver, a leading `v` allowed.
pub fn parse_version(raw: &str) -> Option<semver::Version> {
    let raw = raw.trim();
    semver::Version::parse(raw.strip_prefix('v').unwrap_or(raw)).ok()
}

/// A name that can only mean a file directly in one folder: no separators, no `.`/`..`, not
/// hidden, no control characters.
pub fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && !name.contains(['/', '\\', ':'])
        && !name.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signature() -> String {
        // A real minisign signature (from minisign-verify's own tests), as a .sig file holds it.
        let text = "untrusted comment: signature from minisign secret key\n\
RWQf6LRCGA9i59SLOFxz6NxvASXDJeRtuZykwQepbDEGt87ig1BNpWaVWuNrm73YiIiJbq71Wi+dP9eKL8OC351vwIasSSbXxwA=\n\
trusted comment: timestamp:1555779966\tfile:test\n\
QtKMXWyYcwdpZAlPF7tE2ENJkRd1ujvKjlj1m9RtHTBnZPa5WKU5uWRs5GoP5M/VqE81QFuMKI5k/SfNQUaOAA==\n";
        STANDARD.encode(text)
    }

    fn manifest(url: &str) -> String {
        serde_json::json!({
            "version": "1.2.0",
            "notes": "Faster resumes",
            "pub_date": "2026-12-06T12:00:00Z",
            "platforms": { "linux-x86_64": { "signature": signature(), "url": url } }
        })
        .to_string()
    }

    #[test]
    fn a_bundler_manifest_with_a_relative_url_names_a_local_file() {
        let parsed = Manifest::parse(&manifest("Dropship_1.2.0_amd64.AppImage")).expect("a good manifest parses");
        assert_eq!(parsed.version, semver::Version::new(1, 2, 0));
        assert_eq!(parsed.notes.as_deref(), Some("Faster resumes"));
        assert_eq!(
            parsed.platforms["linux-x86_64"].url,
            ArtifactUrl::Local("Dropship_1.2.0_amd64.AppImage".into()),
            "a bare name is a file beside latest.json"
        );
        let dotted = Manifest::parse(&manifest("./Dropship.deb")).unwrap();
        assert_eq!(dotted.platforms["linux-x86_64"].url, ArtifactUrl::Local("Dropship.deb".into()), "./ is allowed");
    }

    #[test]
    fn an_absolute_url_is_kept_as_written() {
        let url = "https://cdn.example.com/dropship/Dropship_1.2.0_amd64.AppImage";
        let parsed = Manifest::parse(&manifest(url)).unwrap();
        assert_eq!(parsed.platforms["linux-x86_64"].url, ArtifactUrl::Absolute(url.into()));
    }

    #[test]
    fn paths_that_leave_the_folder_and_other_schemes_are_refused() {
        for url in ["../secret", "sub/dir.deb", "/etc/passwd", ".hidden", "ftp://x/y", "file:///etc/passwd", ""] {
            let error = Manifest::parse(&manifest(url)).expect_err(url);
            assert!(error.0.contains("linux-x86_64"), "the error names the platform: {error}");
        }
    }

    #[test]
    fn malformed_manifests_are_refused_with_a_reason() {
        let cases = [
            ("{", "is not a tauri-plugin-updater manifest"),
            (r#"{"version":"1.0.0"}"#, "is not a tauri-plugin-updater manifest"),
            (r#"{"version":"one","platforms":{}}"#, "is not a semantic version"),
            (r#"{"version":"1.0.0","platforms":{}}"#, "is empty"),
            (r#"{"version":"1.0.0","pub_date":"yesterday","platforms":{}}"#, "RFC 3339"),
            (r#"{"version":"1.0.0","platforms":{"linux-x86_64":{"signature":"bm90IGEgc2ln","url":"a"}}}"#, "minisign"),
            (r#"{"version":"1.0.0","platforms":{"linux-x86_64":{"signature":"%%%","url":"a"}}}"#, "base64"),
        ];
        for (text, expected) in cases {
            let error = Manifest::parse(text).expect_err(text);
            assert!(error.0.contains(expected), "{text} → {error} (expected it to mention {expected:?})");
        }
    }

    #[test]
    fn versions_may_carry_a_leading_v_as_tauri_allows() {
        assert_eq!(parse_version("v2.0.1-beta.1").unwrap().to_string(), "2.0.1-beta.1");
        assert!(parse_version("2.0").is_none(), "two parts are not semver");
    }
}
