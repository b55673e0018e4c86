//! Desktop app updates served from a folder: `DIR/<channel>/latest.json` (tauri-plugin-updater's
//! static manifest) and the artifacts beside it. A channel is checked whole before it is served
//! (manifest, files, signatures) and checked again whenever a file in it changes, so an
//! organisation publishes by copying files in, and a broken publish answers 503, never garbage.

pub mod manifest;

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use manifest::{decode_signature, is_plain_file_name};
pub use manifest::{parse_version, Artifact, ArtifactUrl, Manifest};

/// The manifest's file name in every channel folder.
pub const MANIFEST_FILE: &str = "latest.json";

/// The update folders and the key their artifacts must be signed with.
#[derive(Debug)]
pub struct UpdateChannels {
    dir: PathBuf,
    public_key: Option<minisign_verify::PublicKey>,
    /// Channel → what was loaded and the file states it was loaded from.
    loaded: Mutex<HashMap<String, Arc<Loaded>>>,
}

#[derive(Debug)]
struct Loaded {
    fingerprint: Fingerprint,
    channel: Result<Arc<Manifest>, String>,
}

/// Size and modification time of the manifest and every local artifact it names: a change to
/// any of them means the channel is read and checked again.
type Fingerprint = Vec<(PathBuf, Option<(u64, SystemTime)>)>;

/// Why a channel cannot be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelError {
    /// No such folder (or not a valid channel name): 404.
    Unknown,
    /// The folder is there but what it holds is wrong: 503, with the problem.
    Broken(String),
}

/// The public key text `tauri signer generate` prints (base64 of a minisign `.pub` file), or the
/// bare `RW…` key line of a minisign `.pub` file.
pub fn parse_public_key(raw: &str) -> Result<minisign_verify::PublicKey, String> {
    let raw = raw.trim();
    if let Ok(key) = minisign_verify::PublicKey::from_base64(raw) {
        return Ok(key);
    }
    let text = STANDARD
        .decode(raw)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or("it is neither the base64 text `tauri signer generate` prints nor a minisign key line")?;
    minisign_verify::PublicKey::decode(&text).map_err(|e| format!("it does not hold a minisign public key ({e})"))
}

