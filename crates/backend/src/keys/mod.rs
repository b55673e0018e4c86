//! The object-key scheme: by default `<prefix>/[<folder>/]<server uuid v7>/<sanitised file
//! name>`, or whatever `--key-template` the organisation sets (`template`), where the optional
//! folder (at most four levels, each sanitised like a file name) is one a client asked for,
//! e.g. a watched folder's `scans/2026`. The UUID starts with the time it was made, so the keys
//! of one presign request sit next to each other in a listing (when the template puts the UUID
//! before the name): a batch of reports is checked with one ListObjectsV2 instead of a HEAD per
//! object. The server chooses every key, so a client's file name can never pick the path, climb
//! out of the prefix or collide with another upload; the name is kept only to stay readable.

mod template;

use uuid::Uuid;

pub use template::{KeyTemplate, KeyValues, DEFAULT_KEY_TEMPLATE, MAX_KEY_BYTES};

/// Upper bound on the file-name part of a key, in bytes. S3 allows 1,024 bytes for the whole
/// key; this leaves room for the prefix and the UUID while keeping names readable.
pub const MAX_FILE_NAME_BYTES: usize = 200;

/// An extension longer than this is treated as part of the name when shortening.
const MAX_KEPT_EXTENSION_BYTES: usize = 20;

/// Folder levels a client may ask for under the prefix, and bytes per level.
pub const MAX_FOLDER_LEVELS: usize = 4;
pub const MAX_FOLDER_LEVEL_BYTES: usize = 64;

/// Used when nothing usable is left of the client's name.
const FALLBACK_FILE_NAME: &str = "file";

/// Longest file name kept in a record, in bytes (after cleaning); longer names are cut on a
/// character boundary rather than refused: the name is only for people to read, no file
/// system produces one this long, and refusing it would fail the whole batch it came in.
pub const MAX_RECORDED_NAME_BYTES: usize = 1024;

/// Characters that are removed from names before they are stored or put in a key: controls
/// (C0, DEL, C1), and the invisible format characters that make a name read differently from
/// what is stored: zero-width space/joiners and direction marks (U+200B-U+200F), the word
/// joiner (U+2060), the byte-order mark (U+FEFF), the Arabic letter mark (U+061C, a bidi
/// control like the direction marks), bidi embeddings and overrides (U+202A-U+202E;
/// `invoice\u{202E}fdp.exe` shows as `invoiceexe.pdf`), bidi isolates (U+2066-U+2069) and tag
/// characters (U+E0000-U+E007F).
pub fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2060}'
                | '\u{FEFF}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{E0000}'..='\u{E007F}'
        )
}

/// A client's file name as a record keeps it: invisible characters ([`is_invisible`]) removed,
/// surrounding whitespace trimmed, cut to [`MAX_RECORDED_NAME_BYTES`].
pub fn clean_file_name(raw: &str) -> String {
    let cleaned: String = raw.chars().filter(|c| !is_invisible(*c)).collect();
    cut_on_char_boundary(cleaned.trim(), MAX_RECORDED_NAME_BYTES).trim_end().to_owned()
}

/// Turns whatever name a client sends into a safe last segment of a key.
///
/// Keeps only the final path component (both `/` and `\` separate), drops control and
/// invisible format characters ([`is_invisible`]), trims surrounding whitespace, refuses `.` and `..`, caps the
/// length at [`MAX_FILE_NAME_BYTES`] on a character boundary keeping the extension, and falls
/// back to `file` when nothing is left. Other Unicode and inner spaces are kept as they are.
pub fn sanitise_file_name(raw: &str) -> String {
    let last_component = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last_component.chars().filter(|c| !is_invisible(*c)).collect();
    let shortened = shorten_keeping_extension(cleaned.trim(), MAX_FILE_NAME_BYTES);
    let shortened = shortened.trim();
    if shortened.is_empty() || shortened == "." || shortened == ".." {
        FALLBACK_FILE_NAME.to_owned()
    } else {
        shortened.to_owned()
    }
}

/// A folder a client asked for (`scans/2026`), made safe: levels split on `/` or `\`, empty,
/// `.` and `..` levels dropped, each level cleaned like a file name and capped. Errs (with a
/// sentence for the client) when more than [`MAX_FOLDER_LEVELS`] levels remain.
pub fn sanitise_folder(raw: &str) -> Result<String, String> {
    let levels: Vec<String> = raw
        .split(['/', '\\'])
        .map(str::trim)
        .filter(|level| !level.is_empty() && *level != "." && *level != "..")
        .map(|level| cut_on_char_boundary(&sanitise_file_name(level), MAX_FOLDER_LEVEL_BYTES).trim().to_owned())
        .collect();
    if levels.len() > MAX_FOLDER_LEVELS {
        return Err(format!(
            "`key_prefix` has {} levels; at most {MAX_FOLDER_LEVELS} are allowed (e.g. \"scans/2026\").",
            levels.len()
        ));
    }
    Ok(levels.join("/"))
}

