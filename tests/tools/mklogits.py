#!/usr/bin/python3
"""mklogits.py — a "logits" frame stream as nnp preprocess + inference would leave it.

Usage: mklogits.py CASE_DIR -o OUT [--dtype f2|f4] [--case ID] [--transpose A,B,C] [--logits NAME]
       mklogits.py --synthetic K,Z,Y,X --mid Z,Y,X --spacing Z,Y,X -o OUT [--seed N] [--nan]

CASE_DIR holds nnU-Net's logits_f0_nomirror.npy.gz (float16 (K, z, y, x), the
preprocessed geometry), properties.json (nnU-Net's properties: original spacing,
shape_before_cropping, bbox_used_for_cropping, shape_after_cropping_and_before_resampling,
nibabel_stuff.original_affine, fixture_info.preprocessed_spacing).  The frame
carries the props nnp preprocess writes, the preprocessed spacing and the affine
that crop + resample give the original affine (so nnp export must restore it).

--logits NAME: another logits file of CASE_DIR (default logits_f0_nomirror.npy.gz), a
.npy.gz or a fixture .nii.gz (nnU-Net's (K, z, y, x) array = the NIfTI transposed).

--synthetic: random logits of shape K,Z,Y,X whose original (uncropped = cropped)
grid is --mid with original spacing --spacing (the preprocessed spacing is
chosen so that the grid ratio is exact).
"""
import argparse
import gzip
import io
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import nnpframe  # noqa: E402


def ints(s):
    return [int(v) for v in s.split(",")]


def floats(s):
    return [float(v) for v in s.split(",")]


def preprocessed_affine(orig, bbox, mid, pre):
    """Original affine -> after crop (origin at the box corner) -> after resampling."""
    a = np.array(orig, dtype=np.float64)
    for ax in range(3):
        a[:3, 3] += a[:3, 2 - ax] * bbox[ax][0]
    for ax in range(3):
        col = 2 - ax
        s = mid[ax] / pre[ax]          # input/output of the forward resampling
        a[:3, 3] += a[:3, col] * (0.5 * s - 0.5)
        a[:3, col] *= s
    return a


def big_synthetic(a):
    """Large synthetic logits written chunk by chunk (benchmarks): smooth
    random fields, float16 or float32, no crop."""
    K, Z, Y, X = ints(a.synthetic)
    mid, sp = ints(a.mid), floats(a.spacing)
    dt = np.dtype("<" + a.dtype)
    pre_sp = [sp[i] * mid[i] / [Z, Y, X][i] for i in range(3)]
    aff = preprocessed_affine(np.diag([sp[2], sp[1], sp[0], 1.0]), [[0, m] for m in mid], mid, [Z, Y, X])
    chunk = max(1, (8 << 20) // (K * Y * X * dt.itemsize))
    h = {"nnp": "frame", "v": [1, 0], "role": "logits", "case": a.case or "bench", "dtype": dt.str,
         "shape": [K, Z, Y, X], "spacing": pre_sp, "affine": [[float(v) for v in r] for r in aff],
         "chunk": chunk, "nchunks": -(-Z // chunk), "nbytes": K * Z * Y * X * dt.itemsize, "codec": "raw",
         "props": {"shape_before_cropping": mid, "bbox_used_for_cropping": [[0, m] for m in mid],
                   "shape_after_cropping_and_before_resampling": mid, "spacing_before_resampling": sp}}
    rng = np.random.default_rng(a.seed)
    base = (rng.standard_normal((K, 1, Y, X)) * 2).astype(np.float32)
    with open(a.o, "wb") as out:
        out.write(nnpframe.pack(h))
        for z0 in range(0, Z, chunk):
            zs = min(chunk, Z - z0)
            c = base + rng.standard_normal((K, zs, Y, X), dtype=np.float32)
            out.write(nnpframe.pack(np.ascontiguousarray(c.astype(dt)).tobytes()))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("case_dir", nargs="?")
    p.add_argument("-o", required=True)
    p.add_argument("--dtype", default="f4")
    p.add_argument("--case")
    p.add_argument("--logits", default="logits_f0_nomirror.npy.gz")
    p.add_argument("--synthetic")
    p.add_argument("--mid")
    p.add_argument("--spacing")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nan", action="store_true")
    p.add_argument("--chunk", type=int)
    p.add_argument("--drop-prop", action="append", default=[])
    p.add_argument("--transpose", help="record props.transpose_forward A,B,C")
    p.add_argument("--bbox", help="synthetic: crop box lo0,lo1,lo2 inside a grid --before")
    p.add_argument("--before")
    a = p.parse_args()
    if a.synthetic and a.o != "-" and np.prod(ints(a.synthetic)) > 1 << 26:
        return big_synthetic(a)
    if a.synthetic:
        K, Z, Y, X = ints(a.synthetic)
        mid = ints(a.mid)
        sp = floats(a.spacing)
        rng = np.random.default_rng(a.seed)
        lg = rng.standard_normal((K, Z, Y, X)).astype(np.float16)
        pre = [Z, Y, X]
        pre_sp = [sp[i] * mid[i] / pre[i] for i in range(3)]
        before, bbox = mid, [[0, m] for m in mid]
        if a.bbox:
            before = ints(a.before)
            bbox = [[lo, lo + m] for lo, m in zip(ints(a.bbox), mid)]
        orig = np.diag([sp[2], sp[1], sp[0], 1.0])
        case = a.case or "synth"
    else:
        props = json.load(open(os.path.join(a.case_dir, "properties.json")))
        path = os.path.join(a.case_dir, a.logits)
        if path.endswith(".nii.gz"):
            import nibabel as nib
            lg = np.asanyarray(nib.load(path).dataobj).transpose(3, 2, 1, 0).astype(np.float16)
        else:
            lg = np.load(io.BytesIO(gzip.decompress(open(path, "rb").read())))
        sp = props["spacing"]
        pre_sp = props["fixture_info"]["preprocessed_spacing"]
        before = props["shape_before_cropping"]
        bbox = props["bbox_used_for_cropping"]
        mid = props["shape_after_cropping_and_before_resampling"]
        orig = props["nibabel_stuff"]["original_affine"]
        case = a.case or os.path.basename(os.path.normpath(a.case_dir))
    if a.nan:
        lg = lg.copy()
        lg[1, lg.shape[1] // 2, 3, 4] = np.nan
    lg = lg.astype("<" + a.dtype)
    pre = list(lg.shape[1:])
    aff = preprocessed_affine(orig, bbox, mid, pre)
    props_out = {"shape_before_cropping": list(before), "bbox_used_for_cropping": [list(b) for b in bbox],
                 "shape_after_cropping_and_before_resampling": list(mid),
                 "spacing_before_resampling": list(sp)}
    if a.transpose:
        props_out["transpose_forward"] = ints(a.transpose)
    for k in a.drop_prop:
        props_out.pop(k)
    h = {"role": "logits", "case": case, "spacing": list(pre_sp),
         "affine": [[float(v) for v in row] for row in aff], "props": props_out}
    data = nnpframe.encode_frame(h, lg, a.chunk)
    if a.o == "-":
        sys.stdout.buffer.write(data)
    else:
        open(a.o, "wb").write(data)


if __name__ == "__main__":
    main()
