#!/usr/bin/python3
"""mkppcases.py — constructed cross-validation results for nnp
determine-postprocessing (tests/t/t1310-determine-postprocessing.t).
Deterministic (numpy default_rng(1310)).

Usage: mkppcases.py OUT

Writes OUT/<set>/{pred,ref}/*.nii.gz and OUT/<set>/pred/dataset.json (and a
plans.json stub) for these sets, each built so that nnU-Net's rule has one
known answer (z, y, x arrays of 16 x 28 x 28 voxels; objects in the middle,
small blobs in the corners, two voxels or more apart unless they touch on
purpose):

  cv       labels 1, 2, 3, five cases.  Every prediction has spurious label-1
           blobs (27 voxels each) in three corners; every reference and
           prediction has a real second label-2 component (8 voxels) in a
           fourth corner.  Step 1 (all labels as one object) removes both:
           the foreground mean Dice improves but label 2's gets worse, so
           step 1 is REJECTED.  Step 2: label 1 alone removes the blobs
           (accepted), label 2 alone removes its real component (rejected),
           label 3 has one component (no change: rejected, equal is not
           better).  Case cv3 has no label 3 at all (NaN Dice for it), case
           cv4 is int16.  Decision: [1].
  accept   labels 1, 2, 3, four cases, one of them 2D (1 x 28 x 28).  Spurious
           label-1 and label-3 blobs in the corners: step 1 improves every
           class (ACCEPTED).  A spurious label-1 blob touching label 3 (so part
           of the one foreground object) survives it and is removed by label
           1 alone (accepted).  A label-1 voxel diagonal to the main label-1
           body in the 2D case is connected (8-neighbourhood) and kept.
           Decision: [[1, 2, 3], 1].
  regions  regions whole (1, 2, 3), core (2, 3), enhancing 3 (regions_class_order
           [1, 2, 3]), three cases.  Spurious label-3 blobs in the corners
           (step 1 accepted); a label-2 island inside label 1, not touching
           the core: region (2, 3) alone sets it to 0, which improves the
           core's Dice (although the whole tumour's drops: only the region's
           own Dice counts).  Decision: [[1, 2, 3], [2, 3]].
  ignore   labels 1, 2 and "ignore": 3.  The only spurious blobs lie where the
           reference holds the ignore label: removing them changes no Dice,
           so nothing is accepted.  Decision: [].
  single   one label; spurious blobs; step 1 accepted, no step 2.  Decision: [[1]].
  nan      labels 1, 2, 3, label 3 in no prediction and no reference: its mean
           Dice is NaN, so the foreground mean is NaN and step 1 is rejected
           (NaN > x is false) although it would help; label 1 alone is
           accepted, label 3 alone is rejected (NaN > NaN).  Decision: [1].
"""
import json
import os
import sys

import numpy as np
import nibabel as nib

SH = (16, 28, 28)
CORNERS = [(12, 1, 22), (1, 22, 22), (12, 22, 1)]     # spurious 3x3x3 blobs
REAL2 = (1, 1, 1)                                      # the real 2x2x2 label-2 component


def box(a, z, y, x, v):
    a[z[0]:z[1], y[0]:y[1], x[0]:x[1]] = v


def body(rng, labels=(1, 2, 3), shape=SH):
    """Label 1 in the middle, label 2 next to it along x, label 3 next to it along y."""
    s = np.zeros(shape, np.int64)
    dz = int(rng.integers(0, 2))
    z = (4 + dz, 11 + dz) if shape[0] > 1 else (0, 1)
    y1, x1 = 7 + int(rng.integers(0, 2)), 7 + int(rng.integers(0, 2))
    if 1 in labels:
        box(s, z, (y1, 19), (x1, 17), 1)
    if 2 in labels:
        box(s, z, (y1, 19), (17, 21), 2)
    if 3 in labels:
        box(s, z, (19, 21), (x1, 21), 3)
    return s


def jitter(ref, rng, labels, p=0.08):
    """The prediction of an object: some of its boundary voxels flipped to background."""
    out = ref.copy()
    for lab in labels:
        m = ref == lab
        inner = m.copy()
        for ax in range(3):
            if ref.shape[ax] > 1:
                inner &= np.roll(m, 1, ax) & np.roll(m, -1, ax)
        edge = m & ~inner
        out[edge & (rng.random(ref.shape) < p)] = 0
    return out


def blob(a, corner, v, size=3):
    z, y, x = corner
    if a.shape[0] == 1:
        z = 0
        a[0, y:y + size, x:x + size] = v
    else:
        a[z:z + size, y:y + size, x:x + size] = v


def save(path, seg, dtype, spacing=(2.0, 0.8, 0.8)):
    aff = np.diag([spacing[2], spacing[1], spacing[0], 1.0])
    aff[:3, 3] = [-12.5, 4.0, 30.0]
    img = nib.Nifti1Image(seg.transpose(2, 1, 0).astype(dtype), aff)
    img.set_data_dtype(dtype)
    img.header.set_xyzt_units("mm")
    nib.save(img, path)


