#!/usr/bin/python3
"""overlay_reference.py — test oracle for nnp overlay, written from the rules
in docs/overlay.md (not from the C code): synthetic cases, a small PNG
decoder, and the expected montage computed with numpy.

  overlay_reference.py mkcase DIR ID SEED [--shape X,Y,Z] [--pixdim A,B,C]
                       [--nan] [--empty] [--labels N]
      DIR/ID_0000.nii.gz (float32 image), DIR/ID_0001.nii.gz (second channel),
      DIR/ID_seg.nii.gz (uint8 prediction), DIR/ID_ref.nii.gz (int16 reference)
  overlay_reference.py png PNG
      prints "W H" of an 8-bit RGB PNG (decoded and checked completely)
  overlay_reference.py check PNG --image IMG --seg SEG [--ref REF] [--channel C]
                       [--slices N] [--axis A] [--alpha A] [--min-size PX]
                       [--no-captions] [--best B]
      compares the PNG with the montage the rules give: its size, every panel
      pixel (every pixel with --no-captions), the best slice (--best as the
      program reported it); prints the chosen slices and one blended pixel.
"""
import struct
import sys
import zlib

import nibabel as nib
import numpy as np

GAP, BAND = 4, 20
BG = (24, 24, 24)
CYCLE = ["4363d8", "f58231", "3cb44b", "e6194B", "911eb4", "ffe119", "bfef45", "42d4f4",
         "f032e6", "000075", "9A6324", "808000", "800000", "469990"]


def colour(label):
    h = CYCLE[(label - 1) % 14]
    return [int(h[i:i + 2], 16) for i in (0, 2, 4)]


# ---- PNG ----

