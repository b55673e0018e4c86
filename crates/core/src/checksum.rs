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
