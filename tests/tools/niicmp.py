#!/usr/bin/python3
"""niicmp.py — compare two NIfTI files independently of nnpipe (nibabel + numpy).

Usage: niicmp.py [options] A B
Exit 0 if A and B agree on everything compared, 1 (with one line per
difference on stderr) otherwise, 2 on a usage error or unreadable file.

Compared by default (the nnpipe round-trip contract):
  - NIfTI version (1 or 2)
  - voxel dtype (kind and size; byte order is NOT compared unless
    --same-endian, because nnp-write always writes little-endian) and shape
  - the raw stored voxel bytes (unscaled; read at vox_offset from the file
    itself, values compared in native byte order, NaN payloads included)
  - qform_code, sform_code; quatern_b/c/d, qoffset_x/y/z, srow_x/y/z and
    pixdim[0..7], all bit-exact (as stored in float32 / float64)
  - get_qform(), get_sform(), get_best_affine() (exact)
  - scl_slope and scl_inter as stored in the header (bit-exact; nibabel's
    loader hides them, so the header is parsed directly)

Options:
  --strict        also every other header field that carries information:
                  descrip, aux_file, intent_code/p1/p2/p3/name, xyzt_units,
                  dim_info, slice_code/start/end/duration, toffset, cal_min/max
  --data-only     only dtype, shape and voxel bytes
  --affine-tol T  compare get_best_affine() with tolerance T (absolute)
                  instead of the per-form fields and exact affines
  --loose         data, dtype, shape, get_best_affine() within 1e-4 and
                  pixdim[1..3] only (for files written from frames that carry
                  no NIfTI header)
  --same-endian   also require the same byte order
  --ignore F,G    skip these fields
  -q              no messages, status only
"""
import argparse
import gzip
import sys

import numpy as np
import nibabel as nib
from nibabel import nifti1, nifti2

GEOM_FIELDS = ["qform_code", "sform_code", "quatern_b", "quatern_c", "quatern_d",
               "qoffset_x", "qoffset_y", "qoffset_z", "srow_x", "srow_y", "srow_z",
               "pixdim"]
SCALE_FIELDS = ["scl_slope", "scl_inter"]
STRICT_FIELDS = ["descrip", "aux_file", "intent_code", "intent_p1", "intent_p2",
                 "intent_p3", "intent_name", "xyzt_units", "dim_info", "slice_code",
                 "slice_start", "slice_end", "slice_duration", "toffset",
                 "cal_min", "cal_max"]


class Bad(Exception):
    pass


def opener(path):
    if path.endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")


def read_header(path):
    """The header exactly as stored (no nibabel load-time munging)."""
    hpath = path
    if path.endswith(".img"):
        hpath = path[:-4] + ".hdr"
    elif path.endswith(".img.gz"):
        hpath = path[:-7] + ".hdr.gz"
    with opener(hpath) as f:
        head = f.read(540)
    if len(head) < 348:
        raise Bad("%s: too short for a NIfTI header" % hpath)
    # sizeof_hdr in either byte order decides the version
    import struct
    le = struct.unpack("<i", head[:4])[0]
    be = struct.unpack(">i", head[:4])[0]
    single = not hpath.endswith((".hdr", ".hdr.gz"))
    if 348 in (le, be):
        cls = nifti1.Nifti1Header if single else nifti1.Nifti1PairHeader
        ver = 1
    elif 540 in (le, be):
        cls = nifti2.Nifti2Header if single else nifti2.Nifti2PairHeader
        ver = 2
    else:
        raise Bad("%s: not a NIfTI file (sizeof_hdr %d)" % (hpath, le))
    import io
    hdr = cls.from_fileobj(io.BytesIO(head[:cls.template_dtype.itemsize] + b"\0\0\0\0"),
                           check=False)
    return hdr, ver, single, hpath


def read_voxels(path, hdr, single):
    dt = hdr.get_data_dtype()
    shape = hdr.get_data_shape()
    n = int(np.prod(shape)) * dt.itemsize
    if single:
        off = int(hdr.get_data_offset())
        with opener(path) as f:
            buf = f.read()
        raw = buf[off:off + n]
    else:
        ipath = path
        if path.endswith(".hdr"):
            ipath = path[:-4] + ".img"
        elif path.endswith(".hdr.gz"):
            ipath = path[:-7] + ".img.gz"
        off = int(hdr.get_data_offset())
        with opener(ipath) as f:
            buf = f.read()
        raw = buf[off:off + n]
    if len(raw) != n:
        raise Bad("%s: voxel data truncated (%d of %d bytes)" % (path, len(raw), n))
    arr = np.frombuffer(raw, dtype=dt).reshape(shape, order="F")
    # cross-check against nibabel's own reader
    nb = np.asarray(nib.load(path).dataobj.get_unscaled())
    if nb.dtype.newbyteorder("=") != dt.newbyteorder("=") or nb.shape != arr.shape or \
            nb.astype(nb.dtype.newbyteorder("=")).tobytes(order="F") != \
            arr.astype(dt.newbyteorder("=")).tobytes(order="F"):
        raise Bad("%s: nibabel and the raw bytes disagree" % path)
    return arr


