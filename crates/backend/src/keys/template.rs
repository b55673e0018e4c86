//! The key template an organisation sets (`--key-template`), e.g.
//! `{prefix}/{user}/{date}/{uuid}/{name}`: rendering a key from cleaned values, and recognising
//! a key the template could have rendered. Empty values collapse, so no key has an empty
//! segment, and no value can add a `.` or `..` segment.

use uuid::Uuid;

use super::{is_sanitised_level, sanitise_file_name, MAX_FILE_NAME_BYTES, MAX_FOLDER_LEVELS, MAX_FOLDER_LEVEL_BYTES};

/// The template that reproduces the keys of releases before templates existed.
pub const DEFAULT_KEY_TEMPLATE: &str = "{prefix}/{folder}/{uuid}/{name}";

/// S3's limit on a key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// Longest `{user}` value, in bytes.
pub const MAX_USER_BYTES: usize = 64;

/// Used when nothing usable is left of a principal's name.
const FALLBACK_USER: &str = "user";

/// One placeholder or a run of literal text.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    User,
    Uuid,
    Name,
}

/// One `/`-separated segment of the template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// `{prefix}`: the configured prefix, zero or more levels.
    Prefix,
    /// `{folder}`: the client's folder, zero to four levels.
    Folder,
    /// `{date}`: three levels, `YYYY/MM/DD` in UTC.
    Date,
    /// Literal text, `{user}`, `{uuid}` and `{name}` within one segment.
    Inline(Vec<Piece>),
}

/// A parsed, checked template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTemplate {
    source: String,
    segments: Vec<Segment>,
}

/// What a key is rendered from; every value is cleaned by [`KeyTemplate::render`].
#[derive(Debug, Clone)]
pub struct KeyValues<'a> {
    pub prefix: &'a str,
    pub folder: &'a str,
    pub user: &'a str,
    /// `YYYY/MM/DD`.
    pub date: &'a str,
    pub uuid: Uuid,
    pub name: &'a str,
}

impl KeyTemplate {
    /// Parses and checks a template: `{uuid}` and `{name}` exactly once, only known
    /// placeholders, `{prefix}`, `{folder}` and `{date}` each a whole segment (they may be
    /// empty or span levels), no `.` / `..` segment, no control characters or backslashes.
    pub fn parse(source: &str) -> Result<Self, String> {
        let mut segments = Vec::new();
        for raw in source.split('/').filter(|segment| !segment.is_empty()) {
            segments.push(parse_segment(raw)?);
        }
        let count = |wanted: &Piece| {
            segments
                .iter()
                .map(|segment| match segment {
                    Segment::Inline(pieces) => pieces.iter().filter(|piece| *piece == wanted).count(),
                    _ => 0,
                })
                .sum::<usize>()
        };
        if count(&Piece::Uuid) != 1 || count(&Piece::Name) != 1 {
            return Err("it must contain {uuid} and {name} exactly once each".to_owned());
        }
        for whole in [Segment::Prefix, Segment::Folder, Segment::Date] {
            if segments.iter().filter(|segment| **segment == whole).count() > 1 {
                return Err("{prefix}, {folder} and {date} may appear once each".to_owned());
            }
        }
        Ok(Self { source: source.to_owned(), segments })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The longest key this template can render with `prefix`, in bytes.
    pub fn max_key_bytes(&self, prefix: &str) -> usize {
        let segment_bytes = |segment: &Segment| match segment {
            Segment::Prefix => prefix.len(),
            Segment::Folder => MAX_FOLDER_LEVELS * (MAX_FOLDER_LEVEL_BYTES + 1) - 1,
            Segment::Date => "2026/12/05".len(),
            Segment::Inline(pieces) => pieces
                .iter()
                .map(|piece| match piece {
                    Piece::Literal(text) => text.len(),
                    Piece::User => MAX_USER_BYTES,
                    Piece::Uuid => 36,
                    Piece::Name => MAX_FILE_NAME_BYTES,
                })
                .sum(),
        };
        let separators = self.segments.len().saturating_sub(1);
        self.segments.iter().map(segment_bytes).sum::<usize>() + separators
    }

    /// The key for `values`. `prefix` must be normalised (config) and `folder` sanitised
    /// ([`super::sanitise_folder`]); the user and the name are cleaned here.
    pub fn render(&self, values: &KeyValues<'_>) -> String {
        let user = sanitise_user(values.user);
        let name = sanitise_file_name(values.name);
        let uuid = values.uuid.hyphenated().to_string();
        let mut levels: Vec<String> = Vec::new();
        for segment in &self.segments {
            match segment {
                Segment::Prefix => levels.extend(values.prefix.split('/').map(str::to_owned)),
                Segment::Folder => levels.extend(values.folder.split('/').map(str::to_owned)),
                Segment::Date => levels.extend(values.date.split('/').map(str::to_owned)),
                Segment::Inline(pieces) => levels.push(
                    pieces
                        .iter()
                        .map(|piece| match piece {
                            Piece::Literal(text) => text.as_str(),
                            Piece::User => user.as_str(),
                            Piece::Uuid => uuid.as_str(),
                            Piece::Name => name.as_str(),
                        })
                        .collect(),
                ),
            }
        }
        levels.retain(|level| !level.is_empty());
        levels.join("/")
    }

    /// Where `key`'s UUID starts, if the template could have rendered `key` with `prefix`.
    pub fn match_key(&self, prefix: &str, key: &str) -> Option<KeyMatch> {
        let levels: Vec<&str> = key.split('/').collect();
        if key.len() > MAX_KEY_BYTES || levels.iter().any(|level| level.is_empty()) {
            return None;
        }
        let prefix_levels: Vec<&str> = prefix.split('/').filter(|l| !l.is_empty()).collect();
        let mut offsets = Vec::with_capacity(levels.len());
        let mut at = 0;
        for level in &levels {
            offsets.push(at);
            at += level.len() + 1;
        }
        let uuid_at = match_segments(&self.segments, &prefix_levels, &levels)?;
        let (level, within) = uuid_at;
        Some(KeyMatch { uuid_start: offsets[level] + within, uuid_before_name: self.uuid_before_name() })
    }

    /// Whether `{uuid}` comes before `{name}`: then keys rendered together (same prefix, user,
    /// date and folder) sort together by time, and a batch of them can be checked by listing.
    fn uuid_before_name(&self) -> bool {
        for segment in &self.segments {
            if let Segment::Inline(pieces) = segment {
                for piece in pieces {
                    match piece {
                        Piece::Uuid => return true,
                        Piece::Name => return false,
                        _ => {}
                    }
                }
            }
        }
        false
    }
}

/// What [`KeyTemplate::match_key`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyMatch {
    pub uuid_start: usize,
    pub uuid_before_name: bool,
}

