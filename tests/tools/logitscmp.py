#!/usr/bin/python3
"""logitscmp.py OURS.nii.gz REF.nii.gz [options] — compare logits volumes
(K as the 4th NIfTI axis) the way tests/fixtures README's tolerances are
stated, print the measured figures, exit 1 if a bound is exceeded.

  --rel-l2 X          rel-L2 over all values <= X
  --max-abs X         max |ours - ref| <= X
  --bit-identical P   fraction of bit-identical values >= P
  --argmax P          fraction of voxels with the same argmax >= P
  --masked PROPS      restrict --masked-* to values whose sliding-window
                      weight sum w >= 1e-4 (w rebuilt from the tile steps in
                      nnU-Net's properties.json and the float16 Gaussian)
  --masked-abs X      |ours - ref| <= X * max(1, |ref|) there
  --masked-rel-l2 X   rel-L2 there <= X
"""
import argparse, json, sys
import numpy as np
import nibabel as nib


def load(p):
    a = np.asanyarray(nib.load(p).dataobj).astype(np.float32)
    if a.ndim == 3:
        a = a[..., None]
    return np.transpose(a, (3, 2, 1, 0))  # (K, z, y, x)


def gaussian16(patch):
    g = np.ones(patch, dtype=np.float64)
    for d, p in enumerate(patch):
        i = np.arange(p, dtype=np.float64)
        e = np.exp(-((i - p // 2) ** 2) / (2 * (p / 8.0) ** 2))
        shape = [1] * len(patch)
        shape[d] = p
        g = g * e.reshape(shape)
    g = (g / g.max() * 10).astype(np.float32).astype(np.float16)
    g[g == 0] = g[g > 0].min()
    return g.astype(np.float64)


def weight_sum(props):
    sw = json.load(open(props))["fixture_info"]["sliding_window"]
    patch, steps, padded = sw["patch_size"], sw["steps"], sw["padded_shape"]
    g = gaussian16(patch)
    w = np.zeros(padded)
    for z in steps[0]:
        for y in steps[1]:
            for x in steps[2]:
                w[z:z + patch[0], y:y + patch[1], x:x + patch[2]] += g
    rv = sw["slicer_revert_padding"]
    return w[rv[0][0]:rv[0][1], rv[1][0]:rv[1][1], rv[2][0]:rv[2][1]]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ours")
    ap.add_argument("ref")
    for o in ("rel-l2", "max-abs", "bit-identical", "argmax", "masked-abs", "masked-rel-l2"):
        ap.add_argument("--" + o, type=float)
    ap.add_argument("--masked")
    a = ap.parse_args()
    x, r = load(a.ours), load(a.ref)
    if x.shape != r.shape:
        print(f"shape {x.shape} != {r.shape}")
        return 1
    d = x - r
    m = {"rel-l2": np.linalg.norm(d) / np.linalg.norm(r), "max-abs": np.abs(d).max(),
         "bit-identical": np.mean(x == r), "argmax": np.mean(x.argmax(0) == r.argmax(0))}
    if a.masked:
        sel = np.broadcast_to(weight_sum(a.masked) >= 1e-4, x.shape)
        m["masked-abs"] = (np.abs(d) / np.maximum(1, np.abs(r)))[sel].max()
        m["masked-rel-l2"] = np.linalg.norm(d[sel]) / np.linalg.norm(r[sel])
        m["masked-fraction"] = sel.mean()
    print(" ".join(f"{k} {v:.4g}" for k, v in m.items()))
    bad = []
    for k in ("rel-l2", "max-abs", "masked-abs", "masked-rel-l2"):
        lim = getattr(a, k.replace("-", "_"))
        if lim is not None and not m[k] <= lim:
            bad.append(f"{k} {m[k]:.4g} > {lim}")
    for k in ("bit-identical", "argmax"):
        lim = getattr(a, k.replace("-", "_"))
        if lim is not None and not m[k] >= lim:
            bad.append(f"{k} {m[k]:.4g} < {lim}")
    if bad:
        print("FAIL: " + "; ".join(bad))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
