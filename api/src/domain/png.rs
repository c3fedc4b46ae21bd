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
    /// Checks the signature, the IHDR chunk (which must come first), that
    /// the chunks run to IEND and end there (a file cut short, or with
    /// anything after its end, is not a PNG), and that it is no larger
    /// than a PNG of its width and height can be; hashes the bytes. The
    /// pixels themselves are not decoded.
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
        let mut at = SIGNATURE.len();
        loop {
            if bytes.len() - at < 12 {
                return Err(Invalid(
                    "the body is not a whole PNG image (it ends before its IEND chunk)".into(),
                ));
            }
            let data = be32(at) as usize;
            let kind = &bytes[at + 4..at + 8];
            at = match (at + 12).checked_add(data) {
                Some(next) if next <= bytes.len() => next,
                _ => {
                    return Err(Invalid(
                        "the body is not a whole PNG image (a chunk runs past its end)".into(),
                    ));
                }
            };
            if kind == b"IEND" {
                break;
            }
        }
        if at != bytes.len() {
            return Err(Invalid(format!(
                "the body is not a valid PNG image ({} bytes after its IEND chunk)",
                bytes.len() - at
            )));
        }
        let most = largest_png(width, height);
        if bytes.len() as u64 > most {
            return Err(Invalid(format!(
                "the body is {} bytes, more than a {width} x {height} PNG can be ({most} at most)",
                bytes.len()
            )));
        }
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

/// The most bytes a PNG of `width` x `height` takes, with room to spare:
/// twice its pixels at 8 bytes each (16-bit RGBA, the widest) and a
/// filter byte a row (stored uncompressed, deflate adds 5 bytes in
/// 65,535), plus 1 MiB for the other chunks. A body larger than that is
/// not an image of the fractal, whatever its header says.
fn largest_png(width: u32, height: u32) -> u64 {
    (u64::from(width) * 8 + 1)
        .saturating_mul(u64::from(height))
        .saturating_mul(2)
        .saturating_add(1 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut chunk = (data.len() as u32).to_be_bytes().to_vec();
        chunk.extend_from_slice(kind);
        chunk.extend_from_slice(data);
        chunk.extend_from_slice(&[0; 4]);
        chunk
    }

    fn png(width: u32, height: u32, pixels: &[u8]) -> Vec<u8> {
        let mut png = SIGNATURE.to_vec();
        let mut ihdr = width.to_be_bytes().to_vec();
        ihdr.extend_from_slice(&height.to_be_bytes());
        ihdr.extend_from_slice(&[8, 3, 0, 0, 0]);
        png.extend(chunk(b"IHDR", &ihdr));
        png.extend(chunk(b"IDAT", pixels));
        png.extend(chunk(b"IEND", &[]));
        png
    }

    #[test]
    fn reads_dimensions_and_hashes() {
        let bytes = png(640, 480, b"pixels");
        let png = PngImage::parse(bytes.clone().into()).expect("png");
        assert_eq!(png.dimensions(), (640, 480));
        assert_eq!(png.size(), bytes.len() as u64);
        assert_eq!(png.checksum(), &Checksum::of(&bytes));
    }

    #[test]
    fn refuses_what_is_not_a_png() {
        let refused = |bytes: Vec<u8>| match PngImage::parse(bytes.into()) {
            Ok(_) => panic!("taken for a PNG"),
            Err(Invalid(reason)) => reason,
        };
        assert!(refused(b"GIF89a".to_vec()).contains("signature"));
        let mut bad = png(2, 2, b"x");
        bad[12] = b'X';
        assert!(refused(bad).contains("IHDR"));
        assert!(refused(SIGNATURE.to_vec()).contains("signature"));
        // Cut short: no IEND, or a chunk longer than what is left.
        let whole = png(2, 2, b"pixels");
        assert!(refused(whole[..whole.len() - 12].to_vec()).contains("ends before"));
        assert!(refused(whole[..whole.len() - 14].to_vec()).contains("runs past"));
        let mut lying = png(2, 2, b"x");
        lying[33..37].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(refused(lying).contains("runs past"));
        // Anything after IEND.
        let mut trailing = png(2, 2, b"x");
        trailing.extend_from_slice(&[0; 100]);
        assert!(refused(trailing).contains("100 bytes after its IEND"));
        // A header that declares 2 x 2 before megabytes of "pixels".
        let large = png(2, 2, &vec![0; 2 << 20]);
        assert!(refused(large).contains("more than a 2 x 2 PNG can be"));
        assert!(PngImage::parse(png(2, 2, &vec![0; 1 << 19]).into()).is_ok());
        // The largest dimensions a header can declare do not overflow the
        // bound (the fractal's own dimensions are checked after).
        assert!(PngImage::parse(png(u32::MAX, u32::MAX, b"x").into()).is_ok());
    }
}
