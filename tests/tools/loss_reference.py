#!/usr/bin/python3
"""loss_reference.py — an independent numpy port of nnU-Net's training loss
and optimisation semantics (nnunetv2 2.8.1: compound_losses.DC_and_CE_loss /
DC_and_BCE_loss with dice.MemoryEfficientSoftDiceLoss, the trainer's
deep-supervision scales and weights, batchgeneratorsv2
DownsampleSegForDSTransform with torch 'nearest-exact', the validation
pseudo-Dice counts, torch.nn.utils.clip_grad_norm_, torch.optim.SGD with
Nesterov momentum and weight decay, PolyLRScheduler), used to write the
fixture tests/fixtures/train/loss_vectors.json that tests/unit/test_loss.c
and tests/unit/test_optim.c read.

The loss is evaluated in float64 from float32 logits (nnU-Net sums in
float32; the C library sums in double).  SGD runs in float32 with torch's
CPU kernels' roundings: add-with-alpha is a fused multiply-add, the momentum
multiply rounds on its own.

Usage: loss_reference.py [OUT.json]   (default: the fixture path)
"""
import json
import os
import sys
from fractions import Fraction

import numpy as np

SMOOTH = 1e-5


# ---- losses (forward only, float64) ----

def softmax(x):
    m = x.max(axis=1, keepdims=True)
    e = np.exp(x - m)
    return e / e.sum(axis=1, keepdims=True), m + np.log(e.sum(axis=1, keepdims=True))


def soft_dice(x, y_onehot, mask, batch_dice):
    """MemoryEfficientSoftDiceLoss after the nonlinearity (x, y, mask: (B, K, ...))."""
    axes = tuple(range(2, x.ndim))
    if mask is None:
        mask = np.ones_like(x[:, :1])
    intersect = (x * y_onehot * mask).sum(axes)
    sum_pred = (x * mask).sum(axes)
    sum_gt = (y_onehot * mask).sum(axes)
    if batch_dice:
        intersect, sum_pred, sum_gt = intersect.sum(0), sum_pred.sum(0), sum_gt.sum(0)
    dc = (2 * intersect + SMOOTH) / np.clip(sum_gt + sum_pred + SMOOTH, 1e-8, None)
    return -dc.mean()


def dc_ce_loss(logits, target, batch_dice, ignore_label):
    """DC_and_CE_loss(weight_ce=1, weight_dice=1), do_bg=False; target (B, ...)."""
    x = logits.astype(np.float64)
    C = x.shape[1]
    t = target[:, None].astype(np.int64)
    if ignore_label is not None:
        mask = (t != ignore_label).astype(np.float64)
        t_dice = np.where(t == ignore_label, 0, t)
        num_fg = mask.sum()
    else:
        mask, t_dice, num_fg = None, t, None
    p, lse = softmax(x)
    y = (np.arange(C).reshape((1, C) + (1,) * (x.ndim - 2)) == t_dice).astype(np.float64)
    dc = soft_dice(p[:, 1:], y[:, 1:], mask, batch_dice)
    if ignore_label is not None and num_fg == 0:
        ce = 0.0
    else:
        logp_t = np.take_along_axis(x, t_dice, axis=1) - lse
        w = np.ones_like(logp_t) if mask is None else mask
        ce = -(logp_t * w).sum() / w.sum()
    return float(ce + dc), float(ce), float(dc)


def dc_bce_loss(logits, target, batch_dice, use_ignore):
    """DC_and_BCE_loss: target (B, R (+1 ignore channel), ...) of 0/1."""
    x = logits.astype(np.float64)
    tg = target.astype(np.float64)
    if use_ignore:
        mask = 1 - tg[:, -1:]
        regions = tg[:, :-1]
    else:
        mask, regions = None, tg
    sig = 1 / (1 + np.exp(-x))
    dc = soft_dice(sig, regions, mask, batch_dice)
    bce = np.maximum(x, 0) - x * regions + np.log1p(np.exp(-np.abs(x)))
    if mask is None:
        ce = bce.mean()
    else:
        ce = (bce * mask).sum() / max(mask.sum(), 1e-8)
    return float(ce + dc), float(ce), float(dc)


# ---- deep supervision ----

def ds_scales(strides):
    return [list(map(float, r)) for r in 1 / np.cumprod(np.vstack(strides), axis=0)][:-1]


def ds_weights(n):
    w = np.array([1 / (2 ** i) for i in range(n)])
    w[-1] = 0
    return list(map(float, w / w.sum()))


def nearest_exact_index(n_in, n_out):
    """ATen: scale = float(in)/out in float32; src = min(floorf((o + 0.5) * scale), in - 1)."""
    scale = np.float32(n_in) / np.float32(n_out)
    return np.array([min(int(np.floor(np.float32((o + 0.5) * float(scale)))), n_in - 1) for o in range(n_out)])


def downsample_seg(seg, scale):
    """DownsampleSegForDSTransform for one scale; seg (P, *spatial)."""
    if all(s == 1 for s in scale):
        return seg.copy()
    new_shape = [round(i * j) for i, j in zip(seg.shape[1:], scale)]
    out = seg
    for a, (n_in, n_out) in enumerate(zip(seg.shape[1:], new_shape)):
        out = np.take(out, nearest_exact_index(n_in, n_out), axis=a + 1)
    return out


