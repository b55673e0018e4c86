//! The access token in the OS keyring (Secret Service on Linux, Keychain on macOS, Credential
//! Manager on Windows), one entry per data directory so two data directories never share a
//! token by accident. Nothing here logs the token.

use std::path::Path;

/// The keyring's service name; the account is the data directory.
const SERVICE: &str = "dropship";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretsError {
    /// No keyring to talk to (no Secret Service on the session bus, no session bus at all).
    #[error("{0}")]
    Unavailable(String),
    /// The keyring is there but refused or failed (locked and the unlock was dismissed, say).
    #[error("the system keyring failed: {0}")]
    Failed(String),
}

/// The keyring entry holding the token for `data_dir`.
fn entry(data_dir: &Path) -> Result<keyring::Entry, SecretsError> {
    entry_in_slot(data_dir, None)
}

/// The keyring entry for `data_dir`; a named slot (`session`) sits beside the token's entry.
fn entry_in_slot(data_dir: &Path, slot: Option<&str>) -> Result<keyring::Entry, SecretsError> {
    session_bus_present()?;
    let account = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_owned());
    let mut account = account.to_string_lossy().into_owned();
    if let Some(slot) = slot {
        account = format!("{account}#{slot}");
    }
    keyring::Entry::new(SERVICE, &account).map_err(classify)
}

/// The secret kept in `slot` for `data_dir` (the signed-in session, say), if any.
pub fn load_secret(data_dir: &Path, slot: &str) -> Result<Option<String>, SecretsError> {
    match entry_in_slot(data_dir, Some(slot))?.get_password() {
        Ok(secret) => Ok(Some(secret)),
        Err(keyring::Error::NoEntry) => Ok(None),
        Err(e) => Err(classify(e)),
    }
}

/// Keeps `secret` in `slot` for `data_dir`; an empty one removes the entry.
pub fn store_secret(data_dir: &Path, slot: &str, secret: &str) -> Result<(), SecretsError> {
    let entry = entry_in_slot(data_dir, Some(slot))?;
    if secret.is_empty() {
        return match entry.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(classify(e)),
        };
    }
    entry.set_password(secret).map_err(classify)
}

/// The token kept for `data_dir`, or `None` when the keyring holds none.
pub fn load_token(data_dir: &Path) -> Result<Option<String>, SecretsError> {
    match entry(data_dir)?.get_password() {
        Ok(token) => Ok(Some(token)),
        Err(keyring::Error::NoEntry) => Ok(None),
        Err(e) => Err(classify(e)),
    }
}

/// Keeps `token` for `data_dir`; an empty token removes the entry.
pub fn store_token(data_dir: &Path, token: &str) -> Result<(), SecretsError> {
    let entry = entry(data_dir)?;
    if token.is_empty() {
        return match entry.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(classify(e)),
        };
    }
    entry.set_password(token).map_err(classify)
}

/// Without a session bus, libdbus would try to autolaunch one (and with it a keyring daemon
/// that may pop up a dialog nobody answers); it is simpler and more honest to say there is no
/// keyring.
#[cfg(all(unix, not(target_os = "macos")))]
fn session_bus_present() -> Result<(), SecretsError> {
    match std::env::var_os("DBUS_SESSION_BUS_ADDRESS") {
        Some(address) if !address.is_empty() => Ok(()),
        _ => Err(SecretsError::Unavailable(
            "There is no desktop session bus (DBUS_SESSION_BUS_ADDRESS is not set), so no system keyring \
             (Secret Service) can be reached."
                .into(),
        )),
    }
}

#[cfg(not(all(unix, not(target_os = "macos"))))]
fn session_bus_present() -> Result<(), SecretsError> {
    Ok(())
}

fn classify(e: keyring::Error) -> SecretsError {
    match e {
        keyring::Error::NoStorageAccess(inner) => {
            SecretsError::Unavailable(format!("No system keyring answered ({inner}). On Linux, install and start a Secret Service such as GNOME Keyring or KeePassXC."))
        }
        keyring::Error::PlatformFailure(inner) => {
            let text = inner.to_string();
            // D-Bus says ServiceUnknown / "not provided by any .service files" when nothing
            // implements the Secret Service.
            if text.contains("ServiceUnknown") || text.contains("not provided") || text.contains("No such") {
                SecretsError::Unavailable(format!("No system keyring answered ({text}). On Linux, install and start a Secret Service such as GNOME Keyring or KeePassXC."))
            } else {
                SecretsError::Failed(text)
            }
        }
        other => SecretsError::Failed(other.to_string()),
    }
}

#[cfg(all(test, unix, not(target_os = "macos")))]
mod tests {
    use super::*;

    #[test]
    fn without_a_session_bus_the_keyring_is_reported_unavailable_not_autolaunched() {
        // Only meaningful where the test runs without a session bus (CI, a plain shell).
        if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some() {
            return;
        }
        let err = load_token(Path::new("/tmp/nowhere")).unwrap_err();
        assert!(matches!(err, SecretsError::Unavailable(_)), "{err:?}");
        assert!(err.to_string().contains("keyring"), "the message should name the keyring: {err}");
    }
}
