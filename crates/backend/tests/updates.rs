//! Desktop app updates served from `--updates-dir`: the manifests tauri-plugin-updater reads
//! (static and dynamic), the artifacts, and the refusals — paths out of a channel folder, broken
//! channels, signatures by the wrong key. Artifacts are signed for real with minisign, as
//! `tauri signer sign` does, and the signatures served are checked against the bytes served.

mod common;

use std::io::{Cursor, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::*;
use dropship_testkit::{block_on, Backend, BackendOptions};
use minisign::KeyPair;
use reqwest::StatusCode;
use serde_json::{json, Value};

const APPIMAGE: &str = "Dropship_1.2.0_amd64.AppImage";
const APPIMAGE_BYTES: &[u8] = b"pretend this is an AppImage: \x00\x01\x02 and some more bytes";

/// A key pair as `tauri signer generate` makes one, with the public key as it prints it.
struct SigningKey {
    pair: KeyPair,
}

impl SigningKey {
    fn generate() -> Self {
        Self { pair: KeyPair::generate_unencrypted_keypair().expect("a minisign key pair") }
    }

    /// What `tauri signer generate` prints and `plugins.updater.pubkey` holds: base64 of the `.pub` file.
    fn public_key_text(&self) -> String {
        STANDARD.encode(self.pair.pk.to_box().expect("a public key box").to_string())
    }

    /// What `tauri signer sign` writes to `FILE.sig`: base64 of minisign's signature text.
    fn sign(&self, bytes: &[u8]) -> String {
        let signature =
            minisign::sign(Some(&self.pair.pk), &self.pair.sk, Cursor::new(bytes), None, None).expect("minisign signs");
        STANDARD.encode(signature.to_string())
    }
}

/// Checks a served signature over served bytes exactly as tauri-plugin-updater does.
fn verifies(public_key_text: &str, signature: &str, bytes: &[u8]) -> bool {
    let decode = |b64: &str| String::from_utf8(STANDARD.decode(b64).expect("base64")).expect("utf-8");
    let key = minisign_verify::PublicKey::decode(&decode(public_key_text)).expect("a public key");
    let signature = minisign_verify::Signature::decode(&decode(signature)).expect("a signature");
    key.verify(bytes, &signature, true).is_ok()
}

/// Writes `DIR/<channel>/latest.json` and the given files.
fn publish(dir: &Path, channel: &str, manifest: &Value, files: &[(&str, &[u8])]) {
    let folder = dir.join(channel);
    std::fs::create_dir_all(&folder).expect("a channel folder");
    for (name, bytes) in files {
        std::fs::write(folder.join(name), bytes).expect("an artifact");
    }
    std::fs::write(folder.join("latest.json"), manifest.to_string()).expect("a manifest");
}

/// A channel offering 1.2.0: the AppImage beside the manifest for Linux, a CDN URL for macOS.
fn manifest_for(key: &SigningKey, bytes: &[u8]) -> Value {
    json!({
        "version": "1.2.0",
        "notes": "Resumes after sleep.",
        "pub_date": "2026-12-06T12:00:00Z",
        "platforms": {
            "linux-x86_64": { "signature": key.sign(bytes), "url": APPIMAGE },
            "darwin-aarch64": {
                "signature": key.sign(b"a dmg"),
                "url": "https://cdn.example.com/dropship/Dropship_1.2.0_aarch64.app.tar.gz"
            }
        }
    })
}

fn start_with_updates(dir: &Path, public_key: Option<&str>) -> Backend {
    let mut args = vec!["--updates-dir".to_owned(), dir.to_str().expect("a UTF-8 path").to_owned()];
    if let Some(key) = public_key {
        args.extend(["--updates-public-key".to_owned(), key.to_owned()]);
    }
    start_backend_with(BackendOptions { extra_args: args, ..Default::default() })
}

fn get(backend: &Backend, path: &str) -> Reply {
    call(backend, "GET", path, None, None)
}

/// GETs a URL and keeps the raw bytes and the Content-Length header.
fn download(url: &str) -> (StatusCode, Option<u64>, Vec<u8>) {
    let url = url.to_owned();
    block_on(async move {
        let response = reqwest::get(&url).await.expect("the download reaches the backend");
        let status = response.status();
        let length = response.headers().get("content-length").and_then(|v| v.to_str().ok()?.parse().ok());
        (status, length, response.bytes().await.expect("a body").to_vec())
    })
}

/// Sends a request line exactly as written (no client normalises its `..`): status and answer.
fn raw_get(backend: &Backend, target: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(backend.url.trim_start_matches("http://")).expect("connects");
    write!(stream, "GET {target} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").expect("writes");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let status = answer.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("a status line");
    (status, answer)
}

#[test]
fn the_static_manifest_points_local_artifacts_at_this_backend_and_they_verify() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let manifest = manifest_for(&key, APPIMAGE_BYTES);
    publish(dir.path(), "stable", &manifest, &[(APPIMAGE, APPIMAGE_BYTES)]);
    let backend = start_with_updates(dir.path(), Some(&key.public_key_text()));

    let reply = get(&backend, "/updates/stable/latest.json");
    assert_eq!(reply.status, StatusCode::OK, "the manifest is served without a token: {}", reply.text);
    assert_eq!(reply.body["version"], "1.2.0");
    assert_eq!(reply.body["notes"], "Resumes after sleep.");
    assert_eq!(reply.body["pub_date"], "2026-12-06T12:00:00Z");
    let linux = &reply.body["platforms"]["linux-x86_64"];
    let url = linux["url"].as_str().expect("a url");
    assert_eq!(
        url,
        format!("{}/updates/stable/files/{APPIMAGE}", backend.url),
        "a bare name becomes this backend's URL"
    );
    assert_eq!(linux["signature"], manifest["platforms"]["linux-x86_64"]["signature"], "the .sig text as published");
    assert_eq!(
        reply.body["platforms"]["darwin-aarch64"]["url"], manifest["platforms"]["darwin-aarch64"]["url"],
        "an absolute URL is served as written"
    );

    let (status, length, bytes) = download(url);
    assert_eq!(status, StatusCode::OK, "the artifact is served");
    assert_eq!(bytes, APPIMAGE_BYTES, "byte for byte");
    assert_eq!(length, Some(APPIMAGE_BYTES.len() as u64), "with its Content-Length");
    assert!(
        verifies(&key.public_key_text(), linux["signature"].as_str().unwrap(), &bytes),
        "the served signature verifies over the served bytes, as the updater will check"
    );
}

