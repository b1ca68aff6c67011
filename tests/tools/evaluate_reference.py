#!/usr/bin/python3
"""evaluate_reference.py — an independent numpy/nibabel implementation of
nnU-Net's compute_metrics_on_folder (nnunetv2/evaluation/evaluate_predictions.py,
nnunet-facts §10.2), for checking nnp evaluate.

Usage:
  evaluate_reference.py PRED_DIR REF_DIR (--dataset-json F | -l L [L ...]
        [--ignore-label L] [--file-ending E]) -o OUT [--chill] [--hd95] [--nsd MM]

It follows nnU-Net step by step: the label manager's foreground labels or
regions, files = sorted files of PRED_DIR with the ending, the reference of
the same name, masks `seg == label` (or `isin` for a region), the ignore mask
from the reference, np.sum counts (numpy ints), Dice/IoU NaN when TP+FP+FN
is 0, np.nanmean over cases, np.mean over classes skipping key 0, the numpy
types converted as recursive_fix_for_json_export does, and save_json's
json.dump(sort_keys=True, indent=4) without a trailing newline.

--hd95 / --nsd add the metrics "HD95" / "NSD" of docs/evaluation.md, computed
with scipy: surfaces = mask minus its binary_erosion with the full 3x3(x3)
structure (border_value 0), distances = distance_transform_edt of the other
surface's complement with sampling = reference spacing (z, y, x), HD95 = max
of the two directed np.percentile(., 95), NSD = fraction of both surfaces
within MM; both empty: NaN, NaN; one empty: inf, 0.
"""
import argparse
import json
import os
import sys

import numpy as np
import nibabel as nib
from scipy import ndimage


def die(msg):
    sys.stderr.write("evaluate_reference.py: %s\n" % msg)
    sys.exit(1)


# ---- labels (LabelManager) ----

def classes_from_dataset(ds):
    labels = ds["labels"]
    has_regions = any(isinstance(v, (list, tuple)) and len(v) > 1 for v in labels.values())
    ignore = labels.get("ignore")
    all_labels = []
    for k, v in labels.items():
        if k == "ignore":
            continue
        all_labels.extend(int(i) for i in v) if isinstance(v, (list, tuple)) else all_labels.append(int(v))
    all_labels = sorted(int(i) for i in np.unique(all_labels))
    if ignore is not None:
        assert isinstance(ignore, int) and ignore == max(all_labels) + 1
    if not has_regions:
        return [i for i in all_labels if i != 0], ignore, ds["file_ending"]
    regions = []
    for k, v in labels.items():
        if k == "ignore":
            continue
        if (np.isscalar(v) and v == 0) or (isinstance(v, (list, tuple)) and len(np.unique(v)) == 1
                                          and np.unique(v)[0] == 0):
            continue
        regions.append(tuple(v) if isinstance(v, list) else v)
    assert len(ds["regions_class_order"]) == len(regions)
    return regions, ignore, ds["file_ending"]


def key_of(r):
    return str(r)


def to_mask(seg, r):
    if np.isscalar(r):
        return seg == r
    m = np.zeros_like(seg, dtype=bool)
    for v in r:
        m[seg == v] = True
    return m


# ---- files ----

def subfiles(folder, suffix):
    return sorted(e.name for e in os.scandir(folder) if e.is_file() and e.name.endswith(suffix))


def read_seg(path):
    img = nib.load(path)
    a = np.asanyarray(img.dataobj)
    if a.ndim == 2:
        a = a[:, :, None]
    assert a.ndim == 3, path
    spacing = [float(z) for z in img.header.get_zooms()[:3]]
    while len(spacing) < 3:
        spacing.append(1.0)
    return a.transpose(2, 1, 0), [abs(spacing[2]), abs(spacing[1]), abs(spacing[0])]


# ---- surface distances (beyond nnU-Net) ----

def surface(mask, is2d):
    if is2d:
        m = mask[0]
        b = m & ~ndimage.binary_erosion(m, structure=ndimage.generate_binary_structure(2, 2), border_value=0)
        return b[None]
    return mask & ~ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(3, 3),
                                          border_value=0)


def directed(b_from, b_to, spacing, is2d):
    if is2d:
        dt = ndimage.distance_transform_edt(~b_to[0], sampling=spacing[1:])[None]
    else:
        dt = ndimage.distance_transform_edt(~b_to, sampling=spacing)
    return dt[b_from]