def same_bits(a, b):
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        return False
    if a.dtype.kind in "SUO" or b.dtype.kind in "SUO":
        return bytes(a) == bytes(b) if a.dtype.kind == "S" else np.array_equal(a, b)
    a = a.astype(a.dtype.newbyteorder("="))
    b = b.astype(b.dtype.newbyteorder("="))
    if a.dtype != b.dtype:
        # same value in different widths (NIfTI-1 float32 vs NIfTI-2 float64)
        with np.errstate(invalid="ignore"):
            return np.array_equal(a.astype(np.float64), b.astype(np.float64), equal_nan=True)
    return a.tobytes() == b.tobytes()


def fmt(v):
    v = np.asarray(v)
    if v.dtype.kind == "S":
        return repr(bytes(v).rstrip(b"\0"))
    return np.array2string(v, precision=17, separator=",") if v.size > 1 else repr(v.item())


def compare(a, b, opt):
    diffs = []
    ha, va, sa, _ = read_header(a)
    hb, vb, sb, _ = read_header(b)
    ign = set(opt.ignore.split(",")) if opt.ignore else set()
    if not opt.data_only and va != vb and "version" not in ign:
        diffs.append("NIfTI version: %d vs %d" % (va, vb))
    da, db = ha.get_data_dtype(), hb.get_data_dtype()
    if da.newbyteorder("=") != db.newbyteorder("="):
        diffs.append("dtype: %s vs %s" % (da, db))
    elif opt.same_endian and da.byteorder != db.byteorder and da.itemsize > 1:
        diffs.append("byte order: %s vs %s" % (da.str, db.str))
    if ha.get_data_shape() != hb.get_data_shape():
        diffs.append("shape: %s vs %s" % (ha.get_data_shape(), hb.get_data_shape()))
    if not diffs:
        xa = read_voxels(a, ha, sa)
        xb = read_voxels(b, hb, sb)
        ba = xa.astype(xa.dtype.newbyteorder("=")).tobytes(order="F")
        bb = xb.astype(xb.dtype.newbyteorder("=")).tobytes(order="F")
        if ba != bb:
            na = np.frombuffer(ba, dtype=xa.dtype.newbyteorder("="))
            nb = np.frombuffer(bb, dtype=xa.dtype.newbyteorder("="))
            ua = na.view("u%d" % na.itemsize)
            ub = nb.view("u%d" % nb.itemsize)
            bad = np.nonzero(ua != ub)[0]
            i = int(bad[0])
            idx = np.unravel_index(i, xa.shape, order="F")
            diffs.append("voxel data: %d of %d voxels differ, first at %s: %r vs %r"
                         % (len(bad), na.size, tuple(int(k) for k in idx), na[i], nb[i]))
    if opt.data_only:
        return diffs
    if opt.loose:
        ma, mb = ha.get_best_affine(), hb.get_best_affine()
        if not np.allclose(ma, mb, rtol=0, atol=1e-4):
            diffs.append("best affine differs by %.3g\n%s\nvs\n%s"
                         % (np.abs(ma - mb).max(), ma, mb))
        za = np.abs(np.asarray(ha["pixdim"][1:4], np.float64))
        zb = np.abs(np.asarray(hb["pixdim"][1:4], np.float64))
        if not np.allclose(za, zb, rtol=1e-6, atol=0):
            diffs.append("pixdim[1..3]: %s vs %s" % (za, zb))
        return diffs
    fields = list(SCALE_FIELDS)
    if opt.affine_tol is None:
        fields += GEOM_FIELDS
    if opt.strict:
        fields += STRICT_FIELDS
    for f in fields:
        if f in ign:
            continue
        if not same_bits(ha[f], hb[f]):
            diffs.append("%s: %s vs %s" % (f, fmt(ha[f]), fmt(hb[f])))
    if opt.affine_tol is None:
        for name in ("get_qform", "get_sform", "get_best_affine"):
            if name in ign:
                continue
            ma, mb = getattr(ha, name)(), getattr(hb, name)()
            if not np.array_equal(ma, mb):
                diffs.append("%s(): max abs diff %.3g\n%s\nvs\n%s"
                             % (name, np.abs(ma - mb).max(), ma, mb))
    else:
        ma, mb = ha.get_best_affine(), hb.get_best_affine()
        if not np.allclose(ma, mb, rtol=0, atol=opt.affine_tol):
            diffs.append("affine differs by %.3g > %g\n%s\nvs\n%s"
                         % (np.abs(ma - mb).max(), opt.affine_tol, ma, mb))
    return diffs


def main():
    p = argparse.ArgumentParser(description="compare two NIfTI files")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--strict", action="store_true")
    p.add_argument("--data-only", action="store_true")
    p.add_argument("--affine-tol", type=float, default=None)
    p.add_argument("--same-endian", action="store_true")
    p.add_argument("--loose", action="store_true")
    p.add_argument("--ignore", default="")
    p.add_argument("-q", action="store_true")
    opt = p.parse_args()
    try:
        diffs = compare(opt.a, opt.b, opt)
    except Bad as e:
        sys.stderr.write("niicmp.py: %s\n" % e)
        sys.exit(2)
    except (OSError, EOFError, nib.filebasedimages.ImageFileError) as e:
        sys.stderr.write("niicmp.py: cannot read: %s\n" % e)
        sys.exit(2)
    if diffs:
        if not opt.q:
            sys.stderr.write("niicmp.py: %s and %s differ:\n" % (opt.a, opt.b))
            for d in diffs:
                sys.stderr.write("  %s\n" % d)
        sys.exit(1)
    sys.exit(0)


if __name__ == "__main__":
    main()