/// A principal's name made safe for one key segment: `/`, `\`, control and bidi characters
/// removed, surrounding whitespace trimmed, at most [`MAX_USER_BYTES`]; `.`, `..` and an empty
/// result become `user`. `alice@example.com` stays as it is.
pub fn sanitise_user(raw: &str) -> String {
    let cleaned: String = raw.chars().filter(|c| *c != '/' && *c != '\\' && !super::is_invisible(*c)).collect();
    let cut = super::cut_on_char_boundary(cleaned.trim(), MAX_USER_BYTES).trim();
    if cut.is_empty() || cut == "." || cut == ".." {
        FALLBACK_USER.to_owned()
    } else {
        cut.to_owned()
    }
}

fn parse_segment(raw: &str) -> Result<Segment, String> {
    if raw == "." || raw == ".." {
        return Err(format!("the segment {raw:?} would climb out of the bucket's folders"));
    }
    if raw.chars().any(|c| c.is_control() || c == '\\') {
        return Err("it must not contain control characters or backslashes".to_owned());
    }
    match raw {
        "{prefix}" => return Ok(Segment::Prefix),
        "{folder}" => return Ok(Segment::Folder),
        "{date}" => return Ok(Segment::Date),
        _ => {}
    }
    let mut pieces = Vec::new();
    let mut rest = raw;
    while !rest.is_empty() {
        match rest.find(['{', '}']) {
            Some(0) if rest.starts_with('{') => {
                let end = rest.find('}').ok_or_else(|| format!("an unclosed `{{` in {raw:?}"))?;
                let piece = match &rest[1..end] {
                    "user" => Piece::User,
                    "uuid" => Piece::Uuid,
                    "name" => Piece::Name,
                    "prefix" | "folder" | "date" => {
                        return Err(format!("{} must be a whole segment (between slashes)", &rest[..=end]))
                    }
                    other => {
                        return Err(format!(
                            "unknown placeholder {{{other}}}; known are {{prefix}}, {{user}}, {{date}}, {{uuid}}, {{name}} and {{folder}}"
                        ))
                    }
                };
                pieces.push(piece);
                rest = &rest[end + 1..];
            }
            Some(0) => return Err(format!("a stray `}}` in {raw:?}")),
            Some(at) => {
                pieces.push(Piece::Literal(rest[..at].to_owned()));
                rest = &rest[at..];
            }
            None => {
                pieces.push(Piece::Literal(rest.to_owned()));
                rest = "";
            }
        }
    }
    Ok(Segment::Inline(pieces))
}

