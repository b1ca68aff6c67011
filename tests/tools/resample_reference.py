#!/usr/bin/python3
"""Extra reference cases for tests/unit/test_resample.c.

Writes tests/fixtures/ops/resampling/extra_scipy.json: small random inputs
and the outputs of nnU-Net 2.8.1's resample_data_or_seg algorithm
(default_resampling.py), replayed here with scipy 1.10:
skimage.transform.resize(img, shape, order, mode='edge', anti_aliasing=False)
(clip=True) is scipy.ndimage.zoom(img_float64, 1 / (in / out), order,
mode='nearest', grid_mode=True) clipped to [min(img), max(img)]
(nnunet-facts Appendix C; scikit-image 0.19.3 does exactly that with
SciPy >= 1.6), and batchgenerators' resize_segmentation is the per-label
loop.  The nnU-Net fixtures next to this file are the primary reference;
these cases cover the branches they do not (orders 0/2/4/5, separate z on
axis 1/2 with order_z 1 and 3, label order 0, order_z 1 for labels,
factor-2 upsampling with exact 0.5 ties).

Run: /usr/bin/python3 tests/tools/resample_reference.py  (numpy + scipy)
"""
import json
import os
import sys

import numpy as np
from scipy.ndimage import map_coordinates, zoom


def sk_resize(img, new_shape, order):
    img = np.asarray(img, dtype=np.float64)
    factors = np.divide(img.shape, new_shape)
    out = zoom(img, [1 / f for f in factors], order=order, mode='nearest', grid_mode=True)
    assert out.shape == tuple(new_shape), (out.shape, new_shape)
    lo, hi = np.min(img), np.max(img)
    np.clip(out, lo, hi, out=out)
    return out


def resize_segmentation(seg, new_shape, order):
    tpe = seg.dtype
    if order == 0:
        return sk_resize(seg.astype(float), new_shape, 0).astype(tpe)
    out = np.zeros(new_shape, dtype=seg.dtype)
    for c in np.unique(seg):
        m = sk_resize((seg == c).astype(float), new_shape, order)
        out[m >= 0.5] = c
    return out


def resample_data_or_seg(data, new_shape, is_seg, axis, order, do_separate_z, order_z):
    """nnU-Net's function, same control flow (data: (c, z, y, x))."""
    resize_fn = resize_segmentation if is_seg else sk_resize
    dtype_data = data.dtype
    shape = np.array(data[0].shape)
    new_shape = np.array(new_shape)
    if not np.any(shape != new_shape):
        return data
    data = data.astype(float)
    final = []
    for c in range(data.shape[0]):
        if do_separate_z:
            if axis == 0:
                ns2 = new_shape[1:]
            elif axis == 1:
                ns2 = new_shape[[0, 2]]
            else:
                ns2 = new_shape[:-1]
            sl = []
            for s in range(shape[axis]):
                if axis == 0:
                    sl.append(resize_fn(data[c, s], ns2, order))
                elif axis == 1:
                    sl.append(resize_fn(data[c, :, s], ns2, order))
                else:
                    sl.append(resize_fn(data[c, :, :, s], ns2, order))
            r = np.stack(sl, axis)
            if shape[axis] != new_shape[axis]:
                rows, cols, dim = new_shape
                orows, ocols, odim = r.shape
                mr, mc, md = np.mgrid[:rows, :cols, :dim]
                mr = float(orows) / rows * (mr + 0.5) - 0.5
                mc = float(ocols) / cols * (mc + 0.5) - 0.5
                md = float(odim) / dim * (md + 0.5) - 0.5
                cm = np.array([mr, mc, md])
                if not is_seg or order_z == 0:
                    final.append(map_coordinates(r, cm, order=order_z, mode='nearest'))
                else:
                    out = np.zeros(new_shape, dtype=dtype_data)
                    for cl in np.sort(np.unique(r.ravel())):
                        mh = np.round(map_coordinates((r == cl).astype(float), cm, order=order_z,
                                                      mode='nearest'))
                        out[mh > 0.5] = cl
                    final.append(out)
            else:
                final.append(r)
        else:
            final.append(resize_fn(data[c], new_shape, order))
    return np.stack(final).astype(dtype_data)


def _linear_axis(a, ax, m):
    """One axis of an order-1 zoom (scipy's taps and weights)."""
    n = a.shape[ax]
    a = np.moveaxis(a, ax, 0)
    res = np.zeros((m,) + a.shape[1:])
    for o in range(m):
        cc = (o + 0.5) * (n / m) - 0.5
        f = int(np.floor(cc))
        w0 = 1.0 - (cc - np.floor(cc))
        w1 = 1.0 - w0
        res[o] = a[min(max(f, 0), n - 1)] * w0 + a[min(max(f + 1, 0), n - 1)] * w1
    return np.moveaxis(res, 0, ax)


def separable_flips(seg, new_shape):
    """Voxels where resize_segmentation computed separably (axis by axis,
    mathematically the same) gives another label than scipy's N-D sum: the
    >= 0.5 decisions there depend on the exact floating-point operations."""
    out = np.zeros(new_shape, dtype=seg.dtype)
    for lab in np.unique(seg):
        m = (seg == lab).astype(float)
        for ax in range(seg.ndim):
            m = _linear_axis(m, ax, new_shape[ax])
        out[m >= 0.5] = lab
    return int((out != resize_segmentation(seg, new_shape, 1)).sum())