# ---- pseudo-Dice (validation_step) ----

def pdice_labels(logits, target, ignore_label):
    C = logits.shape[1]
    pred = logits.argmax(1)
    t = target.copy()
    mask = np.ones(t.shape, bool) if ignore_label is None else t != ignore_label
    t[~mask] = 0
    tp, fp, fn = [], [], []
    for c in range(1, C):
        p, y = (pred == c) & mask, (t == c) & mask
        tp.append(int((p & y).sum()))
        fp.append(int((p & ~y).sum()))
        fn.append(int((~p & y).sum()))
    return tp, fp, fn


def pdice_regions(logits, target, use_ignore):
    pred = 1 / (1 + np.exp(-logits.astype(np.float32))) > np.float32(0.5)
    tg = target.astype(bool)
    if use_ignore:
        mask = ~tg[:, -1:]
        tg = tg[:, :-1]
    else:
        mask = np.ones_like(tg[:, :1])
    axes = (0,) + tuple(range(2, logits.ndim))
    tp = (pred & tg & mask).sum(axes)
    fp = (pred & ~tg & mask).sum(axes)
    fn = (~pred & tg & mask).sum(axes)
    return list(map(int, tp)), list(map(int, fp)), list(map(int, fn))


def pdice_result(tp, fp, fn):
    with np.errstate(invalid='ignore', divide='ignore'):
        d = [2 * a / (2 * a + b + c) if (2 * a + b + c) else float('nan') for a, b, c in zip(tp, fp, fn)]
    return d, float(np.nanmean(d)) if not all(np.isnan(d)) else float('nan')


# ---- optimisation (float32 semantics of torch's CPU kernels) ----

def f32_round(q):
    """Fraction -> nearest float32 (ties to even), exactly."""
    if q == 0:
        return np.float32(0)
    d = float(q)               # nearest double
    f = np.float32(d)
    # candidates around f; pick the nearest to q exactly
    cands = [f, np.nextafter(f, np.float32(np.inf)), np.nextafter(f, np.float32(-np.inf))]
    best = min(cands, key=lambda c: (abs(Fraction(float(c)) - q), int(np.frombuffer(c.tobytes(), np.uint32)[0]) & 1))
    return np.float32(best)


def fma32(a, b, c):
    return f32_round(Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c)))


def sgd_steps(ws, grads_per_step, lrs, momentum, wd, nesterov):
    """torch.optim.SGD (dampening 0); returns the weights after each step and the buffers."""
    mom, wdf = np.float32(momentum), np.float32(wd)
    ws = [w.copy() for w in ws]
    bufs = [None] * len(ws)
    hist = []
    for grads, lr in zip(grads_per_step, lrs):
        nlr = -np.float32(lr)
        for i, (w, g) in enumerate(zip(ws, grads)):
            first = bufs[i] is None
            if first:
                bufs[i] = np.zeros_like(w)
            for j in range(w.size):
                d = fma32(wdf, w[j], g[j])                  # grad.add(param, alpha=wd)
                b = d if first else np.float32(np.float32(bufs[i][j] * mom) + d)   # buf.mul_(m).add_(d)
                bufs[i][j] = b
                d = fma32(mom, b, d) if nesterov else b     # d.add(buf, alpha=m)
                w[j] = fma32(nlr, d, w[j])                  # param.add_(d, alpha=-lr)
        hist.append([w.copy() for w in ws])
    return hist, bufs


def clip_grad_norm(grads, max_norm):
    total = float(np.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in grads)))
    coef = max_norm / (total + 1e-6)
    if coef < 1:
        grads = [(g * np.float32(coef)).astype(np.float32) for g in grads]
    return total, grads


def polylr(initial_lr, epoch, max_epochs, exponent=0.9):
    return initial_lr * (1 - epoch / max_epochs) ** exponent


# ---- fixture ----

def flist(a):
    return [float(v) for v in np.asarray(a, np.float64).ravel()]


def ilist(a):
    return [int(v) for v in np.asarray(a).ravel()]


def label_case(rs, b, c, sp, batch_dice, ignore, frac_ignore=0.2, scale=2.0, drop_class=None):
    logits = (rs.standard_normal((b, c) + sp) * scale).astype(np.float32)
    target = rs.randint(0, c, (b,) + sp).astype(np.int16)
    if drop_class is not None:
        target[target == drop_class] = 0
    if ignore is not None:
        target[rs.random_sample(target.shape) < frac_ignore] = ignore
    total, ce, dc = dc_ce_loss(logits, target, batch_dice, ignore)
    tp, fp, fn = pdice_labels(logits, target, ignore)
    return {"b": b, "c": c, "spatial": list(sp), "batch_dice": batch_dice, "ignore_label": ignore,
            "logits": flist(logits), "target": ilist(target), "total": total, "ce": ce, "dice": dc,
            "tp": tp, "fp": fp, "fn": fn}


