#!/usr/bin/python3
"""frame_decode.py — decode an nnp frame stream with the generic msgpack decoder.

Usage: frame_decode.py [options] [STREAM]     (STREAM default or "-": stdin)

Reads every top-level msgpack object with python3-msgpack's stock Unpacker,
checks the frame structure (header map with "nnp": "frame", v [1, minor],
explicit-endian dtype, shape [c,z,y,x], nbytes = c*z*y*x*itemsize,
nchunks = ceil(z/chunk), then nchunks bin objects of c*zs*y*x*itemsize bytes)
and rebuilds each frame's (c, z, y, x) array.  Exit 0 if all checks pass,
1 with a message otherwise, 2 on usage errors.

Options:
  --print           one JSON line per frame: the header (without "nifti") and
                    per-channel min/max of the rebuilt array
  --offsets         one line per object: "FRAME header - START END 0xTYPE" or "FRAME chunk K START END 0xTYPE"
                    (byte offsets in the stream; TYPE is the msgpack type byte)
  --frames N        require exactly N frames
  --role I=ROLE     require frame I's role
  --case I=ID       require frame I's case id
  --nii I=F[,F2..]  frame I must equal these NIfTI files read by nibabel:
                    unscaled voxels (nibabel (x,y,z[,t]) transposed to
                    (c,z,y,x); several files = channels in order), dtype
                    (kind and size), spacing = |pixdim[3]|,|pixdim[2]|,|pixdim[1]|
                    exactly, affine = nibabel's best affine (atol 1e-4),
                    and "scale" ([[slope, inter]] per channel) = the files'
                    scl_slope/scl_inter when set
  --save I=PATH     write frame I's array to PATH (.npy)
"""
import argparse
import json
import sys

import numpy as np

sys.path.insert(0, __import__("os").path.dirname(__file__))
import nnpframe  # noqa: E402


def fail(msg):
    sys.stderr.write("frame_decode.py: %s\n" % msg)
    sys.exit(1)


def kv(s):
    if "=" not in s:
        raise argparse.ArgumentTypeError("expected I=VALUE, got %r" % s)
    i, v = s.split("=", 1)
    return int(i), v


def raw_scale(path):
    """scl_slope, scl_inter as stored (nibabel's loader hides them)."""
    import nibabel as nib
    img = nib.load(path)
    return float(img.dataobj.slope), float(img.dataobj.inter)


def norm(s, i):
    """NIfTI: a slope of 0 (or not finite) means no scaling."""
    if s == 0 or s != s or abs(s) == float("inf"):
        return (1.0, 0.0)
    return (s, i)


def compare_nii(fr, files, idx):
    h = fr.header
    arrs = []
    imgs = []
    for f in files:
        a, img = nnpframe.nii_to_cz(f)
        arrs.append(a)
        imgs.append(img)
    want = np.concatenate(arrs, axis=0)
    got = fr.array
    if got.shape != want.shape:
        fail("frame %d: shape %s, NIfTI %s" % (idx, got.shape, want.shape))
    if got.dtype.newbyteorder("=") != want.dtype.newbyteorder("="):
        fail("frame %d: dtype %s, NIfTI %s" % (idx, got.dtype, want.dtype))
    g = got.astype(got.dtype.newbyteorder("="))
    w = want.astype(want.dtype.newbyteorder("="))
    if g.tobytes() != w.tobytes():
        bad = np.nonzero(g.view("u%d" % g.itemsize).ravel() != w.view("u%d" % w.itemsize).ravel())[0]
        at = np.unravel_index(int(bad[0]), g.shape)
        fail("frame %d: %d voxels differ from the NIfTI data, first at (c,z,y,x)=%s: %r vs %r"
             % (idx, len(bad), tuple(int(k) for k in at), g[at], w[at]))
    hdr = imgs[0].header
    zooms = [abs(float(v)) for v in hdr["pixdim"][1:4]]
    want_sp = [zooms[2], zooms[1], zooms[0]]
    if "spacing" in h and [float(v) for v in h["spacing"]] != want_sp:
        fail("frame %d: spacing %r, NIfTI pixdim gives %r" % (idx, h["spacing"], want_sp))
    if "affine" in h:
        aff = np.array(h["affine"], dtype=np.float64)
        best = imgs[0].affine
        if not np.allclose(aff, best, rtol=0, atol=1e-4):
            fail("frame %d: affine\n%s\nvs nibabel\n%s" % (idx, aff, best))
    scales = []
    for f, a in zip(files, arrs):
        s, i = raw_scale(f)
        scales += [(s, i)] * a.shape[0]
    if any(s != 1.0 or i != 0.0 for s, i in scales):
        sc = h.get("scale")
        if sc is None:
            fail("frame %d: no \"scale\" but the NIfTI has scl_slope/inter %r" % (idx, scales))
        pairs = [norm(float(p[0]), float(p[1])) for p in sc]
        scales = [norm(s, i) for s, i in scales]
        if pairs != scales:
            fail("frame %d: scale %r, NIfTI %r" % (idx, sc, scales))


def main():
    p = argparse.ArgumentParser(description="decode an nnp frame stream with generic msgpack")
    p.add_argument("stream", nargs="?", default="-")
    p.add_argument("--print", action="store_true")
    p.add_argument("--offsets", action="store_true")
    p.add_argument("--frames", type=int)
    p.add_argument("--role", type=kv, action="append", default=[])
    p.add_argument("--case", type=kv, action="append", default=[])
    p.add_argument("--nii", type=kv, action="append", default=[])
    p.add_argument("--save", type=kv, action="append", default=[])
    o = p.parse_args()
    if o.stream == "-":
        data = sys.stdin.buffer.read()
    else:
        with open(o.stream, "rb") as f:
            data = f.read()
    try:
        frs = nnpframe.frames(data)
    except (nnpframe.StreamError, ValueError, TypeError) as e:
        fail(str(e))
    if o.offsets:
        for i, fr in enumerate(frs):
            print("%d header - %d %d 0x%02x" % (i, fr.hobj.start, fr.hobj.end, fr.hobj.first_byte))
            for k, c in enumerate(fr.chunks):
                print("%d chunk %d %d %d 0x%02x" % (i, k, c.start, c.end, c.first_byte))
    if o.print:
        for i, fr in enumerate(frs):
            h = {k: v for k, v in fr.header.items() if k != "nifti"}
            a = fr.array
            with np.errstate(invalid="ignore"):
                h["_min"] = [a[c].min().item() for c in range(a.shape[0])]
                h["_max"] = [a[c].max().item() for c in range(a.shape[0])]
            print(json.dumps(h, default=str))
    if o.frames is not None and len(frs) != o.frames:
        fail("%d frames, expected %d" % (len(frs), o.frames))
    for i, role in o.role:
        if i >= len(frs) or frs[i].header.get("role") != role:
            fail("frame %d role %r, expected %r" % (i, i < len(frs) and frs[i].header.get("role"), role))
    for i, cid in o.case:
        if i >= len(frs) or frs[i].header.get("case") != cid:
            fail("frame %d case %r, expected %r" % (i, i < len(frs) and frs[i].header.get("case"), cid))
    for i, files in o.nii:
        if i >= len(frs):
            fail("no frame %d" % i)
        compare_nii(frs[i], files.split(","), i)
    for i, path in o.save:
        np.save(path, frs[i].array)
    sys.exit(0)


if __name__ == "__main__":
    main()
