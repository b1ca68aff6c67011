#!/usr/bin/python3
"""sample_reference.py — check an 'nnp sample' stream against nnU-Net's data
loader logic re-run in numpy (nnunetv2 2.8.1 nnUNetDataLoader.get_bbox,
get_do_oversample, crop_and_pad_nd; compute_initial_patch_size.get_patch_size;
the trainer's configure_rotation_dummyDA_mirroring_and_inital_patch_size),
with one np.random.RandomState(seed) in the loader's draw order.

Usage: sample_reference.py PREPROCESSED_DIR CONFIG FOLD SPLIT SEED ITERATIONS STREAM [BATCH]
       sample_reference.py initial P0 P1 [P2]
Prints "samples N forced F fg_forced A fg_random B" and exits 1 on the first mismatch.
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nnpframe  # noqa: E402


def rot_x(a):
    return np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])


def rot_y(a):
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def rot_z(a):
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])


def rotate_coords_3d(coords, ax, ay, az):
    m = np.identity(3)
    m = np.dot(m, rot_x(ax))
    m = np.dot(m, rot_y(ay))
    m = np.dot(m, rot_z(az))
    return np.dot(coords.reshape(3, -1).transpose(), m).transpose().reshape(coords.shape)


def rotate_coords_2d(coords, a):
    m = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return np.dot(coords.transpose(), m).transpose()


def get_patch_size(final_patch_size, rx, ry, rz, scale_range):
    rx, ry, rz = (max(np.abs(r)) for r in (rx, ry, rz))
    rx, ry, rz = (min(90 / 360 * 2. * np.pi, r) for r in (rx, ry, rz))
    coords = np.array(final_patch_size)
    final_shape = np.copy(coords)
    if len(coords) == 3:
        final_shape = np.max(np.vstack((np.abs(rotate_coords_3d(coords, rx, 0, 0)), final_shape)), 0)
        final_shape = np.max(np.vstack((np.abs(rotate_coords_3d(coords, 0, ry, 0)), final_shape)), 0)
        final_shape = np.max(np.vstack((np.abs(rotate_coords_3d(coords, 0, 0, rz)), final_shape)), 0)
    else:
        final_shape = np.max(np.vstack((np.abs(rotate_coords_2d(coords, rx)), final_shape)), 0)
    final_shape /= min(scale_range)
    return final_shape.astype(int)


def configure(patch_size):
    dim = len(patch_size)
    if dim == 2:
        dummy = False
        r = 15. if max(patch_size) / min(patch_size) > 1.5 else 180.
    else:
        dummy = (max(patch_size) / patch_size[0]) > 3
        r = 180. if dummy else 30.
    rot = (-r / 360 * 2. * np.pi, r / 360 * 2. * np.pi)
    initial = get_patch_size(patch_size[-dim:], *[rot] * 3, (0.85, 1.25))
    if dummy:
        initial[0] = patch_size[0]
    return [int(i) for i in initial], rot, dummy


class Loader:
    def __init__(self, patch_size, final_patch_size, batch_size, rs, has_ignore, annotated_key):
        if len(patch_size) == 2:
            patch_size = (1, *patch_size)
            final_patch_size = (1, *final_patch_size)
        self.patch_size = list(patch_size)
        self.need_to_pad = (np.array(patch_size) - np.array(final_patch_size)).astype(int)
        self.batch_size = batch_size
        self.oversample_foreground_percent = 0.33
        self.rs = rs
        self.has_ignore = has_ignore
        self.annotated_classes_key = annotated_key

    def get_do_oversample(self, sample_idx):
        return not sample_idx < round(self.batch_size * (1 - self.oversample_foreground_percent))

    def get_bbox(self, data_shape, force_fg, class_locations):
        need_to_pad = self.need_to_pad.copy()
        dim = len(data_shape)
        for d in range(dim):
            if need_to_pad[d] + data_shape[d] < self.patch_size[d]:
                need_to_pad[d] = self.patch_size[d] - data_shape[d]
        lbs = [- need_to_pad[i] // 2 for i in range(dim)]
        ubs = [data_shape[i] + need_to_pad[i] // 2 + need_to_pad[i] % 2 - self.patch_size[i] for i in range(dim)]
        if not force_fg and not self.has_ignore:
            bbox_lbs = [self.rs.randint(lbs[i], ubs[i] + 1) for i in range(dim)]
        else:
            if not force_fg and self.has_ignore:
                selected_class = self.annotated_classes_key
                if len(class_locations[selected_class]) == 0:
                    selected_class = None
            else:
                eligible = [i for i in class_locations.keys() if len(class_locations[i]) > 0]
                tmp = [i == self.annotated_classes_key if isinstance(i, tuple) else False for i in eligible]
                if any(tmp) and len(eligible) > 1:
                    eligible.pop(np.where(tmp)[0][0])
                selected_class = eligible[self.rs.choice(len(eligible))] if eligible else None
            if selected_class is not None:
                voxels = class_locations[selected_class]
                v = voxels[self.rs.choice(len(voxels))]
                bbox_lbs = [max(lbs[i], v[i + 1] - self.patch_size[i] // 2) for i in range(dim)]
            else:
                bbox_lbs = [self.rs.randint(lbs[i], ubs[i] + 1) for i in range(dim)]
        bbox_ubs = [bbox_lbs[i] + self.patch_size[i] for i in range(dim)]
        return bbox_lbs, bbox_ubs


def crop_and_pad(a, bbox, value):
    out = np.full((a.shape[0],) + tuple(hi - lo for lo, hi in bbox), value, dtype=a.dtype)
    src = tuple(slice(max(lo, 0), min(hi, s)) for (lo, hi), s in zip(bbox, a.shape[1:]))
    dst = tuple(slice(max(lo, 0) - lo, min(hi, s) - lo) for (lo, hi), s in zip(bbox, a.shape[1:]))
    if all(s.stop > s.start for s in src):
        out[(slice(None),) + dst] = a[(slice(None),) + src]
    return out


def load_case(path):
    fr = {f.header["role"]: f for f in nnpframe.frames(open(path, "rb").read())}
    img = fr["image"].array.astype(np.float32)
    seg = fr["label"].array.astype(np.int16)
    locs = {}
    if "class_locations" in fr:
        p = fr["class_locations"].header.get("props", {})
        rows = fr["class_locations"].array.reshape(-1, 4)
        at = 0
        for k, n in zip(p["classes"], p["counts"]):
            key = eval(k) if k.startswith("(") else int(k)  # "(1, 2)" -> tuple, as nnU-Net's dict keys
            locs[key] = rows[at:at + n] if n else []
            at += n
    return img, seg, locs


def fail(msg):
    print("mismatch: " + msg)
    sys.exit(1)


def main():
    if sys.argv[1] == "initial":   # sample_reference.py initial P0 P1 [P2]: the initial patch
        print(" ".join(map(str, configure([int(a) for a in sys.argv[2:]])[0])))
        return
    pre, config, fold, split, seed, iters, stream = sys.argv[1:8]
    plans = json.load(open(os.path.join(pre, "nnUNetPlans.json")))
    cfg = plans["configurations"][config]
    batch = int(sys.argv[8]) if len(sys.argv) > 8 else cfg["batch_size"]
    data = os.path.join(pre, cfg.get("data_identifier", "nnUNetPlans_" + config))
    if fold == "all":
        ids = sorted(f[:-4] for f in os.listdir(data) if f.endswith(".nnp"))
    else:
        ids = sorted(json.load(open(os.path.join(pre, "splits_final.json")))[int(fold)][split])
    patch = cfg["patch_size"]
    initial, rot, dummy = configure(patch)
    rs = np.random.RandomState(int(seed))
    cases = {i: load_case(os.path.join(data, i + ".nnp")) for i in ids}
    out = nnpframe.frames(open(stream, "rb").read())
    k = 0
    n_forced = fg_forced = fg_random = 0
    for it in range(int(iters)):
        keys = rs.choice(ids, batch, replace=True)
        for j, key in enumerate(keys):
            img, seg, locs = cases[key]
            ann = [c for c in locs if isinstance(c, tuple) and c[0] == -1]
            ld = Loader(initial if split == "train" else patch, patch, batch, rs, bool(ann), ann[0] if ann else None)
            force = ld.get_do_oversample(j)
            lbs, ubs = ld.get_bbox(img.shape[1:], force, locs)
            bbox = [[int(a), int(b)] for a, b in zip(lbs, ubs)]
            fi, fl = out[k], out[k + 1]
            k += 2
            s = fi.header["props"]["sample"]
            if fi.header["role"] != "image" or fl.header["role"] != "label":
                fail("roles %s %s" % (fi.header["role"], fl.header["role"]))
            if s != fl.header["props"]["sample"]:
                fail("image and label props differ")
            want = {"iteration": it, "index": j, "case": str(key), "forced_fg": bool(force), "box": bbox,
                    "batch_size": batch, "dummy_2d": bool(dummy), "final_patch": patch, "seed": int(seed)}
            for name, v in want.items():
                if s[name] != v:
                    fail("iteration %d sample %d: %s is %r, nnU-Net %r" % (it, j, name, s[name], v))
            if abs(s["rotation"][1] - rot[1]) > 1e-12:
                fail("rotation %r != %r" % (s["rotation"], rot))
            ri, rl = crop_and_pad(img, bbox, 0), crop_and_pad(seg, bbox, -1)
            if fi.array.dtype != np.float32 or fl.array.dtype != np.int16:
                fail("dtypes %s %s" % (fi.array.dtype, fl.array.dtype))
            if fi.array.tobytes() != ri.tobytes() or fl.array.tobytes() != rl.tobytes():
                fail("iteration %d sample %d: patch bytes differ from the crop of the whole case" % (it, j))
            n_forced += force
            if force:
                fg_forced += bool((rl > 0).any())
            else:
                fg_random += bool((rl > 0).any())
    if k != len(out):
        fail("stream has %d frames, expected %d" % (len(out), k))
    n = k // 2
    print("samples %d forced %d fg_forced %d fg_random %d fg_fraction %.3f" %
          (n, n_forced, fg_forced, fg_random, (fg_forced + fg_random) / max(n, 1)))


main()
