#!/usr/bin/env python3
"""The original faafo worker's Julia-set loop (2015), with c given explicitly.

Pure Python 3, no dependencies. The loop is the original's, unchanged:

    for y in range(height):
        zy = y * (yb - ya) / (height - 1) + ya
        for x in range(width):
            zx = x * (xb - xa) / (width - 1) + xa
            z = zx + zy * 1j
            for i in range(iterations):
                if abs(z) > 2.0:
                    break
                z = z * z + c

Instead of colouring pixel (x, y) with (i % 8 * 32, i % 16 * 16, i % 32 * 8) it
writes the escape index i of every pixel, row-major, as little-endian uint32, so
the Rust renderer can be compared with it pixel by pixel.

Usage: julia_reference.py WIDTH HEIGHT ITERATIONS XA XB YA YB C_RE C_IM OUTPUT
(OUTPUT "-" for stdout). Floats are parsed with float(), so Rust's shortest
round-trip formatting ({:?}) passes them bit for bit.
"""

import array
import sys


def escape_indices(width, height, iterations, xa, xb, ya, yb, c):
    """Escape index of every pixel, row-major, exactly as the original computed it."""
    indices = array.array("I")
    for y in range(height):
        zy = y * (yb - ya) / (height - 1) + ya
        for x in range(width):
            zx = x * (xb - xa) / (width - 1) + xa
            z = zx + zy * 1j
            for i in range(iterations):
                if abs(z) > 2.0:
                    break
                z = z * z + c
            indices.append(i)
    return indices


def main(argv):
    if len(argv) != 11:
        sys.exit(__doc__)
    width, height, iterations = (int(value) for value in argv[1:4])
    xa, xb, ya, yb, c_re, c_im = (float(value) for value in argv[4:10])
    indices = escape_indices(width, height, iterations, xa, xb, ya, yb, complex(c_re, c_im))
    if sys.byteorder != "little":
        indices.byteswap()
    if argv[10] == "-":
        sys.stdout.buffer.write(indices.tobytes())
    else:
        with open(argv[10], "wb") as output:
            output.write(indices.tobytes())


if __name__ == "__main__":
    main(sys.argv)