/// Matches key levels against template segments; returns (level, byte within level) of the UUID.
fn match_segments(segments: &[Segment], prefix: &[&str], levels: &[&str]) -> Option<(usize, usize)> {
    fn go(segments: &[Segment], prefix: &[&str], levels: &[&str], done: usize) -> Option<Option<(usize, usize)>> {
        let Some((segment, rest)) = segments.split_first() else {
            return levels.is_empty().then_some(None);
        };
        match segment {
            Segment::Prefix => {
                let n = prefix.len();
                (levels.len() >= n && levels[..n] == *prefix).then_some(())?;
                go(rest, prefix, &levels[n..], done + n)
            }
            Segment::Date => {
                let digits = |level: &str, n: usize| level.len() == n && level.bytes().all(|b| b.is_ascii_digit());
                (levels.len() >= 3 && digits(levels[0], 4) && digits(levels[1], 2) && digits(levels[2], 2))
                    .then_some(())?;
                go(rest, prefix, &levels[3..], done + 3)
            }
            Segment::Folder => (0..=MAX_FOLDER_LEVELS.min(levels.len())).find_map(|n| {
                if !levels[..n].iter().all(|level| is_sanitised_level(level)) {
                    return None;
                }
                go(rest, prefix, &levels[n..], done + n)
            }),
            Segment::Inline(pieces) => {
                let level = levels.first()?;
                let uuid = match_pieces(pieces, level, 0)?;
                let found = go(rest, prefix, &levels[1..], done + 1)?;
                Some(uuid.map(|within| (done, within)).or(found))
            }
        }
    }
    go(segments, prefix, levels, 0).flatten()
}

