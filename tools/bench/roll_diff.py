#!/usr/bin/env python3
"""How far two piano rolls written by `mtosi transcribe --roll` are apart (e.g. --precision fp32
vs bf16): max and mean |Δp| and the keys × frames where the 0.5 threshold decides differently.
Plain Python (no numpy): reads the little-endian float32 .npy files that mtosi writes.

    python3 tools/bench/roll_diff.py a.npy b.npy [--threshold 0.5]
"""
import argparse
import ast
import struct
import sys
from array import array


def read_npy(path):
    with open(path, "rb") as f:
        if f.read(6) != b"\x93NUMPY":
            sys.exit(f"{path}: not a .npy file")
        major = f.read(2)[0]
        header_len = struct.unpack("<H" if major == 1 else "<I", f.read(2 if major == 1 else 4))[0]
        header = ast.literal_eval(f.read(header_len).decode("latin1"))
        if header["descr"] != "<f4" or header["fortran_order"]:
            sys.exit(f"{path}: expected C-order little-endian float32, found {header}")
        values = array("f")
        values.frombytes(f.read())
    return header["shape"], values


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--threshold", type=float, default=0.5)
    args = parser.parse_args()
    (shape_a, a), (shape_b, b) = read_npy(args.a), read_npy(args.b)
    if shape_a != shape_b:
        sys.exit(f"shapes differ: {shape_a} vs {shape_b}")
    diffs = [abs(x - y) for x, y in zip(a, b)]
    if any(d != d for d in diffs):
        sys.exit("a NaN in one of the rolls")
    worst = max(range(len(diffs)), key=diffs.__getitem__)
    keys = shape_a[-1]
    flips = sum((x > args.threshold) != (y > args.threshold) for x, y in zip(a, b))
    on = sum(x > args.threshold for x in a)
    print(f"roll {shape_a}: max |dp| {diffs[worst]:.3e} (frame {worst // keys}, key {worst % keys}: "
          f"{a[worst]:.4f} vs {b[worst]:.4f}), mean |dp| {sum(diffs) / len(diffs):.3e}")
    print(f"threshold {args.threshold}: {flips} of {len(diffs)} frame-keys differ "
          f"({flips / len(diffs):.2e}; {on} on in the first roll)")


if __name__ == "__main__":
    main()
