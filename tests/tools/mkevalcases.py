#!/usr/bin/python3
"""mkevalcases.py — synthetic prediction/reference folders for nnp evaluate
(tests/t/t1100-evaluate.t).  Deterministic.

Usage: mkevalcases.py OUT

Writes OUT/{labels,ignore,regions,many}/{pred,ref}/*.nii.gz and a
dataset.json in the first three:
  labels   labels 1, 2, 3; c00 all present; c01 (int16) label 3 absent in both
           (NaN), label 2 absent in the prediction only, a value 7 in the
           prediction that dataset.json does not name; c02 (uint16) anisotropic
           spacing, label 1 absent in the reference only; c03 a 2D file (z = 1,
           float32 holding integers); c04 int32, 3 mm slices
  ignore   labels 1, 2 and "ignore": 3 painted into the references
  regions  regions (1, 2, 3), (2, 3), 3, (3,) and "ignore": 4
  many     20 small cases, labels 1 and 2 (for the simple form -l 1 2), so
           that means run over more than 8 cases (numpy's pairwise blocks)
"""
import json
import os
import sys

import numpy as np
import nibabel as nib


def blob(shape, rng, n=2):
    """Union of n random ellipsoids (z, y, x)."""
    zz, yy, xx = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    m = np.zeros(shape, bool)
    for _ in range(n):
        c = [rng.uniform(0.25 * s, 0.75 * s) for s in shape]
        r = [max(1.0, rng.uniform(0.12 * s, 0.3 * s)) for s in shape]
        m |= ((zz - c[0]) / r[0]) ** 2 + ((yy - c[1]) / r[1]) ** 2 + ((xx - c[2]) / r[2]) ** 2 <= 1
    return m


def perturb(seg, rng, labels, p=0.25):
    """A plausible prediction: shift each label by up to one voxel, flip some boundary voxels."""
    out = np.zeros_like(seg)
    for lab in labels:
        m = seg == lab
        if not m.any():
            continue
        shift = [int(rng.integers(-1, 2)) if s > 1 else 0 for s in seg.shape]
        m = np.roll(m, shift, axis=(0, 1, 2))
        noise = rng.random(seg.shape) < p
        edge = m ^ np.roll(m, 1, axis=2)
        m = m ^ (edge & noise)
        out[m] = lab
    return out


def paint(shape, rng, labels):
    seg = np.zeros(shape, np.int64)
    for lab in labels:
        seg[blob(shape, rng, n=2)] = lab
    return seg


def save(path, seg_zyx, dtype, spacing_zyx):
    aff = np.diag([spacing_zyx[2], spacing_zyx[1], spacing_zyx[0], 1.0])
    aff[:3, 3] = [-10.0, 5.0, 2.5]
    img = nib.Nifti1Image(seg_zyx.transpose(2, 1, 0).astype(dtype), aff)
    img.set_data_dtype(dtype)
    img.header.set_xyzt_units("mm")
    nib.save(img, path)


def folder(root, name, dataset=None):
    d = os.path.join(root, name)
    for sub in ("pred", "ref"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    if dataset is not None:
        with open(os.path.join(d, "dataset.json"), "w") as f:
            json.dump(dataset, f, indent=4)
    return d


def pair(d, case, ref, pred, dtype, spacing):
    save(os.path.join(d, "ref", case + ".nii.gz"), ref, dtype, spacing)
    save(os.path.join(d, "pred", case + ".nii.gz"), pred, dtype, spacing)


def make_labels(root, rng):
    d = folder(root, "labels", {
        "channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1, "spleen": 2, "lesion": 3},
        "numTraining": 5, "file_ending": ".nii.gz"})
    sh = (20, 22, 24)
    ref = paint(sh, rng, [1, 2, 3])
    pair(d, "c00", ref, perturb(ref, rng, [1, 2, 3]), np.uint8, (2.0, 1.0, 1.0))
    ref = paint(sh, rng, [1, 2])
    pred = perturb(ref, rng, [1])
    pred[0, 0, :5] = 7
    pair(d, "c01", ref, pred, np.int16, (1.5, 0.8, 0.8))
    ref = paint(sh, rng, [2, 3])
    pred = perturb(ref, rng, [2, 3])
    pred[blob(sh, rng, 1) & (ref == 0)] = 1
    pair(d, "c02", ref, pred, np.uint16, (3.3, 0.7, 1.1))
    ref = paint((1, 30, 28), rng, [1, 2, 3])
    pair(d, "c03", ref, perturb(ref, rng, [1, 2, 3]), np.float32, (1.0, 0.9, 0.6))
    ref = paint(sh, rng, [1, 3])
    pair(d, "c04", ref, perturb(ref, rng, [1, 3]), np.int32, (3.0, 0.75, 0.75))


def make_ignore(root, rng):
    d = folder(root, "ignore", {
        "channel_names": {"0": "MR"}, "labels": {"background": 0, "a": 1, "b": 2, "ignore": 3},
        "numTraining": 3, "file_ending": ".nii.gz"})
    sh = (16, 20, 18)
    for i in range(3):
        ref = paint(sh, rng, [1, 2])
        pred = perturb(ref, rng, [1, 2])
        ign = blob(sh, rng, 1)
        ref[ign] = 3
        pair(d, "ig%d" % i, ref, pred, np.uint8, (1.2, 1.0, 0.9))


def make_regions(root, rng):
    d = folder(root, "regions", {
        "channel_names": {"0": "FLAIR"},
        "labels": {"background": 0, "whole_tumor": [1, 2, 3], "tumor_core": [2, 3], "enhancing": 3,
                   "enhancing_again": [3], "ignore": 4},
        "regions_class_order": [1, 2, 3, 3], "numTraining": 3, "file_ending": ".nii.gz"})
    sh = (18, 20, 22)
    for i in range(3):
        ref = np.zeros(sh, np.int64)
        whole = blob(sh, rng, 2)
        ref[whole] = 1
        ref[whole & blob(sh, rng, 2)] = 2
        if i != 1:
            ref[whole & blob(sh, rng, 1)] = 3
        pred = perturb(ref, rng, [1, 2, 3])
        if i == 2:
            ref[blob(sh, rng, 1) & (ref == 0)] = 4
        pair(d, "br%d" % i, ref, pred, np.uint8, (1.0, 1.0, 1.0) if i else (2.5, 0.9, 0.9))


def make_many(root, rng):
    d = folder(root, "many")
    sh = (6, 8, 7)
    for i in range(20):
        ref = paint(sh, rng, [1, 2])
        pred = perturb(ref, rng, [1, 2], p=0.5)
        if i % 7 == 3:
            ref[ref == 2] = 0
            pred[pred == 2] = 0
        pair(d, "m%02d" % i, ref, pred, np.uint8, (1.0, 1.0, 1.0))


def main():
    root = sys.argv[1]
    rng = np.random.default_rng(1100)
    make_labels(root, rng)
    make_ignore(root, rng)
    make_regions(root, rng)
    make_many(root, rng)


if __name__ == "__main__":
    main()
