#!/usr/bin/python3
"""Reference outputs for the fp16_compat mode of common/infer.c.

Replays nnU-Net 2.8.1's predict_sliding_window_return_logits (CPU, float16
accumulators), _internal_maybe_mirror_and_predict and the fold average of
predict_logits_from_preprocessed_data with numpy, float16 op by float16 op as
torch does them on the CPU (upcast to float32, compute, round once):

    prediction = net(x) (+ flip(net(flip(x, axes)), axes) ...) / n   float32
    prediction *= gaussian                  float32 * float16 -> float32
    predicted_logits[sl] += prediction      float16 + float32 -> float32 -> float16
    n_predictions[sl[1:]] += gaussian       float16 + float16 -> float16
    predicted_logits /= n_predictions       float16 / float16 -> float16
    folds: p = p0; p += p1 ...; p /= nfolds float16

The fake network and the inputs are those of tests/unit/test_infer.c (dyadic
values, so the network itself is exact in float32 and float64).  Writes
tests/fixtures/ops/sliding_window_fp16/<case>.f16 (raw little-endian float16,
(K, Z, Y, X), unpadded).

Run: /usr/bin/python3 tests/tools/sw_fp16_reference.py   (numpy + scipy)
"""
import itertools
import os
import sys

import numpy as np
from scipy.ndimage import gaussian_filter

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'fixtures', 'ops',
                   'sliding_window_fp16')

# name, C, K, (Z, Y, X), tile, mirror axes, folds, use_gaussian
CASES = [
    ('3d_mirror_2folds', 2, 3, (12, 5, 11), (6, 8, 4), (0, 1, 2), 2, True),
    ('3d_plain', 1, 2, (9, 7, 6), (4, 4, 4), (), 1, True),
    ('3d_nogauss', 2, 2, (7, 6, 9), (4, 3, 5), (2,), 1, False),
    ('2d_mirror_3folds', 1, 3, (3, 7, 10), (4, 6), (0, 1), 3, True),
]


def image(C, Z, Y, X):
    """test_infer.c's make_image: ((i * 7919 + 13) % 255 - 127) / 32."""
    i = np.arange(C * Z * Y * X, dtype=np.int64)
    return (((i * 7919 + 13) % 255 - 127) / 32.0).astype(np.float32).reshape(C, Z, Y, X)


def fake_net(x, K, fold):
    """x (C, t0, t1, t2) float32 -> (K, t0, t1, t2); test_infer.c's fake_net."""
    s = np.zeros(x.shape[1:], np.float32)
    for c in range(x.shape[0]):
        s += np.float32(c + 1) * x[c]
    h = s.copy()
    for a in range(3):
        n = s.shape[a]
        nxt = np.zeros_like(s)
        prv = np.zeros_like(s)
        idx = [slice(None)] * 3
        if n > 1:
            idx_hi = list(idx); idx_hi[a] = slice(0, n - 1)
            idx_lo = list(idx); idx_lo[a] = slice(1, n)
            nxt[tuple(idx_hi)] = s[tuple(idx_lo)]   # s[v + e_a]
            prv[tuple(idx_lo)] = s[tuple(idx_hi)]   # s[v - e_a]
        h = h + np.float32(0.5) * nxt + np.float32(0.25) * prv
    out = np.empty((K,) + s.shape, np.float32)
    for k in range(K):
        scale = np.float32(k + 1 + 0.5 * fold)
        bias = np.float32(0.25 * (k - 1) - 0.125 * fold)
        out[k] = scale * h + bias
    return out


def gaussian(tile):
    tmp = np.zeros(tile)
    tmp[tuple(i // 2 for i in tile)] = 1
    g = gaussian_filter(tmp, [i / 8 for i in tile], 0, mode='constant', cval=0)
    a = g / (np.max(g) / 10)          # nnU-Net: /= (torch.max(g) / value_scaling_factor)
    b = g / np.max(g) * 10
    a16 = a.astype(np.float32).astype(np.float16)
    if not np.array_equal(a16, b.astype(np.float32).astype(np.float16)):
        sys.exit('gaussian: the two scaling orders differ in float16 for %s' % (tile,))
    a16[a16 == 0] = np.min(a16[a16 != 0])
    return a16


def steps(size, tile, step=0.5):
    target = tile * step
    n = int(np.ceil((size - tile) / target)) + 1
    if n == 1:
        return [0]
    actual = (size - tile) / (n - 1)
    return [int(np.round(actual * i)) for i in range(n)]


def sliding_window(data, K, tile, axes, fold, use_g):
    """data (C, Z, Y, X) float32 -> float16 (K, Z, Y, X) (one fold)."""
    two = len(tile) == 2
    t = (1,) + tuple(tile) if two else tuple(tile)
    if two:
        pads = [(0, 0), (0, 0)] + [((max(p - s, 0)) // 2, max(p - s, 0) - max(p - s, 0) // 2)
                                   for s, p in zip(data.shape[2:], tile)]
    else:
        pads = [(0, 0)] + [((max(p - s, 0)) // 2, max(p - s, 0) - max(p - s, 0) // 2)
                           for s, p in zip(data.shape[1:], tile)]
    d = np.pad(data, pads, 'constant', constant_values=0)
    G = gaussian(tuple(tile)).reshape(t) if use_g else np.float16(1)
    logits = np.zeros((K,) + d.shape[1:], np.float16)
    npred = np.zeros(d.shape[1:], np.float16)
    if two:
        zs = list(range(d.shape[1]))
        ys, xs = steps(d.shape[2], tile[0]), steps(d.shape[3], tile[1])
    else:
        zs, ys, xs = (steps(d.shape[1 + i], tile[i]) for i in range(3))
    sh = 1 if two else 0
    combos = [c for r in range(len(axes)) for c in itertools.combinations(axes, r + 1)]
    for z in zs:
        for y in ys:
            for x in xs:
                sl = (slice(z, z + t[0]), slice(y, y + t[1]), slice(x, x + t[2]))
                w = d[(slice(None),) + sl]
                p = fake_net(w, K, fold)
                for c in combos:
                    ax = tuple(a + sh + 1 for a in c)
                    p = p + np.flip(fake_net(np.flip(w, ax).copy(), K, fold), ax)
                p = p / np.float32(len(combos) + 1)
                if use_g:
                    p = p * G.astype(np.float32)
                logits[(slice(None),) + sl] = (logits[(slice(None),) + sl].astype(np.float32) + p).astype(np.float16)
                npred[sl] = npred[sl] + G
    logits = logits / npred
    assert logits.dtype == np.float16
    if np.any(np.isinf(logits)):
        sys.exit('inf in logits')
    lo = [p[0] for p in pads[1:]]
    return logits[:, lo[0]:lo[0] + data.shape[1], lo[1]:lo[1] + data.shape[2], lo[2]:lo[2] + data.shape[3]]


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, C, K, shape, tile, axes, folds, use_g in CASES:
        data = image(C, *shape)
        pred = None
        for f in range(folds):
            r = sliding_window(data, K, tile, axes, f, use_g)
            pred = r if pred is None else pred + r
            assert pred.dtype == np.float16
        if folds > 1:
            pred = pred / np.float16(folds)
        assert pred.dtype == np.float16
        pred.astype('<f2').tofile(os.path.join(OUT, name + '.f16'))
        print(name, pred.shape, float(np.min(pred)), float(np.max(pred)))


if __name__ == '__main__':
    main()
