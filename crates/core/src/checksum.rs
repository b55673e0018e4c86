//! Whole-file SHA-256, read in fixed-size chunks so memory stays flat whatever the file size.
//! The digest is signed into the upload URL, so S3 itself rejects bytes that do not match.

use std::io::Read;
use std::path::Path;

use base64::Engine as _;
use sha2::{Digest, Sha256};

const READ_CHUNK: usize = 1 << 20;

/// The file's SHA-256, base64-encoded as S3's `x-amz-checksum-sha256` header wants it, and the
/// number of bytes read (which may differ from an earlier `stat` if the file is being written).
pub fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    sha256_of(std::fs::File::open(path)?)
}

/// Hashes everything `reader` yields, in fixed-size chunks: (base64 digest, bytes read).
fn sha256_of(mut reader: impl Read) -> std::io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((base64::engine::general_purpose::STANDARD.encode(hasher.finalize()), total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_of_an_empty_file_is_the_well_known_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty");
        std::fs::write(&path, b"").unwrap();
        let (digest, len) = sha256_file(&path).unwrap();
        assert_eq!(digest, "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
        assert_eq!(len, 0);
    }
}

/// The base64 SHA-256 of `len` bytes at `offset`: one part of a multipart upload. Fails with
/// `UnexpectedEof` when the file no longer holds those bytes.
pub fn sha256_range(path: &Path, offset: u64, len: u64) -> std::io::Result<String> {
    use std::io::{Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    match sha256_of(file.take(len))? {
        (digest, read) if read == len => Ok(digest),
        _ => Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the file is shorter than it was")),
    }
}

/// The whole-object checksum S3 gives a multipart object: the SHA-256 of the concatenated part
/// digests, suffixed `-<parts>`.
pub fn composite(part_digests: &[String]) -> String {
    let mut combined = Sha256::new();
    for digest in part_digests {
        combined.update(base64::engine::general_purpose::STANDARD.decode(digest).unwrap_or_default());
    }
    format!("{}-{}", base64::engine::general_purpose::STANDARD.encode(combined.finalize()), part_digests.len())
}

#[cfg(test)]
mod part_tests {
    use super::*;

    #[test]
    fn parts_are_hashed_separately_and_combined_as_s3_does() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"abcdefghij").unwrap();
        let parts: Vec<String> =
            [(0, 4), (4, 4), (8, 2)].iter().map(|&(o, l)| sha256_range(&path, o, l).unwrap()).collect();
        let digest = |b: &[u8]| Sha256::digest(b);
        assert_eq!(parts[2], base64::engine::general_purpose::STANDARD.encode(digest(b"ij")));
        let mut combined = Sha256::new();
        for chunk in [&b"abcd"[..], b"efgh", b"ij"] {
            combined.update(digest(chunk));
        }
        let expected = format!("{}-3", base64::engine::general_purpose::STANDARD.encode(combined.finalize()));
        assert_eq!(composite(&parts), expected);
    }

    #[test]
    fn a_range_past_the_end_of_the_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"abc").unwrap();
        assert_eq!(sha256_range(&path, 2, 4).unwrap_err().kind(), std::io::ErrorKind::UnexpectedEof);
    }
}
