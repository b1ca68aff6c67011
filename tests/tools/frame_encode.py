#!/usr/bin/python3
"""frame_encode.py — write an nnp frame stream from NIfTI files without nnpipe.

Usage: frame_encode.py [options] IMAGE... [--label FILE] -o OUT

nibabel reads the files; the stock msgpack Packer writes one image frame
(several IMAGE files = channels, a 4D file = channels) and, with --label, a
label frame.  Headers hold only the generic keys (nnp, v, role, case, dtype,
shape, spacing, affine, chunk, nchunks, nbytes, codec): no carried NIfTI
header, so a writer must rebuild the geometry from "affine" and "spacing".

Options:
  --case ID        case id (default: first file's name without extension/_NNNN)
  --chunk N        slices per chunk (default: about 8 MiB)
  --big-endian     write the payload big-endian (dtype ">..")
  --extra JSON     merge these keys into every header (unknown keys, v [1,9] ...)
"""
import argparse
import json
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import nnpframe  # noqa: E402


def case_of(path):
    b = os.path.basename(path)
    for e in (".nii.gz", ".nii", ".hdr", ".img"):
        if b.endswith(e):
            b = b[:-len(e)]
            break
    return re.sub(r"_\d{4}$", "", b)


def frame_for(files, role, case, chunk, big, extra):
    arrs = []
    img0 = None
    for f in files:
        a, img = nnpframe.nii_to_cz(f)
        arrs.append(a)
        img0 = img0 or img
    a = np.concatenate(arrs, axis=0)
    if big:
        a = a.astype(a.dtype.newbyteorder(">"))
    else:
        a = a.astype(a.dtype.newbyteorder("<"))
    z = [abs(float(v)) for v in img0.header["pixdim"][1:4]]
    h = {"nnp": "frame", "v": [1, 0], "role": role, "case": case,
         "spacing": [z[2], z[1], z[0]],
         "affine": [[float(v) for v in row] for row in img0.affine]}
    h.update(extra)
    return nnpframe.encode_frame(h, a, chunk)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("images", nargs="+")
    p.add_argument("--label")
    p.add_argument("-o", "--out", required=True)
    p.add_argument("--case")
    p.add_argument("--chunk", type=int)
    p.add_argument("--big-endian", action="store_true")
    p.add_argument("--extra", default="{}")
    o = p.parse_args()
    case = o.case or case_of(o.images[0])
    extra = json.loads(o.extra)
    buf = frame_for(o.images, "image", case, o.chunk, o.big_endian, extra)
    if o.label:
        buf += frame_for([o.label], "label", case, o.chunk, o.big_endian, extra)
    if o.out == "-":
        sys.stdout.buffer.write(buf)
    else:
        with open(o.out, "wb") as f:
            f.write(buf)


if __name__ == "__main__":
    main()
