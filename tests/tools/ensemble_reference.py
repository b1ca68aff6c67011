#!/usr/bin/python3
"""ensemble_reference.py — inputs for nnp ensemble and nnU-Net's ensembling in numpy.

Usage:
  ensemble_reference.py make DIR --folders N --cases ID[,ID...] --shape K,Z,Y,X
                        [--regions 1,2,3] [--levels Q] [--seed S] [--ending .nii.gz]
  ensemble_reference.py check OUT DIR1 DIR2 [DIR...] [--probabilities] [--dataset-json F]

make: DIR/f0 .. DIR/f{N-1}, each with dataset.json (labels 0..K-1, or with
--regions the K regions [1..], [2..], ... and that regions_class_order), an
empty plans.json and CASE_probabilities<ending>: float32 (K, Z, Y, X) in
nnU-Net's array order (NIfTI voxel (i, j, k, t) = A[t, k, j, i]), affine
diag(0.8, 0.9, 2.5) with an offset.  --levels Q quantises the values to
multiples of 1/Q so that argmax ties and means of exactly 0.5 occur.

check: the reference of nnU-Net 2.8.1's ensemble_folders for the folders —
average_probabilities (the first file as float32, += each further file,
/= the number of files) and LabelManager.convert_probabilities_to_segmentation
(argmax over channels; regions: seg[mean[i] > 0.5] = regions_class_order[i])
— against OUT: the segmentation voxel for voxel (dtype uint8, affine and
shape of the first folder's file), with --probabilities the mean (max abs
difference printed, must be <= 1e-6).
"""
import argparse
import json
import os
import sys

import nibabel as nib
import numpy as np

SUFFIX = "_probabilities"


def load(path):
    img = nib.load(path)
    a = np.asanyarray(img.dataobj)
    a = a[..., None] if a.ndim == 3 else a
    return a.transpose(3, 2, 1, 0), img


def save(path, arr, affine):
    nib.save(nib.Nifti1Image(np.ascontiguousarray(arr.transpose(3, 2, 1, 0)), affine), path)


def make(a):
    K, Z, Y, X = [int(v) for v in a.shape.split(",")]
    rng = np.random.RandomState(a.seed)
    aff = np.diag([0.8, 0.9, 2.5, 1.0])
    aff[:3, 3] = [-12.5, 7.25, 30.0]
    labels = {"background": 0}
    ds = {"channel_names": {"0": "CT"}, "numTraining": 1, "file_ending": a.ending}
    if a.regions:
        order = [int(v) for v in a.regions.split(",")]
        assert len(order) == K
        for i, v in enumerate(order):
            labels["r%d" % v] = list(range(v, max(order) + 1))
        ds["regions_class_order"] = order
    else:
        for k in range(1, K):
            labels["c%d" % k] = k
    ds["labels"] = labels
    for f in range(a.folders):
        d = os.path.join(a.dir, "f%d" % f)
        os.makedirs(d, exist_ok=True)
        json.dump(ds, open(os.path.join(d, "dataset.json"), "w"), indent=2)
        open(os.path.join(d, "plans.json"), "w").write("{}\n")
        for case in a.cases.split(","):
            if a.regions:
                p = rng.rand(K, Z, Y, X)
            else:
                e = rng.gamma(1.0, size=(K, Z, Y, X))
                p = e / e.sum(0)
            if a.levels:
                p = np.round(p * a.levels) / a.levels
            save(os.path.join(d, case + SUFFIX + a.ending), p.astype(np.float32), aff)


def average_probabilities(files):
    avg = None
    for f in files:
        p = load(f)[0]
        if avg is None:
            avg = np.array(p, dtype=np.float32)
        else:
            avg += p
    avg /= len(files)
    return avg


def convert(avg, ds):
    if "regions_class_order" in ds:
        seg = np.zeros(avg.shape[1:], dtype=np.uint16)
        for i, c in enumerate(ds["regions_class_order"]):
            seg[avg[i] > 0.5] = c
        return seg
    return avg.argmax(0)


def check(a):
    ds = json.load(open(a.dataset_json or os.path.join(a.dirs[0], "dataset.json")))
    end = ds["file_ending"]
    cases = sorted(f[: -len(SUFFIX + end)] for f in os.listdir(a.dirs[0]) if f.endswith(SUFFIX + end))
    assert cases, "no cases"
    worst = 0.0
    for c in cases:
        files = [os.path.join(d, c + SUFFIX + end) for d in a.dirs]
        avg = average_probabilities(files)
        ref = convert(avg, ds)
        first = nib.load(files[0])
        out = nib.load(os.path.join(a.out, c + end))
        S = np.asanyarray(out.dataobj).transpose(2, 1, 0)
        assert S.dtype == np.uint8, S.dtype
        assert S.shape == ref.shape, (S.shape, ref.shape)
        assert np.allclose(out.affine, first.affine, atol=1e-6), (out.affine, first.affine)
        d = int((S != ref).sum())
        msg = "%s: segmentation differs in %d of %d voxels" % (c, d, S.size)
        if "regions_class_order" in ds:
            msg += " (labels %s, means of exactly 0.5: %d)" % (np.unique(S).tolist(), int((avg == 0.5).sum()))
        else:
            msg += ", argmax ties %d" % int(((avg == avg.max(0)).sum(0) > 1).sum())
        assert d == 0, msg
        if a.probabilities:
            P, pimg = load(os.path.join(a.out, c + SUFFIX + end))
            assert P.dtype == np.float32 and P.shape == avg.shape, (P.dtype, P.shape, avg.shape)
            assert np.allclose(pimg.affine, first.affine, atol=1e-6)
            m = float(np.abs(P - avg).max())
            worst = max(worst, m)
            msg += "; probabilities max abs diff %.3g (%d values not bit-identical)" % (m, int((P != avg).sum()))
            assert m <= 1e-6, msg
        print(msg)
    if a.probabilities:
        print("max abs diff over all cases: %.3g" % worst)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("dir")
    m.add_argument("--folders", type=int, default=2)
    m.add_argument("--cases", default="case_a")
    m.add_argument("--shape", required=True)
    m.add_argument("--regions")
    m.add_argument("--levels", type=int, default=0)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--ending", default=".nii.gz")
    c = sub.add_parser("check")
    c.add_argument("out")
    c.add_argument("dirs", nargs="+")
    c.add_argument("--probabilities", action="store_true")
    c.add_argument("--dataset-json")
    a = p.parse_args()
    make(a) if a.cmd == "make" else check(a)


if __name__ == "__main__":
    sys.exit(main())
