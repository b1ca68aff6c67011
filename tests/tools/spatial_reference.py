#!/usr/bin/python3
"""spatial_reference.py — numpy reference of nnp augment's spatial transform.

Usage: spatial_reference.py IN.nnp OUT.nnp

IN is a sample stream (mksamples.py), OUT what 'nnp augment --only
rotation,scaling' (or a subset, or --none) made of it.  For every sample the
affine is rebuilt from the recorded props.augment (rotation, scale), the
output grid g = k - (p-1)/2 mapped to q = A g + S/2 - 0.5, the image sampled
(bi/tri)linearly with zero padding, the label by the one-hot x1000 float16
rule (lowest label first, strictly greater replaces), -1 where q leaves
[0, S-1], then RemoveLabel.  Labels must be identical, the image equal to
1e-6 (the same float64 operations in the same order as common/augment.c).
Exits 1 with a message on the first mismatch.
"""
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import nnpframe  # noqa: E402


def affine(rank, ang, s):
    if rank == 2:
        c, n = math.cos(ang[2]), math.sin(ang[2])
        return [[c * s, -n * s], [n * s, c * s]]
    cx, sx, cy, sy = math.cos(ang[0]), math.sin(ang[0]), math.cos(ang[1]), math.sin(ang[1])
    cz, sz = math.cos(ang[2]), math.sin(ang[2])
    Rx = [[1, 0, 0], [0, cx, -sx], [0, sx, cx]]
    Ry = [[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]]
    Rz = [[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]]
    T = [[Ry[i][0] * Rx[0][j] + Ry[i][1] * Rx[1][j] + Ry[i][2] * Rx[2][j] for j in range(3)] for i in range(3)]
    return [[(Rz[i][0] * T[0][j] + Rz[i][1] * T[1][j] + Rz[i][2] * T[2][j]) * s for j in range(3)]
            for i in range(3)]


def crop(img, seg, P, rank):
    S = seg.shape
    st = [0 if (a == 0 and rank == 2) else S[a] // 2 - P[a] // 2 for a in range(3)]
    oi = np.zeros((img.shape[0],) + tuple(P), np.float32)
    os_ = np.full(tuple(P), -1, np.int16)
    src = [slice(max(st[a], 0), min(st[a] + P[a], S[a])) for a in range(3)]
    dst = [slice(s.start - st[a], s.stop - st[a]) for a, s in enumerate(src)]
    oi[(slice(None),) + tuple(dst)] = img[(slice(None),) + tuple(src)]
    os_[tuple(dst)] = seg[tuple(src)]
    return oi, os_


def transform(img, seg, P, rank, A):
    S = seg.shape
    a0 = 3 - rank
    k = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in P], indexing="ij")
    g = [k[a] - (P[a] - 1) / 2.0 for a in range(3)]
    q = [k[0]] + [None, None]
    outside = np.zeros(tuple(P), bool)
    for a in range(a0, 3):
        s = 0.0
        for b in range(a0, 3):
            s = s + A[a - a0][b - a0] * g[b]
        q[a] = s + (S[a] / 2.0 - 0.5)
        outside |= (q[a] < 0) | (q[a] > S[a] - 1)
    i0 = [q[0].astype(np.int64)] + [np.floor(q[a]).astype(np.int64) for a in (1, 2)]
    if rank == 3:
        i0[0] = np.floor(q[0]).astype(np.int64)
    t = [None] + [q[a] - np.floor(q[a]) for a in (1, 2)]
    if rank == 3:
        t[0] = q[0] - np.floor(q[0])
    corners = []
    for m in range(1 << rank):
        idx = list(i0)
        w = np.ones(tuple(P))
        ok = np.ones(tuple(P), bool)
        for a in range(a0, 3):
            bit = (m >> (2 - a)) & 1
            idx[a] = i0[a] + bit
            w = w * (t[a] if bit else 1 - t[a])
            ok &= (idx[a] >= 0) & (idx[a] < S[a])
        cl = [np.clip(idx[a], 0, S[a] - 1) for a in range(3)]
        corners.append((w, ok, cl))
    oi = np.zeros((img.shape[0],) + tuple(P), np.float64)
    for c in range(img.shape[0]):
        acc = np.zeros(tuple(P))
        for w, ok, cl in corners:
            acc = acc + np.where(ok, w * img[c][tuple(cl)].astype(np.float64), 0.0)
        oi[c] = acc
    labels = np.unique(seg)
    best = np.full(tuple(P), labels[0], np.int16)
    bestv = None
    for u in labels:
        acc = np.zeros(tuple(P))
        for w, ok, cl in corners:
            acc = acc + np.where(ok & (seg[tuple(cl)] == u), w * 1000.0, 0.0)
        v = acc.astype(np.float16)
        if bestv is None:
            bestv = v
            continue
        rep = v > bestv
        best[rep] = u
        bestv = np.where(rep, v, bestv)
    best[outside] = -1
    return oi.astype(np.float32), best


def main():
    ins = nnpframe.frames(open(sys.argv[1], "rb").read())
    outs = nnpframe.frames(open(sys.argv[2], "rb").read())
    if len(ins) != len(outs):
        sys.exit("%d frames in, %d out" % (len(ins), len(outs)))
    nint = 0
    for i in range(0, len(ins), 2):
        img, seg = nnpframe.assemble(ins[i]), nnpframe.assemble(ins[i + 1])[0]
        oimg, oseg = nnpframe.assemble(outs[i]), nnpframe.assemble(outs[i + 1])[0]
        sp = ins[i].header["props"]["sample"]
        aug = outs[i].header["props"]["augment"]
        fp = sp["final_patch"]
        rank = 2 if len(fp) == 2 or sp["dummy_2d"] else 3
        P = [1] + fp if len(fp) == 2 else fp
        if "rotation" in aug or "scale" in aug:
            ang = [0.0, 0.0, 0.0]
            if "rotation" in aug:
                ang[3 - len(aug["rotation"]):] = aug["rotation"]
            ri, rseg = transform(img, seg, P, rank, affine(rank, ang, aug.get("scale", 1.0)))
            nint += 1
        else:
            ri, rseg = crop(img, seg, P, rank)
        rseg[rseg == -1] = 0
        if rseg.shape != oseg.shape or not np.array_equal(rseg, oseg):
            bad = np.argwhere(rseg != oseg)
            sys.exit("sample %d: %d label voxels differ, first %s: %s vs reference %s"
                     % (i // 2, len(bad), bad[0].tolist(), oseg[tuple(bad[0])], rseg[tuple(bad[0])]))
        d = np.abs(ri.astype(np.float64) - oimg).max()
        if not d <= 1e-6 * (1 + np.abs(ri).max()):
            sys.exit("sample %d: image differs by %g" % (i // 2, d))
    print("%d samples match (%d interpolated)" % (len(ins) // 2, nint))


if __name__ == "__main__":
    main()
