#!/usr/bin/python3
"""mkfingerprint.py — synthetic nnU-Net preprocessed dataset folders for
testing nnp-plan: DIR/dataset.json + DIR/dataset_fingerprint.json, the
fingerprint written like nnU-Net (json.dump, sort_keys=True, indent 4).

  mkfingerprint.py KIND SEED DIR [KIND SEED DIR ...]

KIND: iso, aniso (z spacing > 3x in-plane, few slices), ct (large CT-like,
gets a 3d_lowres), twoch (2 channels, MR names, cropped), tiny (16^3),
huge (~600^3), labels105, twod (2D data: spacing 999, shape 1), tie
(equal spacings/shapes on two axes), ignore (regions + ignore label),
random (anything).  Deterministic for a given KIND and SEED.
"""
import json
import os
import sys

import numpy as np


def intensity(rs):
    lo = float(np.float32(rs.uniform(-1000, 0)))
    hi = float(np.float32(rs.uniform(100, 3000)))
    return {"max": hi, "mean": float(np.float32((lo + hi) / 2)), "median": float(np.float32(lo / 3 + hi / 2)),
            "min": lo, "percentile_00_5": float(np.float32(lo * 0.9)),
            "percentile_99_5": float(np.float32(hi * 0.9)), "std": float(np.float32(rs.uniform(1, 300)))}


def f32(x):
    return float(np.float32(x))


def make(kind, seed):
    rs = np.random.RandomState(seed)
    nch, labels, names = 1, {"background": 0, "a": 1, "b": 2}, ["CT"]
    rel = float(rs.uniform(0.8, 1.0))
    ending = ".nii.gz"
    extra = {}
    if kind == 'iso':
        n = int(rs.randint(5, 40))
        sp = [[1.0, 1.0, 1.0]] * n
        sh = [[int(rs.randint(30, 200)) for _ in range(3)] for _ in range(n)]
    elif kind == 'aniso':
        n = int(rs.randint(5, 30))
        sp = [[f32(rs.choice([5.0, 6.5, 8.0, 10.0])), f32(v), f32(v)] for v in rs.uniform(0.6, 1.6, n)]
        sh = [[int(rs.randint(8, 20)), int(rs.randint(180, 260)), int(rs.randint(180, 260))] for _ in range(n)]
        names = ["MRI"]
        ending = ".nii"
    elif kind == 'ct':
        n = int(rs.randint(20, 60))
        sp = [[f32(rs.choice([1.0, 2.5, 5.0])), f32(v), f32(v)] for v in rs.uniform(0.6, 0.95, n)]
        sh = [[int(rs.randint(60, 300)), 512, 512] for _ in range(n)]
    elif kind == 'twoch':
        n = int(rs.randint(8, 30))
        nch, names = 2, ["T1", "T2"]
        rel = float(rs.uniform(0.2, 0.7))
        sp = [[1.0, 1.0, 1.0]] * n
        sh = [[int(rs.randint(40, 70)) for _ in range(3)] for _ in range(n)]
        extra["overwrite_image_reader_writer"] = "NibabelIO"
    elif kind == 'tiny':
        n = int(rs.randint(3, 12))
        sp = [[1.0, 1.0, 1.0]] * n
        sh = [[16, 16, 16]] * n
    elif kind == 'huge':
        n = int(rs.randint(3, 12))
        sp = [[f32(rs.uniform(0.5, 1.0))] * 3 for _ in range(n)]
        sh = [[int(rs.randint(580, 620)) for _ in range(3)] for _ in range(n)]
    elif kind == 'labels105':
        n = int(rs.randint(5, 20))
        labels = {"background": 0}
        labels.update({"l%03d" % i: i for i in range(1, 105)})
        sp = [[f32(rs.uniform(1, 3)), 0.8, 0.8] for _ in range(n)]
        sh = [[int(rs.randint(80, 300)), int(rs.randint(300, 512)), int(rs.randint(300, 512))] for _ in range(n)]
    elif kind == 'twod':
        n = int(rs.randint(10, 100))
        nch, names = 3, ["R", "G", "B"]
        ending = ".png"
        sp = [[999.0, 1.0, 1.0]] * n
        sh = [[1, int(rs.randint(200, 1200)), int(rs.randint(200, 1200))] for _ in range(n)]
    elif kind == 'tie':
        n = 2 * int(rs.randint(2, 10))
        sp = [[f32(rs.uniform(1, 2))] * 2 + [f32(rs.uniform(0.5, 1))] for _ in range(n)]
        s = int(rs.randint(50, 200))
        sh = [[s, s, int(rs.randint(50, 200))] for _ in range(n)]
    elif kind == 'ignore':
        n = int(rs.randint(5, 20))
        nch, names = 4, ["FLAIR", "t1", "zscore", "noNorm"]
        labels = {"background": 0, "whole": [1, 2, 3], "core": [2, 3], "enh": 3, "ignore": 4}
        extra["regions_class_order"] = [1, 2, 3]
        rel = float(rs.uniform(0.3, 0.74))
        sp = [[1.0, 1.0, 1.0]] * n
        sh = [[int(rs.randint(120, 160)), int(rs.randint(160, 200)), int(rs.randint(130, 170))]
              for _ in range(n)]
    else:  # random
        n = int(rs.randint(1, 50))
        nch = int(rs.randint(1, 4))
        names = [str(rs.choice(["CT", "ct", "MRI", "noNorm", "rescale_to_0_1", "T2"])) for _ in range(nch)]
        labels = {"background": 0}
        labels.update({"c%d" % i: i for i in range(1, int(rs.randint(2, 12)))})
        base = rs.uniform(0.3, 5, 3)
        sp = [[f32(b * rs.uniform(0.8, 1.25)) for b in base] for _ in range(n)]
        bs = rs.randint(10, 400, 3)
        sh = [[max(1, int(b * rs.uniform(0.5, 1.5))) for b in bs] for _ in range(n)]
        rel = float(rs.uniform(0.1, 1))
        ending = str(rs.choice([".nii.gz", ".nii", ".mha", ".nrrd"]))
    dj = {"channel_names": {str(i): names[i] for i in range(nch)}, "labels": labels,
          "numTraining": n, "file_ending": ending}
    dj.update(extra)
    fp = {"foreground_intensity_properties_per_channel": {str(i): intensity(rs) for i in range(nch)},
          "median_relative_size_after_cropping": rel, "shapes_after_crop": sh, "spacings": sp}
    return dj, fp


def main():
    a = sys.argv[1:]
    if not a or len(a) % 3:
        sys.exit(__doc__)
    for i in range(0, len(a), 3):
        kind, seed, d = a[i], int(a[i + 1]), a[i + 2]
        dj, fp = make(kind, seed)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, 'dataset.json'), 'w') as f:
            json.dump(dj, f, indent=4, sort_keys=False)
        with open(os.path.join(d, 'dataset_fingerprint.json'), 'w') as f:
            json.dump(fp, f, indent=4, sort_keys=True)


if __name__ == '__main__':
    main()