#[test]
fn the_dynamic_endpoint_answers_204_unless_the_channel_has_a_newer_version_for_that_platform() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let manifest = manifest_for(&key, APPIMAGE_BYTES);
    publish(dir.path(), "stable", &manifest, &[(APPIMAGE, APPIMAGE_BYTES)]);
    let backend = start_with_updates(dir.path(), None);

    for current in ["1.2.0", "1.3.0", "2.0.0-beta.1"] {
        let reply = get(&backend, &format!("/updates/stable/linux/x86_64/{current}"));
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{current} is not older than 1.2.0: {}", reply.text);
        assert!(reply.text.is_empty(), "204 has no body");
    }
    let reply = get(&backend, "/updates/stable/windows/x86_64/0.1.0");
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "no windows-x86_64 entry means no update");

    for current in ["1.1.9", "1.2.0-rc.1", "v0.1.0"] {
        let reply = get(&backend, &format!("/updates/stable/linux/x86_64/{current}"));
        assert_eq!(reply.status, StatusCode::OK, "{current} is older than 1.2.0: {}", reply.text);
        assert_eq!(
            reply.body,
            json!({
                "version": "1.2.0",
                "notes": "Resumes after sleep.",
                "pub_date": "2026-12-06T12:00:00Z",
                "url": format!("{}/updates/stable/files/{APPIMAGE}", backend.url),
                "signature": manifest["platforms"]["linux-x86_64"]["signature"],
            }),
            "the single-platform manifest of tauri-plugin-updater's dynamic form"
        );
    }
    let mac = get(&backend, "/updates/stable/darwin/aarch64/1.0.0");
    assert_eq!(mac.body["url"], manifest["platforms"]["darwin-aarch64"]["url"], "the platform's own entry");

    let bad = get(&backend, "/updates/stable/linux/x86_64/latest");
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "a current version that is not semver is refused");
    assert_eq!(error_code(&bad), "invalid_version");
}