/// `[a-z0-9-]+`: a channel is a folder name that is safe in a URL and a path.
pub fn is_channel_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl UpdateChannels {
    pub fn new(dir: PathBuf, public_key: Option<minisign_verify::PublicKey>) -> Self {
        Self { dir, public_key, loaded: Mutex::new(HashMap::new()) }
    }

    /// Checks every channel folder now and logs what it found: one line per channel, naming the
    /// file and the problem when there is one. Returns the channel names.
    pub fn report_at_start(&self) -> Vec<String> {
        let mut names: Vec<String> = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| is_channel_name(n))
                .collect(),
            Err(error) => {
                tracing::error!(dir = %self.dir.display(), %error, "cannot read the updates folder");
                return Vec::new();
            }
        };
        names.sort();
        if names.is_empty() {
            tracing::warn!(dir = %self.dir.display(), "the updates folder has no channel folders ([a-z0-9-]+) yet");
        }
        for name in &names {
            // A broken channel's problem is logged as it is loaded.
            if let Ok(manifest) = self.channel(name) {
                tracing::info!(
                    channel = %name,
                    version = %manifest.version,
                    platforms = ?manifest.platforms.keys().collect::<Vec<_>>(),
                    signatures_checked = self.public_key.is_some(),
                    "update channel ready"
                );
            }
        }
        names
    }

    /// The channel's checked manifest, read again if any of its files changed since last time.
    pub fn channel(&self, name: &str) -> Result<Arc<Manifest>, ChannelError> {
        if !is_channel_name(name) {
            return Err(ChannelError::Unknown);
        }
        let folder = self.dir.join(name);
        if !folder.is_dir() {
            return Err(ChannelError::Unknown);
        }
        let cached = self.lock().get(name).cloned();
        if let Some(loaded) = cached.filter(|l| l.fingerprint.iter().all(|(path, state)| file_state(path) == *state)) {
            return loaded.channel.clone().map_err(ChannelError::Broken);
        }
        let loaded = Arc::new(self.load(name, &folder));
        if let Err(problem) = &loaded.channel {
            tracing::error!(channel = %name, "update channel not served: {problem}");
        }
        self.lock().insert(name.to_owned(), Arc::clone(&loaded));
        loaded.channel.clone().map_err(ChannelError::Broken)
    }

    /// A file of a servable channel: only a plain name of a regular file in its folder.
    pub fn file(&self, channel: &str, name: &str) -> Result<Option<PathBuf>, ChannelError> {
        self.channel(channel)?;
        if !is_plain_file_name(name) {
            return Ok(None);
        }
        let path = self.dir.join(channel).join(name);
        Ok(path.metadata().is_ok_and(|m| m.is_file()).then_some(path))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Loaded>>> {
        self.loaded.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reads and checks one channel. The fingerprint is taken before reading, so a file that
    /// changes while it is read is read again on the next request.
    fn load(&self, name: &str, folder: &Path) -> Loaded {
        let manifest_path = folder.join(MANIFEST_FILE);
        let mut fingerprint = vec![(manifest_path.clone(), file_state(&manifest_path))];
        let shown = format!("{name}/{MANIFEST_FILE}");
        let text = match std::fs::read_to_string(&manifest_path) {
            Ok(text) => text,
            Err(error) => {
                return Loaded { fingerprint, channel: Err(format!("{shown} cannot be read ({error})")) };
            }
        };
        let manifest = match Manifest::parse(&text) {
            Ok(manifest) => manifest,
            Err(error) => return Loaded { fingerprint, channel: Err(format!("{shown} {error}")) },
        };
        for (platform, artifact) in &manifest.platforms {
            if let ArtifactUrl::Local(file) = &artifact.url {
                let path = folder.join(file);
                fingerprint.push((path.clone(), file_state(&path)));
            }
            if let Err(problem) = self.check_artifact(folder, artifact) {
                return Loaded { fingerprint, channel: Err(format!("{shown}: platform {platform:?}: {problem}")) };
            }
        }
        Loaded { fingerprint, channel: Ok(Arc::new(manifest)) }
    }

    /// A local artifact must exist; with a public key, its signature must verify over its bytes
    /// (an absolute URL's signature must at least be made by that key).
    fn check_artifact(&self, folder: &Path, artifact: &Artifact) -> Result<(), String> {
        let signature = decode_signature(&artifact.signature)?;
        let local = match &artifact.url {
            ArtifactUrl::Local(file) => {
                let path = folder.join(file);
                if !path.metadata().is_ok_and(|m| m.is_file()) {
                    return Err(format!("\"url\" names {file}, which is not a file in the channel folder"));
                }
                Some((file, path))
            }
            ArtifactUrl::Absolute(_) => None,
        };
        let Some(key) = &self.public_key else { return Ok(()) };
        let mut verifier = key.verify_stream(&signature).map_err(|e| match e {
            minisign_verify::Error::UnexpectedKeyId => {
                "the signature was made by another key than --updates-public-key".to_owned()
            }
            other => format!("the signature cannot be checked ({other})"),
        })?;
        let Some((file, path)) = local else { return Ok(()) };
        let mut reader = std::fs::File::open(&path).map_err(|e| format!("{file} cannot be read ({e})"))?;
        let mut buffer = vec![0u8; 256 * 1024];
        loop {
            let read = reader.read(&mut buffer).map_err(|e| format!("{file} cannot be read ({e})"))?;
            if read == 0 {
                break;
            }
            verifier.update(&buffer[..read]);
        }
        verifier.finalize().map_err(|_| {
            format!("the signature does not match the bytes of {file} under --updates-public-key (re-sign it, or copy its .sig again)")
        })
    }
}

fn file_state(path: &Path) -> Option<(u64, SystemTime)> {
    let metadata = path.metadata().ok()?;
    Some((metadata.len(), metadata.modified().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_are_lower_case_letters_digits_and_dashes() {
        for good in ["stable", "beta", "canary-2"] {
            assert!(is_channel_name(good), "{good}");
        }
        for bad in ["", "Stable", "..", "a/b", "a_b", "beta.json"] {
            assert!(!is_channel_name(bad), "{bad}");
        }
    }

    #[test]
    fn a_public_key_is_read_as_tauri_prints_it_or_as_a_bare_key_line() {
        let line = "RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3";
        assert!(parse_public_key(line).is_ok(), "a minisign key line");
        let file = format!("untrusted comment: minisign public key E7620F1842B4E81F\n{line}\n");
        assert!(parse_public_key(&STANDARD.encode(file)).is_ok(), "base64 of the .pub file, as tauri prints it");
        assert!(parse_public_key("not a key").is_err());
    }
}
