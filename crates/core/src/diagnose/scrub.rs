//! The last pass over every text that goes into a diagnostics bundle: known secrets (the token,
//! the sign-in's tokens) are cut out wherever they appear, signed query strings and bearer
//! tokens by their shape, and with `--hash-names` every known file name and path is replaced by
//! a short stable hash. Nothing is supposed to need it (logs and the history hold no secret in
//! the first place); it is there so that a mistake elsewhere does not leave the machine.

use aho_corasick::{AhoCorasick, MatchKind};
use regex::Regex;
use sha2::{Digest, Sha256};

const REDACTED: &str = "[redacted]";
/// Names shorter than this are hashed in structured fields but not searched for in free text,
/// where "a" or "db" would replace every such word of every log line.
const MIN_NAME_IN_TEXT: usize = 3;

/// `name-3fa9c0e1b2d4`: the first 12 hex digits of the SHA-256 of the name or path, the same on
/// every machine, so a person can ask "is name-3fa9c0e1b2d4 your `report.pdf`?".
pub fn hash_name(name: &str) -> String {
    let digest = Sha256::digest(name.as_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("name-{hex}")
}

pub struct Scrubber {
    secrets: Option<AhoCorasick>,
    /// Signed query parameters, bearer tokens, and URLs' query strings.
    shapes: Vec<Regex>,
    names: Option<(AhoCorasick, Vec<String>)>,
}

impl Scrubber {
    /// `secrets` are cut out as they are; `names` (file names, paths, keys) are hashed when
    /// given (`--hash-names`).
    pub fn new(secrets: &[String], names: Option<Vec<String>>) -> Scrubber {
        let secrets: Vec<&String> = secrets.iter().filter(|s| !s.trim().is_empty()).collect();
        let secrets = (!secrets.is_empty()).then(|| {
            AhoCorasick::builder().match_kind(MatchKind::LeftmostLongest).build(secrets).expect("secrets are literals")
        });
        let shapes = [
            // A signed URL's query string: everything after `?` goes (the path stays readable).
            r#"(?i)(https?://[^\s"'<>?]*)\?[^\s"'<>]*"#,
            // Signature, credential and token parameters on their own (a query logged without its URL).
            r"(?i)[A-Za-z0-9_-]*(signature|credential|security-token|access_token|refresh_token|id_token|awsaccesskeyid)=[^&\s\x22'<>]*",
            // Any mention of a SigV4 signature header or parameter name.
            r"(?i)x-amz-signature",
            r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+",
        ]
        .iter()
        .map(|pattern| Regex::new(pattern).expect("the patterns are valid"))
        .collect();
        let names = names.map(|mut names| {
            names.retain(|n| n.chars().count() >= MIN_NAME_IN_TEXT);
            names.sort();
            names.dedup();
            let searcher = AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&names)
                .expect("names are literals");
            (searcher, names)
        });
        Scrubber { secrets, shapes, names }
    }

    pub fn hashes_names(&self) -> bool {
        self.names.is_some()
    }

    /// A name or path in a structured field: hashed whole when names are hashed.
    pub fn name(&self, name: &str) -> String {
        if self.hashes_names() {
            hash_name(name)
        } else {
            self.text(name)
        }
    }

    pub fn text(&self, text: &str) -> String {
        let mut text = match &self.secrets {
            Some(secrets) => secrets.replace_all(text, &vec![REDACTED; secrets.patterns_len()]),
            None => text.to_owned(),
        };
        for (i, shape) in self.shapes.iter().enumerate() {
            let replacement = if i == 0 { "$1?[query removed]" } else { REDACTED };
            if shape.is_match(&text) {
                text = shape.replace_all(&text, replacement).into_owned();
            }
        }
        match &self.names {
            Some((searcher, names)) => replace_whole_names(&text, searcher, names),
            None => text,
        }
    }

    /// Every string in a JSON document, keys excepted (they are the bundle's own words).
    pub fn json(&self, value: &mut serde_json::Value) {
        use serde_json::Value;
        match value {
            Value::String(s) => *s = self.text(s),
            Value::Array(items) => items.iter_mut().for_each(|v| self.json(v)),
            Value::Object(fields) => fields.values_mut().for_each(|v| self.json(v)),
            _ => {}
        }
    }
}

/// Whether the characters next to a match (nearest first) carry the name on: "data" inside
/// "metadata" or "report" inside "report.pdf" is part of a longer name, not the name. A dot
/// carries it on only before a letter or digit, so a name ending a sentence is still found.
fn continues_name(mut beside: impl Iterator<Item = char>) -> bool {
    let word = |c: char| c.is_alphanumeric() || matches!(c, '_' | '-');
    match beside.next() {
        Some(c) if word(c) => true,
        Some('.' | '~') => beside.next().is_some_and(word),
        _ => false,
    }
}

fn replace_whole_names(text: &str, searcher: &AhoCorasick, names: &[String]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for found in searcher.find_iter(text) {
        if continues_name(text[..found.start()].chars().rev()) || continues_name(text[found.end()..].chars()) {
            continue;
        }
        out.push_str(&text[last..found.start()]);
        out.push_str(&hash_name(&names[found.pattern().as_usize()]));
        last = found.end();
    }
    out.push_str(&text[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_secrets_signed_queries_and_bearer_tokens_are_cut_out_of_any_text() {
        let scrub = Scrubber::new(&["tok-123".into(), String::new()], None);
        let text = scrub.text(
            "PUT http://127.0.0.1:8333/b/k.bin?X-Amz-Algorithm=AWS4&X-Amz-Signature=abcd failed; \
             token tok-123; Authorization: Bearer eyJhbGciOi.x.y; query Signature=zz&Expires=1 \
             header X-Amz-Signature",
        );
        for secret in ["tok-123", "abcd", "eyJhbGciOi", "zz", "X-Amz-Signature", "Signature="] {
            assert!(!text.contains(secret), "{secret} must not survive: {text}");
        }
        assert!(text.contains("http://127.0.0.1:8333/b/k.bin?[query removed]"), "the URL stays readable: {text}");
    }

    #[test]
    fn with_hash_names_every_known_name_and_path_becomes_its_stable_hash_and_nothing_else_does() {
        let names = vec!["/home/alice/Q3 report.pdf".into(), "Q3 report.pdf".into(), "db".into(), "data".into()];
        let scrub = Scrubber::new(&[], Some(names));
        let text = scrub.text(
            "uploaded /home/alice/Q3 report.pdf, then \"Q3 report.pdf\" again; metadata db ok; not found: Q3 report.pdf.",
        );
        assert!(!text.contains("Q3 report"), "{text}");
        assert!(text.contains(&hash_name("/home/alice/Q3 report.pdf")), "{text}");
        assert!(text.contains(&hash_name("Q3 report.pdf")), "{text}");
        assert!(text.contains("metadata db ok"), "parts of words and short names stay: {text}");
        assert_eq!(hash_name("x"), hash_name("x"), "stable");
        assert_eq!(hash_name("x").len(), "name-".len() + 12);
    }
}
