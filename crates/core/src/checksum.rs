//! Checksums that S3 verifies, read in fixed-size chunks so memory stays flat whatever the size.
//! A single PUT carries the file's SHA-256; the parts of a multipart upload carry a CRC32C each
//! (SSE4.2/CLMUL: about a tenth of SHA-256's CPU per byte, which matters at gigabytes). Either is
//! signed into the upload URL, so S3 itself rejects bytes that do not match.
//!
//! An object's checksum as history and reports keep it is a string: the base64 SHA-256, S3's
//! composite of part SHA-256s (`<base64>-<parts>`), or, with the [`CRC32C_TAG`] prefix, S3's
//! composite of part CRC32Cs (`crc32c:<base64>-<parts>`).

use std::io::Read;
use std::path::Path;

use base64::Engine as _;
use sha2::{Digest, Sha256};

const READ_CHUNK: usize = 1 << 20;

/// Marks an object checksum that is S3's composite CRC32C rather than a SHA-256.
pub const CRC32C_TAG: &str = "crc32c:";

/// The file's SHA-256, base64-encoded as S3's `x-amz-checksum-sha256` header wants it, and the
/// number of bytes read (which may differ from an earlier `stat` if the file is being written).
pub fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    let file = std::fs::File::open(path)?;
    // A small file gets a buffer its size: a fresh 1 MiB one per file costs more (zeroing and
    // page faults) than hashing 64 KiB.
    let expected = file.metadata().map_or(READ_CHUNK as u64, |m| m.len());
    sha256_of(file, (expected as usize).clamp(4096, READ_CHUNK))
}

/// Hashes everything `reader` yields, in chunks of `chunk` bytes: (base64 digest, bytes read).
fn sha256_of(mut reader: impl Read, chunk: usize) -> std::io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; chunk];
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

/// The CRC32C (Castagnoli, S3's `CRC32C`) of `len` bytes at `offset`, and the base64 of its
/// four big-endian bytes, as `x-amz-checksum-crc32c` wants it. Fails with `UnexpectedEof` when the
/// file no longer holds those bytes.
pub fn crc32c_range(path: &Path, offset: u64, len: u64) -> std::io::Result<String> {
    use std::io::{Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let mut reader = file.take(len);
    let mut digest = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi);
    let mut buf = vec![0u8; READ_CHUNK];
    let mut read = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        digest.update(&buf[..n]);
        read += n as u64;
    }
    if read != len {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the file is shorter than it was"));
    }
    Ok(crc32c_base64(digest.finalize() as u32))
}

/// Reads `len` bytes at `offset` of a file that must still be `file_size` bytes long into
/// `bytes` (replacing what it held), and takes their CRC32C as [`crc32c_range`] gives it: the
/// bytes are read once and hashed in memory.
pub fn read_range_crc32c(
    path: &Path,
    offset: u64,
    len: u64,
    file_size: u64,
    bytes: &mut Vec<u8>,
) -> std::io::Result<String> {
    use std::io::{Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let now = file.metadata()?.len();
    if now != file_size {
        return Err(std::io::Error::other(format!("it was {file_size} bytes when checked and is {now} bytes now")));
    }
    file.seek(SeekFrom::Start(offset))?;
    bytes.clear();
    // Filled by read_to_end without zeroing first.
    bytes.reserve_exact(len as usize);
    file.take(len).read_to_end(bytes)?;
    if bytes.len() as u64 != len {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the file is shorter than it was"));
    }
    let mut digest = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi);
    digest.update(bytes);
    Ok(crc32c_base64(digest.finalize() as u32))
}

fn crc32c_base64(crc: u32) -> String {
    base64::engine::general_purpose::STANDARD.encode(crc.to_be_bytes())
}

/// S3's composite checksum of a CRC32C multipart object: the CRC32C of the concatenated part
/// checksums (4 bytes each), suffixed `-<parts>`, tagged with [`CRC32C_TAG`].
pub fn composite_crc32c(part_checksums: &[String]) -> String {
    let mut combined = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi);
    for checksum in part_checksums {
        combined.update(&base64::engine::general_purpose::STANDARD.decode(checksum).unwrap_or_default());
    }
    format!("{CRC32C_TAG}{}-{}", crc32c_base64(combined.finalize() as u32), part_checksums.len())
}

#[cfg(test)]
mod crc32c_tests {
    use super::*;

    #[test]
    fn crc32c_is_the_castagnoli_check_value_in_base64() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"xx123456789").unwrap();
        // 0xE3069283 is CRC-32C's published check value for "123456789".
        assert_eq!(crc32c_range(&path, 2, 9).unwrap(), crc32c_base64(0xE306_9283));
        assert_eq!(crc32c_range(&path, 2, 9).unwrap(), "4waSgw==");
        assert_eq!(crc32c_range(&path, 8, 9).unwrap_err().kind(), std::io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn a_range_read_into_memory_has_the_same_crc32c_and_fails_when_the_file_changed_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"xx123456789").unwrap();
        let mut bytes = b"what the buffer held before".to_vec();
        let checksum = read_range_crc32c(&path, 2, 9, 11, &mut bytes).unwrap();
        assert_eq!((checksum.as_str(), bytes.as_slice()), ("4waSgw==", &b"123456789"[..]));
        let changed = read_range_crc32c(&path, 2, 9, 12, &mut bytes).unwrap_err();
        assert!(changed.to_string().contains("was 12 bytes when checked and is 11 bytes now"), "{changed}");
        let short = read_range_crc32c(&path, 8, 9, 11, &mut bytes).unwrap_err();
        assert_eq!(short.kind(), std::io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn the_crc32c_composite_is_the_crc32c_of_the_part_checksums_bytes() {
        // S3's rule for COMPOSITE checksums; the system tests compare it with SeaweedFS's HEAD.
        let parts = ["4waSgw==".to_owned(), "AAAAAA==".to_owned()];
        let mut joined = Vec::new();
        joined.extend_from_slice(&0xE306_9283u32.to_be_bytes());
        joined.extend_from_slice(&[0, 0, 0, 0]);
        let expected = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, &joined) as u32;
        assert_eq!(composite_crc32c(&parts), format!("crc32c:{}-2", crc32c_base64(expected)));
    }
}