def region_case(rs, b, r, sp, batch_dice, use_ignore, scale=2.0):
    logits = (rs.standard_normal((b, r) + sp) * scale).astype(np.float32)
    t = (rs.random_sample((b, r + (1 if use_ignore else 0)) + sp) < 0.4).astype(np.uint8)
    total, ce, dc = dc_bce_loss(logits, t, batch_dice, use_ignore)
    tp, fp, fn = pdice_regions(logits, t, use_ignore)
    return {"b": b, "c": r, "spatial": list(sp), "batch_dice": batch_dice, "use_ignore": use_ignore,
            "logits": flist(logits), "target": ilist(t), "total": total, "ce": ce, "dice": dc,
            "tp": tp, "fp": fp, "fn": fn}


def downsample_cases(rs):
    out = []
    for shape, scale in [((2, 9, 7), (0.5, 0.5)), ((1, 5, 6, 7), (0.5, 0.25, 0.5)), ((2, 26, 3), (0.42, 1.0)),
                         ((1, 25, 12), (0.5, 0.5)), ((1, 7, 8, 6), (1.0, 0.5, 0.5)), ((2, 4, 5), (1.0, 1.0)),
                         ((1, 6, 9, 10), (1 / 3, 1 / 3, 0.5))]:
        seg = rs.randint(0, 5, shape).astype(np.int16)
        o = downsample_seg(seg, scale)
        out.append({"planes": shape[0], "shape": list(shape[1:]), "scale": list(scale), "in": ilist(seg),
                    "out_shape": list(o.shape[1:]), "out": ilist(o)})
    return out


def sgd_case(rs, nesterov=True, momentum=0.99, wd=3e-5):
    sizes = [37, 20, 1, 9]
    ws = [rs.standard_normal(n).astype(np.float32) for n in sizes]
    steps = 4
    grads = [[(rs.standard_normal(n) * 0.5).astype(np.float32) for n in sizes] for _ in range(steps)]
    lrs = [polylr(0.01, e, 1000) for e in (0, 0, 1, 500)]
    hist, bufs = sgd_steps(ws, grads, lrs, momentum, wd, nesterov)
    return {"sizes": sizes, "momentum": momentum, "weight_decay": wd, "nesterov": nesterov, "lrs": lrs,
            "w0": [flist(w) for w in ws], "grads": [[flist(g) for g in gs] for gs in grads],
            "w_after": [[flist(w) for w in ws_] for ws_ in hist], "buffers": [flist(b) for b in bufs]}


def clip_cases(rs):
    out = []
    for scale in (10.0, 0.5):
        gs = [(rs.standard_normal(n) * scale).astype(np.float32) for n in (11, 4, 1)]
        total, clipped = clip_grad_norm(gs, 12.0)
        out.append({"grads": [flist(g) for g in gs], "max_norm": 12.0, "total": total,
                    "clipped": [flist(g) for g in clipped]})
    return out


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "train", "loss_vectors.json")
    rs = np.random.RandomState(20240611)
    labels = [
        label_case(rs, 2, 3, (5, 6), False, None),
        label_case(rs, 2, 3, (5, 6), True, None),
        label_case(rs, 2, 3, (3, 4, 4), False, 3),
        label_case(rs, 2, 3, (3, 4, 4), True, 3),
        label_case(rs, 2, 2, (4, 7), True, 2),
        label_case(rs, 2, 2, (3, 3, 5), False, None),
        label_case(rs, 2, 4, (2, 3, 4), False, 5, drop_class=3),
        label_case(rs, 1, 3, (4, 4), True, 3, frac_ignore=1.1),   # every voxel ignored: CE = 0
        label_case(rs, 2, 3, (6, 5), False, None, scale=8.0),
    ]
    regions = [
        region_case(rs, 2, 2, (5, 6), False, False),
        region_case(rs, 2, 3, (3, 4, 4), True, False),
        region_case(rs, 2, 2, (3, 3, 4), True, True),
        region_case(rs, 2, 1, (6, 5), False, True),
    ]
    strides = [[[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]],
               [[1, 1], [2, 2], [2, 2], [2, 2], [2, 2], [2, 2], [2, 2]],
               [[1, 1, 1], [1, 2, 2], [3, 2, 2], [2, 2, 2]]]
    fx = {
        "about": "made by tests/tools/loss_reference.py (numpy port of nnU-Net 2.8.1 loss/DS/SGD semantics)",
        "labels": labels,
        "regions": regions,
        "ds_weights": {str(n): ds_weights(n) for n in range(2, 8)},
        "ds_scales": [{"strides": s, "scales": ds_scales(s)} for s in strides],
        "downsample": downsample_cases(rs),
        "sgd": [sgd_case(rs), sgd_case(rs, nesterov=False, momentum=0.9, wd=1e-2)],
        "clip": clip_cases(rs),
        "polylr": [{"epoch": e, "lr": polylr(0.01, e, 1000)} for e in (0, 1, 250, 500, 998, 999)],
    }
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(fx, f, separators=(",", ":"))
        f.write("\n")
    print(path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
