//! The original's 32 colours, as a PNG palette.
//!
//! The original coloured a pixel with escape index `i` as
//! `(i % 8 * 32, i % 16 * 16, i % 32 * 8)`: the colour depends on `i % 32` only, so
//! palette entry `i % 32` reproduces it exactly in an 8-bit indexed PNG.

/// Number of distinct colours.
pub const PALETTE_LEN: usize = 32;

/// The palette, entry `k` being the original's colour for any `i` with `i % 32 == k`.
pub const PALETTE: [[u8; 3]; PALETTE_LEN] = build_palette();

const fn build_palette() -> [[u8; 3]; PALETTE_LEN] {
    let mut palette = [[0u8; 3]; PALETTE_LEN];
    let mut k = 0;
    while k < PALETTE_LEN {
        // k < 32, so every channel is at most 248: no truncation.
        palette[k] = [(k % 8 * 32) as u8, (k % 16 * 16) as u8, (k % 32 * 8) as u8];
        k += 1;
    }
    palette
}

/// Palette index of escape index `i`.
pub fn palette_index(escape_index: u32) -> u8 {
    // Always < 32.
    (escape_index % PALETTE_LEN as u32) as u8
}

/// The palette as the flat `R, G, B, R, G, B, ...` bytes of a PLTE chunk.
pub fn plte_bytes() -> [u8; PALETTE_LEN * 3] {
    let mut bytes = [0u8; PALETTE_LEN * 3];
    for (chunk, colour) in bytes.chunks_exact_mut(3).zip(PALETTE) {
        chunk.copy_from_slice(&colour);
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn palette_reproduces_the_original_colours_for_any_index() {
        for i in 0u32..1000 {
            let original = [(i % 8 * 32) as u8, (i % 16 * 16) as u8, (i % 32 * 8) as u8];
            assert_eq!(PALETTE[usize::from(palette_index(i))], original);
        }
    }
}
