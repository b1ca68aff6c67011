#!/usr/bin/python3
"""mkdataset.py — write a small, valid nnU-Net raw dataset (deterministic).

Usage: mkdataset.py [options] DIR
  DIR is the dataset folder (e.g. $RAW/Dataset990_Tiny); it is created.

Options:
  --cases N          training cases case_000 .. (default 4)
  --channels C       channels per case, files CASE_0000 .. (default 2)
  --shape X,Y,Z      NIfTI order (default 8,9,10)
  --spacing X,Y,Z    voxel size in mm (default 0.8,0.9,2.5)
  --labels K         label values 0..K-1, each present in every case (default 3)
  --image-dtype T    int16 | float32 | ... (numpy names, default float32)
  --label-dtype T    default uint8
  --ending E         .nii.gz (default) or .nii
  --test N           also N test cases in imagesTs/labelsTs
  --seed S           default 0
  --name NAME        dataset.json "name" (default: the folder name)

Images are smooth random intensities (no NaN/Inf), labels are blocks so that
every value 0..K-1 occurs; all files of a case share one qform/sform affine.
"""
import argparse
import json
import os

import numpy as np
import nibabel as nib


def affine(rng, sp):
    a = np.eye(4)
    a[:3, :3] = np.diag(sp)
    a[:3, 3] = rng.uniform(-50, 50, 3)
    return a


def save(arr, aff, path, dtype):
    img = nib.Nifti1Image(arr.astype(dtype), aff)
    img.header.set_data_dtype(dtype)
    img.header.set_qform(aff, code=1)
    img.header.set_sform(aff, code=1)
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, path)


def label_map(shape, k, rng):
    lab = np.zeros(shape, np.int64)
    x = shape[0]
    # a block per foreground label along x, position jittered
    for v in range(1, k):
        x0 = (v * x) // k
        x1 = max(x0 + 1, ((v + 1) * x) // k - int(rng.integers(0, 2)))
        lab[x0:x1, 1:-1, 1:-1] = v
    return lab


def write_case(root, split, cid, a, rng):
    shape = tuple(a.shape)
    aff = affine(rng, a.spacing)
    for c in range(a.channels):
        img = rng.normal(100.0 * (c + 1), 10.0, shape)
        save(img, aff, os.path.join(root, "images" + split, "%s_%04d%s" % (cid, c, a.ending)),
             np.dtype(a.image_dtype))
    save(label_map(shape, a.labels, rng), aff,
         os.path.join(root, "labels" + split, cid + a.ending), np.dtype(a.label_dtype))


def main():
    p = argparse.ArgumentParser(description="write a small valid nnU-Net raw dataset")
    p.add_argument("dir")
    p.add_argument("--cases", type=int, default=4)
    p.add_argument("--channels", type=int, default=2)
    p.add_argument("--shape", default="8,9,10")
    p.add_argument("--spacing", default="0.8,0.9,2.5")
    p.add_argument("--labels", type=int, default=3)
    p.add_argument("--image-dtype", default="float32")
    p.add_argument("--label-dtype", default="uint8")
    p.add_argument("--ending", default=".nii.gz")
    p.add_argument("--test", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default=None)
    a = p.parse_args()
    a.shape = [int(s) for s in a.shape.split(",")]
    a.spacing = [float(s) for s in a.spacing.split(",")]
    rng = np.random.default_rng(a.seed)
    for d in ("imagesTr", "labelsTr") + (("imagesTs", "labelsTs") if a.test else ()):
        os.makedirs(os.path.join(a.dir, d), exist_ok=True)
    for i in range(a.cases):
        write_case(a.dir, "Tr", "case_%03d" % i, a, rng)
    for i in range(a.test):
        write_case(a.dir, "Ts", "test_%03d" % i, a, rng)
    names = ["CT", "T2", "FLAIR", "T1"]
    dj = {
        "channel_names": {str(c): names[c % len(names)] for c in range(a.channels)},
        "labels": dict([("background", 0)] + [("label%d" % v, v) for v in range(1, a.labels)]),
        "numTraining": a.cases,
        "file_ending": a.ending,
        "name": a.name or os.path.basename(os.path.normpath(a.dir)),
    }
    with open(os.path.join(a.dir, "dataset.json"), "w") as f:
        json.dump(dj, f, indent=4)


if __name__ == "__main__":
    main()