def decode_png(path):
    b = open(path, "rb").read()
    assert b[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, kinds = 8, b"", []
    while pos < len(b):
        n, = struct.unpack(">I", b[pos:pos + 4])
        kind, data = b[pos + 4:pos + 8], b[pos + 8:pos + 8 + n]
        crc, = struct.unpack(">I", b[pos + 8 + n:pos + 12 + n])
        assert zlib.crc32(kind + data) & 0xffffffff == crc, "bad CRC"
        kinds.append(kind)
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", data)
            assert (depth, ctype, interlace) == (8, 2, 0), (depth, ctype, interlace)
        elif kind == b"IDAT":
            idat += data
        pos += 12 + n
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND"
    raw = zlib.decompress(idat)
    stride = 3 * w
    assert len(raw) == h * (stride + 1)
    rows, prev = [], [0] * stride
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)]
        cur = list(line)
        if f == 1:
            for i in range(3, stride):
                cur[i] = (cur[i] + cur[i - 3]) & 255
        elif f == 2:
            cur = [(x + u) & 255 for x, u in zip(line, prev)]
        elif f == 3:
            for i in range(stride):
                cur[i] = (line[i] + ((cur[i - 3] if i >= 3 else 0) + prev[i]) // 2) & 255
        elif f == 4:
            for i in range(stride):
                a = cur[i - 3] if i >= 3 else 0
                c = prev[i - 3] if i >= 3 else 0
                up = prev[i]
                pa, pb, pc = abs(up - c), abs(a - c), abs(a + up - 2 * c)
                cur[i] = (line[i] + (a if pa <= pb and pa <= pc else up if pb <= pc else c)) & 255
        else:
            assert f == 0, "filter %d" % f
        rows.append(cur)
        prev = cur
    out = np.array(rows, np.int32)
    return out.reshape(h, w, 3)


# ---- synthetic cases ----

def mkcase(argv):
    d, cid, seed = argv[0], argv[1], int(argv[2])
    opts = dict(shape="40,36,14", pixdim="0.8,0.8,3.0")
    flags = set()
    i = 3
    while i < len(argv):
        if argv[i] in ("--nan", "--empty"):
            flags.add(argv[i])
            i += 1
        else:
            opts[argv[i][2:]] = argv[i + 1]
            i += 2
    nx, ny, nz = [int(v) for v in opts["shape"].split(",")]
    px = [float(v) for v in opts["pixdim"].split(",")]
    nlab = int(opts.get("labels", 2))
    rs = np.random.RandomState(seed)
    aff = np.diag(px + [1.0])
    aff[:3, 3] = [-10.0, 5.0, 20.0]
    x, y, z = np.meshgrid(np.arange(nx), np.arange(ny), np.arange(nz), indexing="ij")
    img = (rs.normal(100, 20, (nx, ny, nz)) + 3 * z + x).astype(np.float32)
    seg = np.zeros((nx, ny, nz), np.uint8)
    ref = np.zeros((nx, ny, nz), np.int16)
    if "--empty" not in flags:
        cz = int(rs.randint(nz // 3, 2 * nz // 3 + 1))
        cx, cy = nx // 2 + int(rs.randint(-3, 4)), ny // 2 + int(rs.randint(-3, 4))
        r2 = ((x - cx) * px[0]) ** 2 + ((y - cy) * px[1]) ** 2 + ((z - cz) * px[2] * 0.6) ** 2
        ref[r2 < 64] = 1
        seg[r2 < 56] = 1
        for k in range(2, nlab + 1):
            m = (np.abs(x - cx - (k - 1) * 2) < 2) & (np.abs(y - cy) < 2) & (np.abs(z - cz) <= 1)
            ref[m] = k
            seg[m & (x > 0)] = k
        img[ref > 0] += 150
        seg[0, 0, 0] = 1  # one stray voxel
    if "--nan" in flags:
        img[1, 2, 3] = np.nan
        img[2, 2, 3] = np.inf
    for name, arr in ((cid + "_0000", img), (cid + "_0001", (img * -0.5).astype(np.float32)),
                      (cid + "_seg", seg), (cid + "_ref", ref)):
        nib.save(nib.Nifti1Image(arr, aff), "%s/%s.nii.gz" % (d, name))


# ---- the rules of docs/overlay.md ----

def load(path):
    im = nib.load(path)
    a = np.asarray(im.dataobj)
    if a.ndim == 3:
        a = a[..., None]
    zooms = im.header.get_zooms()[:3]
    return np.transpose(a, (3, 2, 1, 0)), tuple(float(v) for v in zooms[::-1])


def pick(lab, axis, n):
    fg = (lab > 0).sum(axis=tuple(i for i in range(3) if i != axis))
    ns = lab.shape[axis]
    if fg.sum() == 0:
        rows = min(n, ns)
        return [int(np.floor((i + 0.5) * ns / rows)) for i in range(rows)], -1
    best = int(np.argmax(fg))
    nz = np.nonzero(fg)[0]
    lo, hi = int(nz[0]), int(nz[-1])
    rows = min(n, hi - lo + 1)
    out = [best]
    for k in range(1, rows):
        q = (k - 0.5) / (rows - 1)
        p = lo + int(np.floor(q * (hi - lo) + 0.5))
        d = 0
        while True:
            if p + d <= hi and p + d not in out:
                out.append(p + d)
                break
            if p - d >= lo and p - d not in out:
                out.append(p - d)
                break
            d += 1
    return sorted(out), best


def panel_size(rows, cols, sp_r, sp_c, min_panel):
    hp, wp = rows * sp_r, cols * sp_c
    k = max(min_panel / min(hp, wp), 1 / min(sp_r, sp_c))
    if max(hp, wp) * k > 4096:
        k = 4096 / max(hp, wp)
    return max(1, int(np.floor(wp * k + 0.5))), max(1, int(np.floor(hp * k + 0.5)))


def plane(vol, axis, s):
    """The displayed slice: rows down, z pointing up for axes 1 and 2."""
    if axis == 0:
        return vol[s]
    p = vol[:, s, :] if axis == 1 else vol[:, :, s]
    return p[::-1]


def expected(img, seg, ref, spacing, axis, n, alpha, min_panel, captions):
    lab = ref if ref is not None else seg
    box = img
    if (lab > 0).any():   # the labels' bounding box grown by an eighth of its extent per side
        nz = np.nonzero(lab > 0)
        sl = []
        for i in range(3):
            a, b = int(nz[i].min()), int(nz[i].max())
            m = (b - a + 1) // 8
            sl.append(slice(max(a - m, 0), min(b + m, img.shape[i] - 1) + 1))
        box = img[tuple(sl)]
    v = box[np.isfinite(box)].astype(np.float64)
    lo, hi = np.percentile(v, [0.5, 99.5]) if v.size else (np.nan, np.nan)
    slices, best = pick(ref if ref is not None else seg, axis, n)
    rows_ax, cols_ax = [(1, 2), (0, 2), (0, 1)][axis]
    nr, nc = img.shape[rows_ax], img.shape[cols_ax]
    pw, ph = panel_size(nr, nc, spacing[rows_ax], spacing[cols_ax], min_panel)
    ncol = 3 if ref is not None else 2
    band = BAND if captions else 0
    W, H = GAP + ncol * (pw + GAP), GAP + band + len(slices) * (band + ph + GAP)
    out = np.zeros((H, W, 3), np.int32)
    out[:, :] = BG
    ri = np.array([int((py + 0.5) * nr / ph) for py in range(ph)])
    ci = np.array([int((px + 0.5) * nc / pw) for px in range(pw)])
    panels = []
    for r, s in enumerate(slices):
        y0 = GAP + band + r * (band + ph + GAP) + band
        with np.errstate(invalid="ignore"):
            im = plane(img, axis, s)[np.ix_(ri, ci)].astype(np.float64)
            g = np.zeros(im.shape)
            if hi > lo:
                g = np.clip((im - lo) / (hi - lo) * 255.0, 0, 255)
                g[~np.isfinite(im)] = 0
        G = np.floor(g + 0.5)
        for c in range(ncol):
            x0 = GAP + c * (pw + GAP)
            lab = None if c == 0 else (ref if ncol == 3 and c == 1 else seg)
            p = np.repeat(G[:, :, None], 3, axis=2)
            if lab is not None:
                L = plane(lab, axis, s)[np.ix_(ri, ci)]
                for l in np.unique(L[L > 0]):
                    m = L == l
                    for k in range(3):
                        p[m, k] = np.floor((1 - alpha) * G[m] + alpha * colour(int(l))[k] + 0.5)
            out[y0:y0 + ph, x0:x0 + pw] = p
            panels.append((x0, y0))
    return out, slices, best, (pw, ph), panels, (lo, hi)


def check(argv):
    path = argv[0]
    o = {"--image": [], "--seg": None, "--ref": None, "--channel": "0", "--slices": "3", "--axis": "0",
         "--alpha": "0.6", "--min-size": "256", "--best": None}
    captions = True
    i = 1
    while i < len(argv):
        if argv[i] == "--no-captions":
            captions = False
            i += 1
        elif argv[i] == "--image":
            o["--image"].append(argv[i + 1])
            i += 2
        else:
            o[argv[i]] = argv[i + 1]
            i += 2
    chans = []
    for f in o["--image"]:
        a, spacing = load(f)
        chans.extend(list(a))
    img = chans[int(o["--channel"])].astype(np.float32)
    seg = load(o["--seg"])[0][0].astype(np.int64)
    ref = load(o["--ref"])[0][0].astype(np.int64) if o["--ref"] else None
    axis, alpha = int(o["--axis"]), float(o["--alpha"])
    want, slices, best, (pw, ph), panels, win = expected(img, seg, ref, spacing, axis, int(o["--slices"]),
                                                         alpha, int(o["--min-size"]), captions)
    got = decode_png(path)
    assert got.shape == want.shape, "size %s, want %s" % (got.shape[1::-1], want.shape[1::-1])
    if o["--best"] is not None:
        assert int(o["--best"]) == best, "best slice %s, want %d" % (o["--best"], best)
    if captions:
        for x0, y0 in panels:
            a, b = got[y0:y0 + ph, x0:x0 + pw], want[y0:y0 + ph, x0:x0 + pw]
            if not np.array_equal(a, b):
                yy, xx = np.argwhere((a != b).any(2))[0]
                raise AssertionError("panel at %d,%d: pixel %d,%d is %s, want %s" % (
                    x0, y0, xx, yy, a[yy, xx], b[yy, xx]))
    elif not np.array_equal(got, want):
        yy, xx = np.argwhere((got != want).any(2))[0]
        raise AssertionError("pixel %d,%d is %s, want %s" % (xx, yy, got[yy, xx], want[yy, xx]))
    # one label-1 voxel of the prediction in the best slice's row (else the
    # first row): its blended colour
    row = slices.index(best) if best >= 0 else 0
    lab = plane(seg, axis, slices[row])
    rows_ax, cols_ax = [(1, 2), (0, 2), (0, 1)][axis]
    hit = np.argwhere(lab == 1)
    blend = "-"
    if hit.size:
        r, c = hit[len(hit) // 2]
        py, px = int((r + 0.5) * ph / lab.shape[0]), int((c + 0.5) * pw / lab.shape[1])
        assert int((py + 0.5) * lab.shape[0] / ph) == r and int((px + 0.5) * lab.shape[1] / pw) == c
        v = float(plane(img, axis, slices[row])[r, c])
        lo, hi = win
        G = np.floor(min(max((v - lo) / (hi - lo) * 255.0, 0), 255) + 0.5)
        rgb = [int(np.floor((1 - alpha) * G + alpha * k + 0.5)) for k in colour(1)]
        ncol = len(panels) // len(slices)
        x0, y0 = panels[row * ncol + ncol - 1]
        assert list(got[y0 + py, x0 + px]) == rgb, (got[y0 + py, x0 + px], rgb)
        blend = "%d,%d,%d" % tuple(rgb)
    print("ok %d %d slices %s best %d blend %s" % (got.shape[1], got.shape[0],
                                                   ",".join(map(str, slices)), best, blend))


def main(argv):
    if argv[1] == "mkcase":
        mkcase(argv[2:])
    elif argv[1] == "png":
        a = decode_png(argv[2])
        print(a.shape[1], a.shape[0])
    elif argv[1] == "check":
        try:
            check(argv[2:])
        except AssertionError as e:
            print("MISMATCH:", e)
            return 1
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
