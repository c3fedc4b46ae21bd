//! PNG output: [`encode_png`] writes a [`PaletteImage`] as an 8-bit indexed PNG and
//! returns its size and sha256 ([`EncodedPng`]).
//!
//! Settings, chosen for speed with deterministic output: colour type Indexed, bit
//! depth 8, the 32-entry [`crate::PALETTE`] as PLTE, the png crate's
//! `Compression::Fast` (fdeflate's single-pass compressor: no multithreading, no
//! CPU-dependent choices) and the `Up` row filter. On the 1 Mpixel reference image
//! `Up` is both the fastest and the smallest fast setting (about 1.1 ms and 138 kB,
//! against 2.1 ms / 139 kB adaptive and 3.0 ms / 550 kB unfiltered: smaller output
//! is less deflate work). The bytes depend only on the image and on the
//! `png`/`fdeflate` versions pinned in `Cargo.lock`.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::error::EncodeError;
use crate::hashing_writer::{HashingWriter, Sha256Checksum};
use crate::image::PaletteImage;
use crate::palette::plte_bytes;

/// What writing a PNG produced: the fields the API stores besides the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodedPng {
    /// File size in bytes.
    pub size: u64,
    /// sha256 of exactly the bytes written.
    pub checksum: Sha256Checksum,
    /// Time spent encoding, hashing and writing.
    pub duration: Duration,
}

/// Encodes `image` as a palette PNG into `out`, hashing the bytes as they are written.
pub fn encode_png<W: Write>(image: &PaletteImage, out: W) -> Result<EncodedPng, EncodeError> {
    let started = Instant::now();
    let mut writer = HashingWriter::new(out);
    let mut encoder = png::Encoder::new(&mut writer, image.width().get(), image.height().get());
    encoder.set_color(png::ColorType::Indexed);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_palette(plte_bytes().to_vec());
    encoder.set_compression(png::Compression::Fast);
    encoder.set_filter(png::Filter::Up);
    let mut png = encoder.write_header()?;
    png.write_image_data(image.pixels())?;
    png.finish()?;
    let (_, checksum, size) = writer.finish();
    Ok(EncodedPng {
        size,
        checksum,
        duration: started.elapsed(),
    })
}
