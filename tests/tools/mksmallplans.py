#!/usr/bin/python3
"""mksmallplans.py — a small plans variant for training tests and the demo.

  mksmallplans.py PREPROCESSED_DIR [--name nnUNetPlans_small] [--config 3d_small]
                  [--from 3d_fullres] [--patch 32,64,64] [--features 8,16,32,64]
                  [--batch 2]

Writes PREPROCESSED_DIR/<name>.json: the dataset's nnUNetPlans.json with one
extra configuration that inherits from --from (same spacing, normalisation,
data folder, so the preprocessed cases are reused) but has a smaller patch
and a narrower PlainConvUNet (one stage per feature entry; strides and kernels by nnU-Net's rule in
short: an axis is pooled while its spacing is under twice the finest and
its extent allows, kernels are 1 on axes still twice as coarse).
"""
import argparse, json, os, sys

ap = argparse.ArgumentParser()
ap.add_argument("pre")
ap.add_argument("--name", default="nnUNetPlans_small")
ap.add_argument("--config", default="3d_small")
ap.add_argument("--source", "--from", dest="source", default="3d_fullres")
ap.add_argument("--patch", default="32,64,64")
ap.add_argument("--features", default="8,16,32,64")
ap.add_argument("--batch", type=int, default=2)
a = ap.parse_args()

plans = json.load(open(os.path.join(a.pre, "nnUNetPlans.json")))
src = plans["configurations"][a.source]
patch = [int(x) for x in a.patch.split(",")]
feats = [int(x) for x in a.features.split(",")]
arch = json.loads(json.dumps(src["architecture"]))
kw = arch["arch_kwargs"]
nd = len(patch)
spacing = list(src["spacing"])
# nnU-Net's rule in short (get_pool_and_conv_props): an axis is pooled while its
# spacing is < 2x the smallest and its extent allows; kernels 1 on axes still
# much coarser than the finest
def props(sp):
    m = min(sp)
    return [3 if x / m < 2 else 1 for x in sp]
kernels, strides, cur, sp = [props(spacing)], [[1] * nd], list(patch), list(spacing)
for _ in feats[1:]:
    m = min(sp)
    st = [2 if x / m < 2 and c % 2 == 0 and c >= 8 else 1 for x, c in zip(sp, cur)]
    strides.append(st)
    cur = [c // s for c, s in zip(cur, st)]
    sp = [x * s for x, s in zip(sp, st)]
    kernels.append(props(sp))
kw.update(n_stages=len(feats), features_per_stage=feats, kernel_sizes=kernels, strides=strides,
          n_conv_per_stage=[2] * len(feats), n_conv_per_stage_decoder=[2] * (len(feats) - 1))
data_id = src.get("data_identifier", "nnUNetPlans_" + a.source)
plans["plans_name"] = a.name
plans["configurations"][a.config] = {"inherits_from": a.source, "data_identifier": data_id,
                                     "patch_size": patch, "batch_size": a.batch, "architecture": arch}
out = os.path.join(a.pre, a.name + ".json")
with open(out + ".tmp", "w") as f:
    json.dump(plans, f, indent=4)
os.replace(out + ".tmp", out)
print(out)