def distances(mp, mr, spacing, tol):
    if not mp.any() and not mr.any():
        return float("nan"), float("nan")
    if not mp.any() or not mr.any():
        return float("inf"), 0.0
    is2d = mp.shape[0] == 1
    bp, br = surface(mp, is2d), surface(mr, is2d)
    dpr, drp = directed(bp, br, spacing, is2d), directed(br, bp, spacing, is2d)
    hd = max(np.percentile(dpr, 95), np.percentile(drp, 95))
    nsd = (np.sum(dpr <= tol) + np.sum(drp <= tol)) / (len(dpr) + len(drp)) if tol else float("nan")
    return float(hd), float(nsd)


# ---- compute_metrics / compute_metrics_on_folder ----

def compute_metrics(ref_file, pred_file, classes, ignore, opts):
    seg_ref, spacing = read_seg(ref_file)
    seg_pred, _ = read_seg(pred_file)
    assert seg_ref.shape == seg_pred.shape, (ref_file, pred_file)
    ignore_mask = seg_ref == ignore if ignore is not None else None
    use = np.ones_like(seg_ref, dtype=bool) if ignore_mask is None else ~ignore_mask
    res = {"reference_file": ref_file, "prediction_file": pred_file, "metrics": {}}
    for r in classes:
        mr, mp = to_mask(seg_ref, r), to_mask(seg_pred, r)
        tp = np.sum((mr & mp) & use)
        fp = np.sum(((~mr) & mp) & use)
        fn = np.sum((mr & (~mp)) & use)
        tn = np.sum(((~mr) & (~mp)) & use)
        m = {}
        if tp + fp + fn == 0:
            m["Dice"] = np.nan
            m["IoU"] = np.nan
        else:
            m["Dice"] = 2 * tp / (2 * tp + fp + fn)
            m["IoU"] = tp / (tp + fp + fn)
        m["FP"], m["TP"], m["FN"], m["TN"] = fp, tp, fn, tn
        m["n_pred"] = fp + tp
        m["n_ref"] = fn + tp
        if opts.hd95 or opts.nsd is not None:
            hd, nsd = distances(mp & use, mr & use, spacing, opts.nsd)
            if opts.hd95:
                m["HD95"] = hd
            if opts.nsd is not None:
                m["NSD"] = nsd
        res["metrics"][r] = m
    return res


def fix_types(d):
    """recursive_fix_for_json_export: numpy scalars -> Python int/float."""
    for k in list(d.keys()):
        v = d[k]
        if isinstance(v, dict):
            fix_types(v)
        elif isinstance(v, (np.bool_,)):
            d[k] = bool(v)
        elif isinstance(v, (np.int64, np.int32, np.int8, np.uint8)):
            d[k] = int(v)
        elif isinstance(v, (np.float64, np.float32, np.float16)):
            d[k] = float(v)


def evaluate(pred_dir, ref_dir, classes, ignore, ending, opts):
    files_pred = subfiles(pred_dir, ending)
    if not files_pred:
        die("no predictions")
    if not opts.chill:
        missing = [f for f in subfiles(ref_dir, ending) if not os.path.isfile(os.path.join(pred_dir, f))]
        if missing:
            die("references without prediction: %s" % missing)
    results = [compute_metrics(os.path.join(ref_dir, f), os.path.join(pred_dir, f), classes, ignore, opts)
               for f in files_pred]
    metric_list = list(results[0]["metrics"][classes[0]].keys())
    means = {}
    for r in classes:
        means[r] = {m: np.nanmean([i["metrics"][r][m] for i in results]) for m in metric_list}
    fg = {}
    for m in metric_list:
        values = [means[k][m] for k in means.keys() if not (k == 0 or k == "0")]
        fg[m] = np.mean(values)
    for i in results:
        fix_types(i)
    fix_types(means)
    fix_types(fg)
    out = {
        "metric_per_case": [dict(i, metrics={key_of(k): v for k, v in i["metrics"].items()}) for i in results],
        "mean": {key_of(k): v for k, v in means.items()},
        "foreground_mean": fg,
    }
    with open(opts.output, "w") as f:
        json.dump(out, f, sort_keys=True, indent=4)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pred")
    ap.add_argument("ref")
    ap.add_argument("--dataset-json")
    ap.add_argument("-l", type=int, nargs="+")
    ap.add_argument("--ignore-label", type=int)
    ap.add_argument("--file-ending", default=".nii.gz")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--chill", action="store_true")
    ap.add_argument("--hd95", action="store_true")
    ap.add_argument("--nsd", type=float)
    opts = ap.parse_args()
    if opts.dataset_json:
        with open(opts.dataset_json) as f:
            classes, ignore, ending = classes_from_dataset(json.load(f))
    else:
        classes, ignore, ending = list(dict.fromkeys(opts.l)), opts.ignore_label, opts.file_ending
    evaluate(opts.pred, opts.ref, classes, ignore, ending, opts)


if __name__ == "__main__":
    main()