def smooth(rng, shape):
    a = rng.standard_normal(shape)
    for ax in range(3):
        a = (a + np.roll(a, 1, ax)) / 2
    return a * 100 - 20


def case(name, inp, new_shape, is_seg, order, sep, axis, order_z):
    out = resample_data_or_seg(inp[None], new_shape, is_seg, axis, order, sep, order_z)[0]
    return {
        "name": name, "is_seg": is_seg, "order": order, "order_z": order_z,
        "separate_z": sep, "axis": axis if sep else -1,
        "in_shape": list(inp.shape), "out_shape": [int(v) for v in new_shape],
        "input": [float(v) if not is_seg else int(v) for v in inp.ravel()],
        "output": [float(v) if not is_seg else int(v) for v in out.ravel()],
    }


def main():
    rng = np.random.RandomState(2024)
    cases = []
    a = smooth(rng, (7, 9, 8))
    for order in range(6):
        cases.append(case("data3d_order%d" % order, a, [11, 6, 13], False, order, False, None, 0))
    b = smooth(rng, (6, 5, 7))
    cases.append(case("data_sepz_axis1_o3_z0", b, [8, 9, 5], False, 3, True, 1, 0))
    c = smooth(rng, (6, 7, 4))
    cases.append(case("data_sepz_axis2_o3_z1", c, [9, 5, 7], False, 3, True, 2, 1))
    cases.append(case("data_sepz_axis2_o3_z3", c, [9, 5, 7], False, 3, True, 2, 3))
    d = smooth(rng, (4, 6, 7))
    cases.append(case("data_sepz_axis0_o1_inplane_same", d, [9, 6, 7], False, 1, True, 0, 0))
    cases.append(case("data_sepz_axis0_o5_z0_down", smooth(rng, (9, 8, 6)), [4, 11, 5], False, 5, True, 0, 0))
    labs = np.array([-1, 0, 1, 2, 3, 4], dtype=np.int8)
    s1 = labs[rng.randint(0, 6, (8, 7, 6))]
    cases.append(case("seg3d_order0", s1, [5, 11, 9], True, 0, False, None, 0))
    cases.append(case("seg3d_order1", s1, [5, 11, 9], True, 1, False, None, 0))
    s2 = labs[rng.randint(0, 6, (4, 5, 6))]
    cases.append(case("seg3d_order1_x2_ties", s2, [8, 10, 12], True, 1, False, None, 0))
    s3 = labs[rng.randint(0, 6, (7, 8, 5))]
    cases.append(case("seg_sepz_axis2_o1_z0", s3, [10, 6, 9], True, 1, True, 2, 0))
    s4 = labs[rng.randint(0, 6, (7, 5, 8))]
    cases.append(case("seg_sepz_axis1_o1_z1", s4, [9, 8, 6], True, 1, True, 1, 1))
    cases.append(case("seg_sepz_axis0_o0_z0", s4, [12, 3, 9], True, 0, True, 0, 0))
    # length-1 axes (2D data has z = 1; scipy's edge handling for len <= 1)
    e = smooth(rng, (1, 6, 1))
    cases.append(case("data3d_o3_singleton_axes", e, [2, 9, 3], False, 3, False, None, 0))
    cases.append(case("data3d_o1_singleton_axes", e, [2, 9, 3], False, 1, False, None, 0))
    cases.append(case("data_sepz_axis0_o3_z0_from1", smooth(rng, (1, 5, 6)), [3, 7, 4], False, 3, True, 0, 0))
    s7 = labs[rng.randint(0, 6, (1, 5, 4))]
    cases.append(case("seg3d_o1_singleton_z", s7, [1, 8, 3], True, 1, False, None, 0))
    cases.append(case("seg3d_o1_from_1_to_3", s7, [3, 8, 3], True, 1, False, None, 0))
    # label maps where a separable evaluation would flip some voxels
    r = np.random.RandomState(11)
    found = 0
    while found < 3:
        ish, osh = tuple(r.randint(2, 8, 3)), [int(v) for v in r.randint(2, 14, 3)]
        s5 = labs[r.randint(0, 4, ish)]
        if separable_flips(s5, osh):
            cases.append(case("seg3d_order1_fp_sensitive%d" % found, s5, osh, True, 1, False, None, 0))
            found += 1
    found = 0
    while found < 2:
        ish, osh = (3,) + tuple(r.randint(2, 9, 2)), [5] + [int(v) for v in r.randint(2, 15, 2)]
        s6 = labs[r.randint(0, 4, ish)]
        if sum(separable_flips(s6[k], osh[1:]) for k in range(3)):
            cases.append(case("seg_sepz_axis0_o1_fp_sensitive%d" % found, s6, osh, True, 1, True, 0, 0))
            found += 1
    dst = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "ops", "resampling",
                       "extra_scipy.json")
    with open(dst, "w") as f:
        json.dump({"made_by": "tests/tools/resample_reference.py (numpy %s, scipy %s)" % (
            np.__version__, __import__("scipy").__version__), "cases": cases}, f)
        f.write("\n")
    print("wrote", os.path.normpath(dst), file=sys.stderr)


if __name__ == "__main__":
    main()
