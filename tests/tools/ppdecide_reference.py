#!/usr/bin/python3
"""ppdecide_reference.py — an independent numpy/scipy/nibabel port of nnU-Net's
determine_postprocessing (nnunetv2/postprocessing/remove_connected_components.py,
nnunet-facts §10.1), for checking nnp determine-postprocessing.

Usage: ppdecide_reference.py PRED_DIR REF_DIR [--dataset-json F]

It works like nnU-Net, in PRED_DIR: summary.json when missing (the metrics of
evaluate_reference.py, itself a port of compute_metrics_on_folder with
chill=True), the temporary folders postprocessed/temp/keep_largest_fg and
keep_largest_perClassOrRegion(_currentBest) holding NIfTI files written with
nibabel, the decisions with Python's comparisons (so NaN > x and NaN < x are
False), the final source copied to postprocessed/, postprocessing.json saved
with json.dump(sort_keys=True, indent=4) and the temp folder removed.  The
component rule is scipy.ndimage.label with a 3x3x3 structure of ones (full
connectivity), keeping every component of the largest size.  nnU-Net's
postprocessing.pkl is not written.
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np
import nibabel as nib
from scipy import ndimage

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import evaluate_reference as ER  # noqa: E402

FN_NAME = "remove_all_but_largest_component_from_segmentation"


def remove_all_but_largest_component_from_segmentation(seg, labels_or_regions, background_label=0):
    mask = np.zeros_like(seg, dtype=bool)
    if not isinstance(labels_or_regions, list):
        labels_or_regions = [labels_or_regions]
    for l_or_r in labels_or_regions:
        mask |= ER.to_mask(seg, l_or_r)
    lab, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    sizes = np.bincount(lab.ravel())[1:]
    keep_ids = [i + 1 for i, s in enumerate(sizes) if s == sizes.max()] if n else []
    keep = np.isin(lab, keep_ids)
    ret = np.copy(seg)
    ret[mask & ~keep] = background_label
    return ret


def load_postprocess_save(src, dst, kwargs):
    img = nib.load(src)
    seg = np.asanyarray(img.dataobj)
    seg = remove_all_but_largest_component_from_segmentation(seg, **kwargs)
    nib.save(nib.Nifti1Image(seg, img.affine, img.header), dst)


def key_to_label_or_region(key):
    try:
        return int(key)
    except ValueError:
        key = key.replace("(", "").replace(")", "")
        return tuple(int(i) for i in key.split(",") if len(i) > 0)


def load_summary_json(path):
    with open(path) as f:
        r = json.load(f)
    r["mean"] = {key_to_label_or_region(k): v for k, v in r["mean"].items()}
    return r


def foreground_labels(ds):
    vals = []
    for k, v in ds["labels"].items():
        if k == "ignore":
            continue
        vals.extend(int(i) for i in v) if isinstance(v, (list, tuple)) else vals.append(int(v))
    return [int(i) for i in np.unique(vals) if i != 0]


def evaluate(pred, ref, classes, ignore, ending, out):
    opts = argparse.Namespace(chill=True, output=out, hd95=False, nsd=None)
    ER.evaluate(pred, ref, classes, ignore, ending, opts)


def tojson(o):
    if isinstance(o, tuple):
        return [tojson(i) for i in o]
    if isinstance(o, list):
        return [tojson(i) for i in o]
    if isinstance(o, dict):
        return {k: tojson(v) for k, v in o.items()}
    return o


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pred")
    ap.add_argument("ref")
    ap.add_argument("--dataset-json")
    a = ap.parse_args()
    folder_predictions, folder_ref = a.pred, a.ref
    with open(a.dataset_json or os.path.join(folder_predictions, "dataset.json")) as f:
        ds = json.load(f)
    classes, ignore, ending = ER.classes_from_dataset(ds)
    output_folder = os.path.join(folder_predictions, "postprocessed")
    predicted_files = ER.subfiles(folder_predictions, ending)

    if not os.path.isfile(os.path.join(folder_predictions, "summary.json")):
        evaluate(folder_predictions, folder_ref, classes, ignore, ending,
                 os.path.join(folder_predictions, "summary.json"))

    pp_kwargs = []
    decisions = []
    # step 1: all foreground labels as one object
    out_here = os.path.join(output_folder, "temp", "keep_largest_fg")
    os.makedirs(out_here, exist_ok=True)
    kwargs = {"labels_or_regions": foreground_labels(ds)}
    for i in predicted_files:
        load_postprocess_save(os.path.join(folder_predictions, i), os.path.join(out_here, i), kwargs)
    evaluate(out_here, folder_ref, classes, ignore, ending, os.path.join(out_here, "summary.json"))
    base = load_summary_json(os.path.join(folder_predictions, "summary.json"))
    pp = load_summary_json(os.path.join(out_here, "summary.json"))
    do_this = pp["foreground_mean"]["Dice"] > base["foreground_mean"]["Dice"]
    if do_this:
        for class_id in pp["mean"].keys():
            if pp["mean"][class_id]["Dice"] < base["mean"][class_id]["Dice"]:
                do_this = False
                break
    decisions.append(("all", do_this))
    if do_this:
        source = out_here
        pp_kwargs.append(kwargs)
    else:
        source = folder_predictions

    # step 2: each label or region
    if len(classes) > 1:
        for label_or_region in classes:
            kwargs = {"labels_or_regions": label_or_region}
            out_here = os.path.join(output_folder, "temp", "keep_largest_perClassOrRegion")
            os.makedirs(out_here, exist_ok=True)
            for i in predicted_files:
                load_postprocess_save(os.path.join(source, i), os.path.join(out_here, i), kwargs)
            evaluate(out_here, folder_ref, classes, ignore, ending, os.path.join(out_here, "summary.json"))
            base = load_summary_json(os.path.join(source, "summary.json"))
            pp = load_summary_json(os.path.join(out_here, "summary.json"))
            do_this = pp["mean"][label_or_region]["Dice"] > base["mean"][label_or_region]["Dice"]
            decisions.append((str(label_or_region), do_this))
            if do_this:
                best = os.path.join(output_folder, "temp", "keep_largest_perClassOrRegion_currentBest")
                if os.path.isdir(best):
                    shutil.rmtree(best)
                shutil.move(out_here, best)
                source = best
                pp_kwargs.append(kwargs)

    for i in ER.subfiles(source, ""):
        shutil.copy(os.path.join(source, i), os.path.join(output_folder, i))
    base = load_summary_json(os.path.join(folder_predictions, "summary.json"))
    final = load_summary_json(os.path.join(output_folder, "summary.json"))
    tmp = {
        "input_folder": {i: base[i] for i in ["foreground_mean", "mean"]},
        "postprocessed": {i: final[i] for i in ["foreground_mean", "mean"]},
        "postprocessing_fns": [FN_NAME for _ in pp_kwargs],
        "postprocessing_kwargs": pp_kwargs,
    }
    tmp["input_folder"]["mean"] = {str(k): v for k, v in tmp["input_folder"]["mean"].items()}
    tmp["postprocessed"]["mean"] = {str(k): v for k, v in tmp["postprocessed"]["mean"].items()}
    with open(os.path.join(folder_predictions, "postprocessing.json"), "w") as f:
        json.dump(tojson(tmp), f, sort_keys=True, indent=4)
    shutil.rmtree(os.path.join(output_folder, "temp"))
    for name, d in decisions:
        print("%s %s" % (name, "accepted" if d else "rejected"))


if __name__ == "__main__":
    main()
