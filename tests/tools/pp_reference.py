#!/usr/bin/python3
"""pp_reference.py — nnU-Net's remove_all_but_largest_component_from_segmentation
in numpy/scipy (nnunet-facts 10.1), for t1300-postprocess.t.

  pp_reference.py IN.nii.gz OUT.nii.gz [--joint] [--per-class] [--labels 1,2]

Full connectivity (scipy.ndimage.label with a 3x3x3 structure of ones),
every component of the largest size kept, the rest of the mask set to 0;
--joint: all labels as one mask, then --per-class: each label alone.
"""
import argparse
import nibabel as nib
import numpy as np
from scipy import ndimage

ap = argparse.ArgumentParser()
ap.add_argument("inp"); ap.add_argument("out")
ap.add_argument("--joint", action="store_true"); ap.add_argument("--per-class", action="store_true")
ap.add_argument("--labels")
a = ap.parse_args()
img = nib.load(a.inp)
seg = np.asanyarray(img.dataobj).copy()
labels = [int(x) for x in a.labels.split(",")] if a.labels else sorted(int(v) for v in np.unique(seg) if v != 0)


def keep_largest(seg, labs):
    mask = np.isin(seg, labs)
    lab, n = ndimage.label(mask, structure=np.ones((3,) * seg.ndim, bool))
    if n == 0:
        return seg
    sizes = np.bincount(lab.ravel())[1:]
    keep = np.isin(lab, 1 + np.flatnonzero(sizes == sizes.max()))
    out = seg.copy()
    out[mask & ~keep] = 0
    return out


if a.joint and labels:
    seg = keep_largest(seg, labels)
if a.per_class:
    for l in labels:
        seg = keep_largest(seg, [l])
nib.save(nib.Nifti1Image(seg, img.affine, img.header), a.out)
