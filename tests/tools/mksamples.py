#!/usr/bin/python3
"""mksamples.py — synthetic 'nnp sample' output (image + label pairs with
props.sample) for testing and benchmarking nnp augment.

Usage: mksamples.py [options] -o OUT
  -n N               samples (default 4)
  --channels C       image channels (default 1)
  --shape P0,P1,P2   enlarged input patch (2D: 1,P0,P1) (default 9,12,11)
  --final p0,p1[,p2] final patch (2 entries: a 2D configuration) (default 5,6,7)
  --dummy-2d         dummy_2d true
  --rotation LO,HI   radians (default +-30 degrees)
  --mirror AXES      comma list (default all axes of final_patch)
  --labels K         labels 0..K-1 plus a -1 margin (default 3)
  --seed S           numpy seed (default 0)
  --iteration I      iteration of the first batch (default 0)
  --batch B          batch_size (default 2): index = i % B, iteration += i // B
  --margin M         label -1 on the first M x columns of every sample, image kept
                     there (default: 0-2 columns, image zeroed)
  --plain           integer-exact data (no sin/cos/normal): the same bytes everywhere
Edits for bad-input tests: --image-dtype, --label-dtype, --drop-label, --drop-key KEY.
"""
import argparse
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import nnpframe  # noqa: E402


def ints(s):
    return [int(v) for v in s.split(",") if v != ""]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=4)
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--shape", default="9,12,11")
    ap.add_argument("--final", default="5,6,7")
    ap.add_argument("--dummy-2d", action="store_true")
    ap.add_argument("--rotation", default=None)
    ap.add_argument("--mirror", default=None)
    ap.add_argument("--labels", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--iteration", type=int, default=0)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--image-dtype", default="<f4")
    ap.add_argument("--label-dtype", default="<i2")
    ap.add_argument("--plain", action="store_true")
    ap.add_argument("--margin", type=int, default=None)
    ap.add_argument("--drop-label", action="store_true")
    ap.add_argument("--drop-key", default=None)
    ap.add_argument("-o", required=True)
    a = ap.parse_args()
    shape, final = ints(a.shape), ints(a.final)
    rot = [float(v) for v in a.rotation.split(",")] if a.rotation else [-math.pi / 6, math.pi / 6]
    mirror = ints(a.mirror) if a.mirror is not None else list(range(len(final)))
    rs = np.random.RandomState(a.seed)
    out = []
    zz, yy, xx = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    for i in range(a.n):
        c = [rs.uniform(0, n) for n in shape]
        r = np.sqrt(((zz - c[0]) / max(shape[0] / 3, 1)) ** 2 + ((yy - c[1]) / (shape[1] / 3)) ** 2 +
                    ((xx - c[2]) / (shape[2] / 3)) ** 2)
        lab = np.zeros(shape, np.int16)
        for k in range(1, a.labels):
            lab[r < 1.2 - k * 1.0 / a.labels] = k
        m = rs.randint(0, 3) if a.margin is None else a.margin
        if m:
            lab[..., :m] = -1   # padded margin
        if a.plain:
            img = np.stack([((zz * 7 + yy * 3 + xx * 5 + ch) % 17) / 4.0 + lab
                            for ch in range(a.channels)]).astype(a.image_dtype)
        else:
            img = np.stack([(np.sin(zz * 0.7 + ch) + np.cos(yy * 0.4) + 0.1 * xx + lab * 2.0 +
                             rs.normal(0, 0.2, shape)) for ch in range(a.channels)]).astype(a.image_dtype)
        if a.margin is None:
            img[:, lab < 0] = 0
        sample = {"iteration": a.iteration + i // a.batch, "index": i % a.batch, "batch_size": a.batch,
                  "case": "case_%03d" % (i % 3), "forced_fg": bool(i % a.batch == a.batch - 1),
                  "box": [[0, n] for n in shape], "final_patch": final, "config": "test",
                  "dummy_2d": bool(a.dummy_2d), "rotation": rot, "mirror_axes": mirror, "seed": a.seed}
        if a.drop_key:
            sample.pop(a.drop_key)
        hdr = {"case": sample["case"], "spacing": [1.0, 1.0, 1.0], "props": {"sample": sample}}
        out.append(nnpframe.encode_frame(dict(hdr, role="image"), img))
        if not a.drop_label:
            out.append(nnpframe.encode_frame(dict(hdr, role="label"), lab[None].astype(a.label_dtype)))
    with open(a.o, "wb") as f:
        f.write(b"".join(out))


if __name__ == "__main__":
    main()
