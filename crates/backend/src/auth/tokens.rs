//! Static bearer tokens, each naming its principal: `NAME:TOKEN`, or a bare `TOKEN` whose
//! principal is `token-<first 8 hex digits of its SHA-256>` (so logs and records can name it
//! without revealing it). Compared in constant time.

use sha2::{Digest, Sha256};

/// One configured token and the principal it stands for.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticToken {
    pub name: String,
    secret: String,
}

impl std::fmt::Debug for StaticToken {
    /// Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticToken").field("name", &self.name).finish_non_exhaustive()
    }
}

impl StaticToken {
    /// Reads one `--tokens` entry (already trimmed, not empty). A `:` separates the name; a
    /// name must be printable, without spaces or commas, as it shows up in records and logs.
    pub fn parse(entry: &str) -> Result<Self, String> {
        match entry.split_once(':') {
            Some((name, secret)) => {
                let (name, secret) = (name.trim(), secret.trim());
                if name.is_empty() || secret.is_empty() {
                    return Err(format!(
                        "a --tokens entry of the form NAME:TOKEN needs both a name and a token; got one starting {:?}",
                        name
                    ));
                }
                if !name.chars().all(|c| c.is_ascii_graphic() || (!c.is_ascii() && !c.is_control())) {
                    return Err(format!("the principal name {name:?} must be printable, without spaces"));
                }
                Ok(Self { name: name.to_owned(), secret: secret.to_owned() })
            }
            None => Ok(Self { name: default_name(entry), secret: entry.to_owned() }),
        }
    }

    pub fn matches(&self, presented: &str) -> bool {
        constant_time_eq(&self.secret, presented)
    }
}

/// `token-` and the first 8 hex digits of the token's SHA-256.
pub fn default_name(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let hex: String = digest.iter().take(4).map(|byte| format!("{byte:02x}")).collect();
    format!("token-{hex}")
}

/// Compares without an early exit, so response timing does not reveal how much of a guessed
/// token was right.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut difference = a.len() ^ b.len();
    for (index, byte) in a.iter().enumerate() {
        difference |= usize::from(byte ^ b.get(index).copied().unwrap_or(0));
    }
    difference == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_entry_splits_at_the_first_colon() {
        let token = StaticToken::parse("ci-bot:abc:def").unwrap();
        assert_eq!(token.name, "ci-bot", "the name is before the first colon");
        assert!(token.matches("abc:def"), "the token may itself contain colons");
    }

    #[test]
    fn a_bare_token_is_named_after_its_hash() {
        let token = StaticToken::parse("secret").unwrap();
        // SHA-256("secret") = 2bb80d53…
        assert_eq!(token.name, "token-2bb80d53", "token- and 8 hex digits of its SHA-256");
        assert!(token.matches("secret"));
    }

    #[test]
    fn a_name_or_token_left_empty_is_refused() {
        assert!(StaticToken::parse(":abc").is_err(), "an empty name is refused");
        assert!(StaticToken::parse("alice:").is_err(), "an empty token is refused");
        assert!(StaticToken::parse("al ice:abc").is_err(), "a name with a space is refused");
    }

    #[test]
    fn the_debug_form_never_shows_the_token() {
        let token = StaticToken::parse("alice:hunter2").unwrap();
        assert!(!format!("{token:?}").contains("hunter2"), "the secret stays out of logs");
    }

    #[test]
    fn token_comparison_needs_every_byte_and_the_length_to_match() {
        assert!(constant_time_eq("secret", "secret"));
        assert!(!constant_time_eq("secret", "secreT"));
        assert!(!constant_time_eq("secret", "secret2"));
        assert!(!constant_time_eq("secret", "secre"));
        assert!(!constant_time_eq("", "x"));
    }
}