fn is_sanitised_level(level: &str) -> bool {
    sanitise_folder(level).is_ok_and(|clean| clean == level)
}

fn shorten_keeping_extension(name: &str, max_bytes: usize) -> String {
    if name.len() <= max_bytes {
        return name.to_owned();
    }
    let extension = match name.rfind('.') {
        // A leading dot starts a hidden name, not an extension.
        Some(dot) if dot > 0 && name.len() - dot <= MAX_KEPT_EXTENSION_BYTES => &name[dot..],
        _ => "",
    };
    let stem = &name[..name.len() - extension.len()];
    format!("{}{}", cut_on_char_boundary(stem, max_bytes - extension.len()), extension)
}

fn cut_on_char_boundary(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Builds keys for one configured prefix and template, and recognises the keys it could have built.
#[derive(Debug, Clone)]
pub struct KeyScheme {
    prefix: String,
    template: KeyTemplate,
}

impl KeyScheme {
    /// `prefix` must already be normalised (see `config`): no surrounding slashes, may be empty.
    pub fn new(prefix: impl Into<String>, template: KeyTemplate) -> Self {
        Self { prefix: prefix.into(), template }
    }

    /// The scheme of releases before templates: [`DEFAULT_KEY_TEMPLATE`].
    #[cfg(test)]
    pub fn with_default_template(prefix: impl Into<String>) -> Self {
        let template = KeyTemplate::parse(DEFAULT_KEY_TEMPLATE).expect("the default template parses");
        Self::new(prefix, template)
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn template(&self) -> &str {
        self.template.source()
    }

    /// A fresh key for `user`'s file in `folder` (already sanitised by [`sanitise_folder`];
    /// empty for none).
    pub fn new_key_in(&self, folder: &str, client_file_name: &str, user: &str) -> String {
        let now = time::OffsetDateTime::now_utc();
        let millis = u64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        // 74 random bits after the millisecond timestamp (RFC 9562 v7): unguessable and unique.
        let random = Uuid::new_v4().into_bytes();
        let mut tail = [0u8; 10];
        tail.copy_from_slice(&random[6..]);
        let date = format!("{:04}/{:02}/{:02}", now.year(), u8::from(now.month()), now.day());
        self.template.render(&KeyValues {
            prefix: &self.prefix,
            folder,
            user,
            date: &date,
            uuid: uuid::Builder::from_unix_timestamp_millis(millis, &tail).into_uuid(),
            name: client_file_name,
        })
    }

    /// Whether `key` has exactly the shape this backend hands out, so a report can only ever
    /// record objects inside the prefix that the backend itself named.
    pub fn is_issued_shape(&self, key: &str) -> bool {
        self.template.match_key(&self.prefix, key).is_some()
    }

    /// The part of `key` before its UUID, when keys issued together share it and sort by time
    /// after it (the template puts `{uuid}` before `{name}`): the keys of one batch with the
    /// same listing prefix are then checked with one listing. `None` when no such prefix holds,
    /// and the batch falls back to a HEAD per object.
    pub fn listing_prefix<'k>(&self, key: &'k str) -> Option<&'k str> {
        let found = self.template.match_key(&self.prefix, key)?;
        found.uuid_before_name.then(|| &key[..found.uuid_start])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_directory_climbs_are_cut_to_the_last_component() {
        assert_eq!(sanitise_file_name("../../etc/passwd"), "passwd");
    }

    #[test]
    fn forward_and_back_slashes_both_separate_components() {
        assert_eq!(sanitise_file_name("a/b/c.txt"), "c.txt");
        assert_eq!(sanitise_file_name("C:\\Users\\me\\report.docx"), "report.docx");
        assert_eq!(sanitise_file_name("a\\b/c\\d.bin"), "d.bin");
    }

    #[test]
    fn dot_segments_and_empty_names_become_file() {
        for raw in ["", ".", "..", "a/..", "a/.", "dir/", "\\", "   ", "\0\0", "\u{202E}"] {
            assert_eq!(sanitise_file_name(raw), "file", "{raw:?} falls back to `file`");
        }
    }

    #[test]
    fn nul_and_control_characters_are_removed() {
        assert_eq!(sanitise_file_name("ev\0il.txt"), "evil.txt");
        assert_eq!(sanitise_file_name("line\nbreak\r\t.txt"), "linebreak.txt");
        assert_eq!(sanitise_file_name("del\u{7f}\u{85}.txt"), "del.txt", "DEL and C1 controls go too");
    }

    #[test]
    fn bidi_overrides_are_removed_so_the_name_reads_as_stored() {
        assert_eq!(sanitise_file_name("invoice\u{202E}fdp.exe"), "invoicefdp.exe");
    }

    #[test]
    fn invisible_format_characters_are_removed_from_keys_and_records() {
        let hidden = "a\u{200B}b\u{200D}c\u{2060}d\u{FEFF}e\u{2067}f\u{E0041}g\u{E007F}.txt";
        assert_eq!(sanitise_file_name(hidden), "abcdefg.txt", "none of them reaches a key");
        assert_eq!(clean_file_name(hidden), "abcdefg.txt", "none of them reaches a record");
        assert_eq!(clean_file_name("dir/in\u{202E}voice.pdf"), "dir/invoice.pdf", "a record keeps the path as sent");
        assert_eq!(clean_file_name("caf\u{e9} \u{1F600}.txt"), "caf\u{e9} \u{1F600}.txt", "visible Unicode stays");
    }

    /// Found by the property tests below: the one bidi control outside the U+2xxx blocks.
    #[test]
    fn the_arabic_letter_mark_is_removed_like_the_other_direction_marks() {
        assert_eq!(sanitise_file_name("report\u{061C}.pdf"), "report.pdf");
        assert_eq!(clean_file_name("\u{061C}report.pdf"), "report.pdf");
    }

    #[test]
    fn a_hundred_thousand_character_name_is_cut_to_1024_bytes_not_refused() {
        let long = "\u{e9}".repeat(100_000);
        let recorded = clean_file_name(&long);
        assert!(recorded.len() <= MAX_RECORDED_NAME_BYTES, "recorded within the cap: {}", recorded.len());
        assert_eq!(recorded.len(), 1024, "cut on a character boundary, as close to the cap as it goes");
        assert!(sanitise_file_name(&long).len() <= MAX_FILE_NAME_BYTES, "the key's name is shorter still");
    }

    #[test]
    fn unicode_and_inner_spaces_are_kept_as_is() {
        assert_eq!(sanitise_file_name("résumé final (2).pdf"), "résumé final (2).pdf");
        assert_eq!(sanitise_file_name("日本語 ファイル.txt"), "日本語 ファイル.txt");
        assert_eq!(sanitise_file_name("  padded name.txt  "), "padded name.txt", "outer spaces are trimmed");
    }

    #[test]
    fn names_that_are_only_dots_beyond_two_are_ordinary_names() {
        assert_eq!(sanitise_file_name("..."), "...");
        assert_eq!(sanitise_file_name(".bashrc"), ".bashrc");
    }

    #[test]
    fn a_thousand_character_name_is_capped_and_keeps_its_extension() {
        let long = format!("{}.pdf", "a".repeat(1000));
        let name = sanitise_file_name(&long);
        assert_eq!(name.len(), MAX_FILE_NAME_BYTES, "capped at the limit");
        assert!(name.ends_with("aaa.pdf"), "the extension survives: {name}");
    }

    #[test]
    fn capping_never_splits_a_multibyte_character() {
        let long = format!("{}.txt", "é".repeat(500));
        let name = sanitise_file_name(&long);
        assert!(name.len() <= MAX_FILE_NAME_BYTES, "within the limit");
        assert!(name.ends_with(".txt"), "extension kept");
        assert!(name.trim_end_matches(".txt").chars().all(|c| c == 'é'), "only whole characters remain");
    }

    #[test]
    fn a_very_long_extension_is_not_kept_whole() {
        let long = format!("name.{}", "x".repeat(300));
        let name = sanitise_file_name(&long);
        assert_eq!(name.len(), MAX_FILE_NAME_BYTES);
        assert!(name.starts_with("name."), "the name is cut from the end instead");
    }

    #[test]
    fn a_requested_folder_is_cleaned_level_by_level_and_capped_in_depth() {
        assert_eq!(sanitise_folder(" scans / 2026/ ").unwrap(), "scans/2026");
        assert_eq!(sanitise_folder("../../etc/./passwd").unwrap(), "etc/passwd", "no climbing out");
        assert_eq!(sanitise_folder("a\\b").unwrap(), "a/b");
        assert_eq!(sanitise_folder("").unwrap(), "");
        assert!(sanitise_folder("a/b/c/d/e").is_err(), "five levels are too many");
    }

    #[test]
    fn keys_in_a_folder_are_issued_shapes_and_tampered_folders_are_not() {
        let scheme = KeyScheme::with_default_template("uploads");
        let key = scheme.new_key_in("scans/2026", "a.pdf", "alice");
        assert!(key.starts_with("uploads/scans/2026/"), "{key}");
        assert!(scheme.is_issued_shape(&key));
        assert!(scheme.is_issued_shape(&scheme.new_key_in("", "a.pdf", "alice")), "no folder is still fine");
        let climbing = key.replace("scans/2026", "scans/..");
        assert!(!scheme.is_issued_shape(&climbing), "{climbing}");
        let deep = key.replace("scans/2026", "a/b/c/d/e");
        assert!(!scheme.is_issued_shape(&deep), "{deep}");
    }

    #[test]
    fn new_keys_are_prefix_uuid_and_name() {
        let scheme = KeyScheme::with_default_template("uploads");
        let key = scheme.new_key_in("", "../x/résumé.pdf", "alice");
        let parts: Vec<&str> = key.split('/').collect();
        assert_eq!(parts.len(), 3, "three segments: {key}");
        assert_eq!(parts[0], "uploads");
        assert_eq!(Uuid::parse_str(parts[1]).map(|u| u.get_version_num()).ok(), Some(7), "a v7 UUID");
        assert_eq!(parts[2], "résumé.pdf");
        assert!(scheme.is_issued_shape(&key), "the scheme recognises its own keys");
    }

    #[test]
    fn a_later_key_sorts_after_an_earlier_one_so_a_batch_lists_together() {
        let scheme = KeyScheme::with_default_template("uploads");
        let earlier = scheme.new_key_in("", "z.txt", "alice");
        std::thread::sleep(std::time::Duration::from_millis(2));
        let later = scheme.new_key_in("", "a.txt", "alice");
        assert!(earlier < later, "{earlier} then {later}");
    }

    #[test]
    fn two_keys_for_the_same_name_differ() {
        let scheme = KeyScheme::with_default_template("uploads");
        assert_ne!(
            scheme.new_key_in("", "a.txt", "alice"),
            scheme.new_key_in("", "a.txt", "alice"),
            "the UUID keeps them apart"
        );
    }

    #[test]
    fn an_empty_prefix_starts_keys_with_the_uuid() {
        let scheme = KeyScheme::with_default_template("");
        let key = scheme.new_key_in("", "a.txt", "alice");
        assert!(!key.starts_with('/'), "no leading slash: {key}");
        assert!(scheme.is_issued_shape(&key));
    }

    #[test]
    fn keys_outside_the_issued_shape_are_recognised_as_foreign() {
        let scheme = KeyScheme::with_default_template("uploads");
        let id = "0b6b6b0e-5f2c-4c1e-9a55-2a8f3f5b9c11";
        assert!(scheme.is_issued_shape(&format!("uploads/{id}/a.txt")));
        for key in [
            format!("other/{id}/a.txt"),
            format!("uploadsx/{id}/a.txt"),
            format!("/uploads/{id}/a.txt"),
            "uploads/not-a-uuid/a.txt".to_owned(),
            format!("uploads/{id}/"),
            format!("uploads/{id}/.."),
            format!("uploads/{id}/a/b.txt"),
            format!("uploads/{}/a.txt", id.to_uppercase()),
            format!("uploads/{id}/ a.txt"),
            "uploads".to_owned(),
        ] {
            assert!(!scheme.is_issued_shape(&key), "{key:?} is not a key this backend issues");
        }
    }

    /// Names as clients send them: any character, with the ones the sanitisers care about
    /// (separators, dots, spaces, controls, invisible format characters) made common.
    fn hostile_text(max_chars: usize) -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let interesting = prop_oneof![
            Just('/'),
            Just('\\'),
            Just('.'),
            Just(' '),
            Just('\u{3000}'),
            Just('\0'),
            Just('\n'),
            Just('\u{85}'),
            Just('\u{200B}'),
            Just('\u{202E}'),
            Just('\u{2067}'),
            Just('\u{061C}'),
            Just('\u{FEFF}'),
            Just('\u{E0041}'),
            Just('\u{e9}'),
            Just('\u{1F600}'),
            Just('a'),
        ];
        proptest::collection::vec(prop_oneof![any::<char>(), interesting], 0..max_chars)
            .prop_map(|chars| chars.into_iter().collect())
    }

    /// What may never reach a record or a key, written out from the issue and Unicode's
    /// Bidi_Control list rather than taken from [`is_invisible`], so that the properties below
    /// check the code against the rule and not against itself.
    fn must_not_be_stored(c: char) -> bool {
        c.is_control()
            || matches!(c, '\u{200B}'..='\u{200F}' | '\u{2060}' | '\u{FEFF}' | '\u{E0000}'..='\u{E007F}')
            || matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    }

    fn assert_visible_and_trimmed(text: &str) -> Result<(), proptest::test_runner::TestCaseError> {
        proptest::prop_assert!(!text.chars().any(must_not_be_stored), "no control or format character in {text:?}");
        proptest::prop_assert_eq!(text.trim(), text, "no surrounding whitespace");
        Ok(())
    }

    proptest::proptest! {
        #[test]
        fn a_sanitised_file_name_is_one_safe_bounded_segment_and_stays_put(raw in hostile_text(400)) {
            let name = sanitise_file_name(&raw);
            proptest::prop_assert!(!name.is_empty() && name.len() <= MAX_FILE_NAME_BYTES, "{} bytes", name.len());
            proptest::prop_assert!(name != "." && name != "..", "never a dot segment");
            proptest::prop_assert!(!name.contains(['/', '\\']), "one segment: {name:?}");
            assert_visible_and_trimmed(&name)?;
            proptest::prop_assert_eq!(sanitise_file_name(&name), name.clone(), "idempotent");
        }

        #[test]
        fn a_recorded_file_name_is_bounded_visible_and_stays_put(raw in hostile_text(1_500)) {
            let recorded = clean_file_name(&raw);
            proptest::prop_assert!(recorded.len() <= MAX_RECORDED_NAME_BYTES, "{} bytes", recorded.len());
            assert_visible_and_trimmed(&recorded)?;
            proptest::prop_assert_eq!(clean_file_name(&recorded), recorded.clone(), "idempotent");
        }

        #[test]
        fn a_sanitised_folder_has_only_bounded_safe_levels_and_stays_put(raw in hostile_text(200)) {
            if let Ok(folder) = sanitise_folder(&raw) {
                let levels: Vec<&str> = folder.split('/').filter(|level| !level.is_empty()).collect();
                proptest::prop_assert!(levels.len() <= MAX_FOLDER_LEVELS);
                proptest::prop_assert_eq!(levels.join("/"), folder.clone(), "no empty level");
                for level in levels {
                    proptest::prop_assert!(level.len() <= MAX_FOLDER_LEVEL_BYTES, "{level:?}");
                    proptest::prop_assert!(level != "." && level != ".." && !level.contains('\\'), "{level:?}");
                    assert_visible_and_trimmed(level)?;
                }
                proptest::prop_assert_eq!(sanitise_folder(&folder), Ok(folder.clone()), "idempotent");
            }
        }

        #[test]
        fn every_key_rendered_from_hostile_values_is_bounded_and_recognised_as_issued(
            template in proptest::sample::select(vec![
                DEFAULT_KEY_TEMPLATE,
                "{prefix}/{user}/{date}/{uuid}/{name}",
                "{prefix}/{uuid}-{name}",
                "{name}/{folder}/{uuid}",
                "in/{user}-{uuid}/{prefix}/{name}.bin",
            ]),
            prefix in proptest::sample::select(vec!["", "uploads", "org/uploads"]),
            folder in hostile_text(120),
            user in hostile_text(120),
            name in hostile_text(400),
        ) {
            let scheme = KeyScheme::new(prefix, KeyTemplate::parse(template).unwrap());
            let folder = sanitise_folder(&folder).unwrap_or_default();
            let key = scheme.new_key_in(&folder, &name, &user);
            proptest::prop_assert!(key.len() <= scheme.template.max_key_bytes(prefix).min(MAX_KEY_BYTES), "{} bytes: {key:?}", key.len());
            for level in key.split('/') {
                proptest::prop_assert!(!level.is_empty() && level != "." && level != "..", "{level:?} in {key:?}");
                proptest::prop_assert!(!level.chars().any(must_not_be_stored), "{level:?}");
            }
            proptest::prop_assert!(scheme.is_issued_shape(&key), "a key this backend made is one it issued: {key:?}");
        }
    }
}
