//! Checksumming while writing: [`HashingWriter`] and the [`Sha256Checksum`] it yields.

use std::fmt;
use std::io::{self, Write};

use sha2::{Digest, Sha256};

/// The sha256 of a PNG file, the `checksum` column of a fractal record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Checksum([u8; 32]);

impl Sha256Checksum {
    /// The raw 32 bytes of the digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Sha256Checksum {
    /// Lower-case hex, 64 characters, as `sha256sum` prints it and the API stores it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// A [`Write`] adapter that feeds every byte the inner writer accepts into sha256
/// and counts them, so the checksum and size of a file come without reading it back.
#[derive(Debug)]
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`; nothing written yet.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// Ends hashing: the inner writer back, the sha256 and the byte count of all
    /// bytes written through this adapter.
    pub fn finish(self) -> (W, Sha256Checksum, u64) {
        let digest: [u8; 32] = self.hasher.finalize().into();
        (self.inner, Sha256Checksum(digest), self.written)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let accepted = self.inner.write(buf)?;
        // `write` never reports more than it was given; the slice is in bounds.
        let accepted_bytes = buf.get(..accepted).unwrap_or(buf);
        self.hasher.update(accepted_bytes);
        self.written += accepted_bytes.len() as u64;
        Ok(accepted)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_what_it_writes() -> io::Result<()> {
        let mut writer = HashingWriter::new(Vec::new());
        writer.write_all(b"ab")?;
        writer.write_all(b"c")?;
        let (bytes, checksum, size) = writer.finish();
        assert_eq!(bytes, b"abc");
        assert_eq!(size, 3);
        assert_eq!(
            checksum.to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        Ok(())
    }
}