/// Matches one key level against a segment's pieces; `Some(Some(offset))` when it holds the UUID.
fn match_pieces(pieces: &[Piece], text: &str, at: usize) -> Option<Option<usize>> {
    let Some((piece, rest)) = pieces.split_first() else {
        return (at == text.len()).then_some(None);
    };
    let remaining = &text[at..];
    match piece {
        Piece::Literal(literal) => {
            remaining.starts_with(literal.as_str()).then_some(())?;
            match_pieces(rest, text, at + literal.len())
        }
        Piece::Uuid => {
            let candidate = remaining.get(..36)?;
            let is_uuid = Uuid::parse_str(candidate).is_ok_and(|u| u.hyphenated().to_string() == candidate);
            is_uuid.then_some(())?;
            match_pieces(rest, text, at + 36).map(|_| Some(at))
        }
        Piece::User | Piece::Name => {
            // Try every end on a character boundary, longest first (names usually end the level).
            let ends: Vec<usize> = remaining.char_indices().map(|(i, c)| i + c.len_utf8()).collect();
            ends.into_iter().rev().find_map(|end| {
                let value = &remaining[..end];
                let clean = match piece {
                    Piece::User => sanitise_user(value) == value,
                    _ => sanitise_file_name(value) == value,
                };
                if !clean {
                    return None;
                }
                match_pieces(rest, text, at + end)
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values<'a>(folder: &'a str, user: &'a str, name: &'a str) -> KeyValues<'a> {
        KeyValues {
            prefix: "uploads",
            folder,
            user,
            date: "2026/12/05",
            uuid: Uuid::parse_str("019ad1a4-5c3e-7d41-a021-5debfe9ee95e").unwrap(),
            name,
        }
    }

    #[test]
    fn the_default_template_renders_todays_keys_byte_for_byte() {
        let template = KeyTemplate::parse(DEFAULT_KEY_TEMPLATE).unwrap();
        assert_eq!(
            template.render(&values("", "alice", "a.txt")),
            "uploads/019ad1a4-5c3e-7d41-a021-5debfe9ee95e/a.txt",
            "no folder: prefix, uuid, name"
        );
        assert_eq!(
            template.render(&values("scans/2026", "alice", "a.txt")),
            "uploads/scans/2026/019ad1a4-5c3e-7d41-a021-5debfe9ee95e/a.txt",
            "the folder sits after the prefix"
        );
        let empty_prefix = KeyValues { prefix: "", ..values("", "alice", "a.txt") };
        assert_eq!(
            template.render(&empty_prefix),
            "019ad1a4-5c3e-7d41-a021-5debfe9ee95e/a.txt",
            "an empty prefix leaves no leading slash"
        );
    }

    #[test]
    fn a_user_and_date_template_renders_readable_keys() {
        let template = KeyTemplate::parse("{prefix}/{user}/{date}/{uuid}/{name}").unwrap();
        let key = template.render(&values("", "alice@example.com", "résumé.pdf"));
        assert_eq!(key, "uploads/alice@example.com/2026/12/05/019ad1a4-5c3e-7d41-a021-5debfe9ee95e/résumé.pdf");
        assert!(template.match_key("uploads", &key).is_some(), "the template recognises its own key");
    }

    #[test]
    fn a_flat_template_puts_uuid_and_name_in_one_segment() {
        let template = KeyTemplate::parse("{prefix}/{uuid}-{name}").unwrap();
        let key = template.render(&values("", "alice", "a b.txt"));
        assert_eq!(key, "uploads/019ad1a4-5c3e-7d41-a021-5debfe9ee95e-a b.txt");
        let found = template.match_key("uploads", &key).expect("recognised");
        assert_eq!(found.uuid_start, "uploads/".len(), "the uuid starts after the prefix");
        assert!(found.uuid_before_name, "so a batch can be listed");
    }

    #[test]
    fn a_user_loses_slashes_backslashes_and_control_characters_but_stays_readable() {
        assert_eq!(sanitise_user("alice@example.com"), "alice@example.com");
        assert_eq!(sanitise_user("../../etc"), "....etc", "no separator survives, so no climbing");
        assert_eq!(sanitise_user("a\\b\n\u{202E}c"), "abc");
        assert_eq!(sanitise_user(".."), "user", "a dot segment becomes the fallback");
        assert_eq!(sanitise_user(""), "user");
        assert!(sanitise_user(&"x".repeat(500)).len() <= MAX_USER_BYTES, "capped");
    }

    #[test]
    fn hostile_values_never_make_a_dot_segment_an_empty_segment_or_an_overlong_key() {
        let templates = [
            DEFAULT_KEY_TEMPLATE,
            "{prefix}/{user}/{date}/{uuid}/{name}",
            "{prefix}/{uuid}-{name}",
            "{prefix}/{folder}/{user}-{uuid}/{name}",
            "/{prefix}//{name}/{uuid}/",
        ];
        let hostile = ["..", ".", "", "/", "a/../b", "\\..\\", "\u{0}", "  ..  ", &"é".repeat(600)];
        for source in templates {
            let template = KeyTemplate::parse(source).unwrap();
            for user in hostile {
                for name in hostile {
                    for folder in ["", "a", "a/b/c/d"] {
                        let key = template.render(&values(folder, user, name));
                        let levels: Vec<&str> = key.split('/').collect();
                        assert!(
                            levels.iter().all(|l| !l.is_empty() && *l != "." && *l != ".."),
                            "{source} with {user:?}/{name:?} gave {key:?}"
                        );
                        assert!(key.len() <= template.max_key_bytes("uploads"), "within the bound: {key:?}");
                        assert!(template.match_key("uploads", &key).is_some(), "{source} recognises {key:?}");
                        let again = template.render(&KeyValues {
                            user: &sanitise_user(user),
                            name: &sanitise_file_name(name),
                            ..values(folder, user, name)
                        });
                        assert_eq!(again, key, "rendering cleaned values again changes nothing (idempotent)");
                    }
                }
            }
        }
    }

    #[test]
    fn templates_without_uuid_or_name_or_with_unknown_placeholders_are_refused() {
        for bad in [
            "{prefix}/{name}",
            "{prefix}/{uuid}",
            "{prefix}/{uuid}/{name}/{uuid}",
            "{prefix}/{tenant}/{uuid}/{name}",
            "{prefix}/{uuid/{name}",
            "{prefix}/}{uuid}/{name}",
            "{prefix}/../{uuid}/{name}",
            "x{prefix}/{uuid}/{name}",
            "{prefix}/{date}-x/{uuid}/{name}",
            "{prefix}/a\\b/{uuid}/{name}",
        ] {
            assert!(KeyTemplate::parse(bad).is_err(), "{bad:?} is refused");
        }
    }

    #[test]
    fn keys_of_another_shape_are_not_recognised() {
        let template = KeyTemplate::parse("{prefix}/{user}/{date}/{uuid}/{name}").unwrap();
        let id = "019ad1a4-5c3e-7d41-a021-5debfe9ee95e";
        for key in [
            format!("uploads/alice/2026/12/5/{id}/a.txt"),
            format!("uploads/alice/{id}/a.txt"),
            format!("other/alice/2026/12/05/{id}/a.txt"),
            format!("uploads/alice/2026/12/05/{}/a.txt", id.to_uppercase()),
            format!("uploads/alice/2026/12/05/{id}/a/b.txt"),
            format!("uploads//2026/12/05/{id}/a.txt"),
        ] {
            assert!(template.match_key("uploads", &key).is_none(), "{key} is foreign");
        }
    }

    #[test]
    fn a_template_whose_keys_could_pass_1024_bytes_is_measured() {
        let template = KeyTemplate::parse(DEFAULT_KEY_TEMPLATE).unwrap();
        assert!(template.max_key_bytes("uploads") <= MAX_KEY_BYTES, "the default fits S3's limit");
        let long = "x".repeat(900);
        assert!(template.max_key_bytes(&long) > MAX_KEY_BYTES, "a 900-byte prefix does not");
    }
}