def folder(root, name, labels, extra=None):
    d = os.path.join(root, name)
    for sub in ("pred", "ref"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    ds = {"channel_names": {"0": "CT"}, "labels": labels, "numTraining": 5, "file_ending": ".nii.gz"}
    ds.update(extra or {})
    with open(os.path.join(d, "pred", "dataset.json"), "w") as f:
        json.dump(ds, f, indent=4)
    with open(os.path.join(d, "pred", "plans.json"), "w") as f:
        json.dump({"plans_name": "nnUNetPlans", "note": "a stub: determine-postprocessing does not need plans"}, f)
    return d


def pair(d, case, ref, pred, dtype=np.uint8):
    save(os.path.join(d, "ref", case + ".nii.gz"), ref, dtype)
    save(os.path.join(d, "pred", case + ".nii.gz"), pred, dtype)


def make_cv(root, rng):
    d = folder(root, "cv", {"background": 0, "liver": 1, "vessel": 2, "tumour": 3})
    for i in range(5):
        labs = (1, 2) if i == 3 else (1, 2, 3)
        ref = body(rng, labs)
        box(ref, (REAL2[0], REAL2[0] + 2), (REAL2[1], REAL2[1] + 2), (REAL2[2], REAL2[2] + 2), 2)
        pred = jitter(ref, rng, labs)
        for c in CORNERS:
            blob(pred, c, 1)
        pair(d, "cv%d" % i, ref, pred, np.int16 if i == 4 else np.uint8)


def make_accept(root, rng):
    d = folder(root, "accept", {"background": 0, "a": 1, "b": 2, "c": 3})
    for i in range(4):
        shape = (1, 28, 28) if i == 2 else SH
        ref = body(rng, (1, 2, 3), shape)
        pred = jitter(ref, rng, (1, 2, 3))
        blob(pred, CORNERS[0], 1)
        blob(pred, CORNERS[1], 3, 2)
        z = 5 if shape[0] > 1 else 0
        pred[z:z + 2 if shape[0] > 1 else 1, 21:23, 9:11] = 1   # touches label 3 (y 19:21), not label 1
        if i == 2:
            ys, xs = np.nonzero(ref[0] == 1)
            ref[0, ys.min() - 1, xs.min() - 1] = 1              # diagonal to the body: connected in 2D
            pred[0, ys.min() - 1, xs.min() - 1] = 1
            pred[0, ys.min(), xs.min()] = 1
        pair(d, "ac%d" % i, ref, pred)


def make_regions(root, rng):
    d = folder(root, "regions", {"background": 0, "whole": [1, 2, 3], "core": [2, 3], "enhancing": 3},
               {"regions_class_order": [1, 2, 3]})
    for i in range(3):
        ref = np.zeros(SH, np.int64)
        box(ref, (4, 12), (5, 21), (5, 21), 1)          # whole tumour
        box(ref, (5, 11), (8, 16), (8, 16), 2)          # core
        box(ref, (7, 9), (10, 14), (10, 13 + i), 3)     # enhancing inside the core
        pred = jitter(ref, rng, (1, 2, 3), 0.05)
        pred[5:7, 19:21, 18:21] = 2                     # a core island inside label 1
        blob(pred, CORNERS[i % 3], 3, 2)
        pair(d, "br%d" % i, ref, pred)


def make_ignore(root, rng):
    d = folder(root, "ignore", {"background": 0, "a": 1, "b": 2, "ignore": 3})
    for i in range(3):
        ref = body(rng, (1, 2))
        pred = jitter(ref, rng, (1, 2))
        for c in CORNERS[:2]:
            blob(ref, c, 3, 4)                           # not annotated here
            blob(pred, c, 1)
        pair(d, "ig%d" % i, ref, pred)


def make_single(root, rng):
    d = folder(root, "single", {"background": 0, "organ": 1})
    for i in range(4):
        ref = body(rng, (1,))
        pred = jitter(ref, rng, (1,))
        blob(pred, CORNERS[i % 3], 1, 2)
        pair(d, "sg%d" % i, ref, pred)


def make_nan(root, rng):
    d = folder(root, "nan", {"background": 0, "a": 1, "b": 2, "never": 3})
    for i in range(3):
        ref = body(rng, (1, 2))
        pred = jitter(ref, rng, (1, 2))
        blob(pred, CORNERS[i], 1)
        pair(d, "na%d" % i, ref, pred)


def main():
    root = sys.argv[1]
    rng = np.random.default_rng(1310)
    make_cv(root, rng)
    make_accept(root, rng)
    make_regions(root, rng)
    make_ignore(root, rng)
    make_single(root, rng)
    make_nan(root, rng)


if __name__ == "__main__":
    main()
