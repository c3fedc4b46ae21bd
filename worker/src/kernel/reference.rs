//! The plain scalar reference: one pixel at a time, written as close to the Python
//! original as Rust allows. Tests compare the fast kernels against it pixel by pixel.

use crate::constant::JuliaConstant;

/// The `z = z*z + c` steps the original performs for the pixel whose starting point
/// is `zx + zy*i`: the first `i` in `0..iterations` with `|z| > 2` (tested as
/// `zr*zr + zi*zi > 4`), else `iterations` (it never escaped).
pub fn escape_steps(zx: f64, zy: f64, c: JuliaConstant, iterations: u32) -> u32 {
    let (mut zr, mut zi) = (zx, zy);
    for i in 0..iterations {
        if zr * zr + zi * zi > 4.0 {
            return i;
        }
        // CPython's complex product: (a.r*b.r - a.i*b.i, a.r*b.i + a.i*b.r).
        let re = zr * zr - zi * zi;
        let im = zr * zi + zi * zr;
        zr = re + c.re();
        zi = im + c.im();
    }
    iterations
}

/// The original's escape index of that pixel: [`escape_steps`], or `iterations - 1`
/// for a pixel that never escaped (Python's loop variable after a full `for`).
pub fn escape_index(zx: f64, zy: f64, c: JuliaConstant, iterations: u32) -> u32 {
    escape_steps(zx, zy, c, iterations).min(iterations.saturating_sub(1))
}
