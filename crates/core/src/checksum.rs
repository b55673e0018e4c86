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
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf)?;
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

/// Per-part SHA-256s for a multipart upload, and the whole-object checksum S3 itself gives a
/// multipart object: the SHA-256 of the concatenated part digests, suffixed `-<parts>`.
/// One pass over the file, one hash per byte.
pub fn sha256_parts(path: &Path, part_size: u64) -> std::io::Result<(Vec<String>, String, u64)> {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; READ_CHUNK];
    let (mut parts, mut composite) = (Vec::new(), Sha256::new());
    let (mut part, mut in_part, mut total) = (Sha256::new(), 0u64, 0u64);
    loop {
        let want = (part_size - in_part).min(buf.len() as u64) as usize;
        let n = file.read(&mut buf[..want])?;
        if n == 0 {
            break;
        }
        part.update(&buf[..n]);
        in_part += n as u64;
        total += n as u64;
        if in_part == part_size {
            let digest = std::mem::take(&mut part).finalize();
            composite.update(digest);
            parts.push(b64(&digest));
            in_part = 0;
        }
    }
    if in_part > 0 {
        let digest = part.finalize();
        composite.update(digest);
        parts.push(b64(&digest));
    }
    let whole = format!("{}-{}", b64(&composite.finalize()), parts.len());
    Ok((parts, whole, total))
}

#[cfg(test)]
mod part_tests {
    use super::*;

    #[test]
    fn parts_are_hashed_separately_and_combined_as_s3_does() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"abcdefghij").unwrap();
        let (parts, whole, len) = sha256_parts(&path, 4).unwrap();
        assert_eq!(len, 10);
        assert_eq!(parts.len(), 3, "4 + 4 + 2 bytes");
        let digest = |b: &[u8]| Sha256::digest(b);
        assert_eq!(parts[2], base64::engine::general_purpose::STANDARD.encode(digest(b"ij")));
        let mut combined = Sha256::new();
        for chunk in [&b"abcd"[..], b"efgh", b"ij"] {
            combined.update(digest(chunk));
        }
        assert_eq!(whole, format!("{}-3", base64::engine::general_purpose::STANDARD.encode(combined.finalize())));
    }
}
