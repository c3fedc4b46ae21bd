//! An uploaded image, checked to be a PNG of the fractal's size.

use super::{Checksum, Invalid};

/// The 8 bytes every PNG file starts with.
const SIGNATURE: &[u8; 8] = b"\x89PNG\r\n\x1a\n";

/// A PNG file: its bytes, sha256, and the dimensions its header declares.
#[derive(Debug, Clone)]
pub struct PngImage {
    bytes: axum::body::Bytes,
    checksum: Checksum,
    width: u32,
    height: u32,
}

impl PngImage {
    /// Checks the signature and the IHDR chunk (which must come first) and
    /// hashes the bytes. The pixels themselves are not decoded.
    pub fn parse(bytes: axum::body::Bytes) -> Result<Self, Invalid> {
        if bytes.len() < 33 || &bytes[..8] != SIGNATURE {
            return Err(Invalid(
                "the body is not a PNG image (it lacks the PNG signature)".into(),
            ));
        }
        let be32 = |at: usize| {
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        if be32(8) != 13 || &bytes[12..16] != b"IHDR" {
            return Err(Invalid(
                "the body is not a valid PNG image (its first chunk is not IHDR)".into(),
            ));
        }
        let (width, height) = (be32(16), be32(20));
        let checksum = Checksum::of(&bytes);
        Ok(Self {
            bytes,
            checksum,
            width,
            height,
        })
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &axum::body::Bytes {
        &self.bytes
    }

    /// Its sha256.
    pub fn checksum(&self) -> &Checksum {
        &self.checksum
    }

    /// Its size in bytes.
    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Width and height from its header.
    pub fn dimensions(&self) -> (u32, u32) {
        (self.width, self.height)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(width: u32, height: u32) -> Vec<u8> {
        let mut png = SIGNATURE.to_vec();
        png.extend_from_slice(&13u32.to_be_bytes());
        png.extend_from_slice(b"IHDR");
        png.extend_from_slice(&width.to_be_bytes());
        png.extend_from_slice(&height.to_be_bytes());
        png.extend_from_slice(&[8, 3, 0, 0, 0, 0, 0, 0, 0]);
        png
    }

    #[test]
    fn reads_dimensions_and_hashes() {
        let bytes = header(640, 480);
        let png = PngImage::parse(bytes.clone().into()).expect("png");
        assert_eq!(png.dimensions(), (640, 480));
        assert_eq!(png.size(), bytes.len() as u64);
        assert_eq!(png.checksum(), &Checksum::of(&bytes));
    }

    #[test]
    fn refuses_what_is_not_a_png() {
        assert!(PngImage::parse(axum::body::Bytes::from_static(b"GIF89a")).is_err());
        let mut bad = header(2, 2);
        bad[12] = b'X';
        assert!(PngImage::parse(bad.into()).is_err());
        assert!(PngImage::parse(axum::body::Bytes::from_static(SIGNATURE)).is_err());
    }
}