#[test]
fn the_dynamic_endpoint_gives_a_deb_install_the_deb_and_others_the_platforms_entry() {
    const DEB: &str = "Dropship_1.2.0_amd64.deb";
    const DEB_BYTES: &[u8] = b"!<arch>\ndebian-binary and the rest of a .deb";
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let mut manifest = manifest_for(&key, APPIMAGE_BYTES);
    manifest["platforms"]["linux-x86_64-deb"] = json!({ "signature": key.sign(DEB_BYTES), "url": DEB });
    publish(dir.path(), "stable", &manifest, &[(APPIMAGE, APPIMAGE_BYTES), (DEB, DEB_BYTES)]);
    let backend = start_with_updates(dir.path(), None);

    let file_of = |query: &str| {
        let reply = get(&backend, &format!("/updates/stable/linux/x86_64/1.0.0{query}"));
        assert_eq!(reply.status, StatusCode::OK, "{query}: {}", reply.text);
        reply.body["url"].as_str().unwrap().rsplit('/').next().unwrap().to_owned()
    };
    assert_eq!(file_of("?bundle_type=deb"), DEB, "a .deb install is offered the .deb");
    assert_eq!(file_of("?bundle_type=appimage"), APPIMAGE, "no linux-x86_64-appimage entry: the platform's own");
    assert_eq!(file_of("?bundle_type=unknown"), APPIMAGE);
    assert_eq!(file_of(""), APPIMAGE, "without a bundle type, as before");
}

#[test]
fn only_plain_names_of_files_in_the_channel_folder_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    publish(dir.path(), "stable", &manifest_for(&key, APPIMAGE_BYTES), &[(APPIMAGE, APPIMAGE_BYTES)]);
    std::fs::write(dir.path().join("secret.txt"), b"outside every channel").unwrap();
    std::fs::write(dir.path().join("stable/.hidden"), b"hidden").unwrap();
    std::fs::create_dir(dir.path().join("stable/sub")).unwrap();
    let backend = start_with_updates(dir.path(), None);

    for name in ["..%2Fsecret.txt", "%2E%2E%2Fsecret.txt", "..", ".hidden", "sub", "missing.deb", "%2Fetc%2Fpasswd"] {
        let reply = get(&backend, &format!("/updates/stable/files/{name}"));
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{name} is refused: {}", reply.text);
        assert_eq!(error_code(&reply), "not_found", "{name}: the usual JSON error");
        assert!(!reply.text.contains("outside every channel"), "{name} leaked a file outside the channel");
    }
    for target in ["/updates/stable/files/../secret.txt", "/updates/stable/files/../../secret.txt"] {
        let (status, answer) = raw_get(&backend, target);
        assert!((400..500).contains(&status), "{target} as sent on the wire is refused: {answer}");
        assert!(!answer.contains("outside every channel"), "{target} leaked a file outside the channel");
    }
    let (status, _, bytes) = download(&format!("{}/updates/stable/files/{APPIMAGE}", backend.url));
    assert_eq!((status, bytes.as_slice()), (StatusCode::OK, APPIMAGE_BYTES), "a plain name in the folder is served");
    let reply = get(&backend, "/updates/nope/files/secret.txt");
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "an unknown channel serves no files");
}

#[test]
fn a_broken_channel_answers_503_with_its_problem_and_recovers_when_fixed_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let good = manifest_for(&key, APPIMAGE_BYTES);
    publish(dir.path(), "stable", &good, &[(APPIMAGE, APPIMAGE_BYTES)]);
    std::fs::create_dir(dir.path().join("unparsable")).unwrap();
    std::fs::write(dir.path().join("unparsable/latest.json"), "{\"version\": ").unwrap();
    let mut not_semver = good.clone();
    not_semver["version"] = json!("1.2");
    publish(dir.path(), "not-semver", &not_semver, &[(APPIMAGE, APPIMAGE_BYTES)]);
    publish(dir.path(), "missing-file", &good, &[]);
    let backend = start_with_updates(dir.path(), None);

    let log = backend.log();
    for (channel, problem) in [
        ("unparsable", "is not a tauri-plugin-updater manifest"),
        ("not-semver", "is not a semantic version"),
        ("missing-file", "not a file in the channel folder"),
    ] {
        assert!(
            log.lines().any(|line| line.contains(&format!("{channel}/latest.json")) && line.contains(problem)),
            "the start log names {channel}/latest.json and says {problem:?}:\n{log}"
        );
        for path in [format!("/updates/{channel}/latest.json"), format!("/updates/{channel}/linux/x86_64/0.0.1")] {
            let reply = get(&backend, &path);
            assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{path} is not served: {}", reply.text);
            assert_eq!(error_code(&reply), "update_channel_unavailable");
            let message = reply.body["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains(problem), "{path}: the answer says what is wrong: {message}");
        }
    }
    assert_eq!(
        get(&backend, "/updates/stable/latest.json").status,
        StatusCode::OK,
        "a good channel beside them is served"
    );

    let unknown = get(&backend, "/updates/nightly/latest.json");
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "an unknown channel is 404: {}", unknown.text);
    assert_eq!(error_code(&unknown), "not_found");
    assert_eq!(get(&backend, "/updates/Not_A_Channel/latest.json").status, StatusCode::NOT_FOUND);

    // Publishing the missing artifact fixes the channel; no restart.
    std::fs::write(dir.path().join("missing-file").join(APPIMAGE), APPIMAGE_BYTES).unwrap();
    let reply = get(&backend, "/updates/missing-file/latest.json");
    assert_eq!(reply.status, StatusCode::OK, "the channel is served once its file is there: {}", reply.text);
    // And a new version dropped in is offered at once.
    let mut newer = good.clone();
    newer["version"] = json!("1.3.0");
    publish(dir.path(), "stable", &newer, &[]);
    assert_eq!(get(&backend, "/updates/stable/linux/x86_64/1.2.0").status, StatusCode::OK, "1.3.0 is offered");
}

#[test]
fn with_a_public_key_a_signature_by_another_key_or_over_other_bytes_is_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let ours = SigningKey::generate();
    let theirs = SigningKey::generate();
    publish(dir.path(), "stable", &manifest_for(&ours, APPIMAGE_BYTES), &[(APPIMAGE, APPIMAGE_BYTES)]);
    publish(dir.path(), "beta", &manifest_for(&theirs, APPIMAGE_BYTES), &[(APPIMAGE, APPIMAGE_BYTES)]);
    publish(dir.path(), "tampered", &manifest_for(&ours, b"the bytes that were signed"), &[(APPIMAGE, APPIMAGE_BYTES)]);
    let backend = start_with_updates(dir.path(), Some(&ours.public_key_text()));

    assert_eq!(get(&backend, "/updates/stable/latest.json").status, StatusCode::OK, "our own signature verifies");
    for (channel, problem) in [("beta", "made by another key"), ("tampered", "does not match the bytes")] {
        let reply = get(&backend, &format!("/updates/{channel}/linux/x86_64/1.0.0"));
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{channel} is not served: {}", reply.text);
        assert!(reply.text.contains(problem), "{channel}: the answer says why: {}", reply.text);
        let file = get(&backend, &format!("/updates/{channel}/files/{APPIMAGE}"));
        assert_eq!(file.status, StatusCode::SERVICE_UNAVAILABLE, "{channel}: nor are its files");
        assert!(
            backend.log().lines().any(|l| l.contains(&format!("{channel}/latest.json")) && l.contains(problem)),
            "{channel}: the log says so"
        );
    }

    // The same folders without a key: the mismatch cannot be seen, and the channel is served.
    let unchecked = start_with_updates(dir.path(), None);
    assert_eq!(get(&unchecked, "/updates/beta/latest.json").status, StatusCode::OK);
}

#[test]
fn a_backend_without_an_updates_folder_has_no_channels() {
    let backend = start_backend();
    let reply = get(&backend, "/updates/stable/latest.json");
    assert_eq!(reply.status, StatusCode::NOT_FOUND, "{}", reply.text);
    assert!(reply.text.contains("--updates-dir"), "the answer says how to turn updates on: {}", reply.text);
}
