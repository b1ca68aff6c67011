#!/usr/bin/python3
"""mknii.py — write a synthetic NIfTI test file (deterministic).

Usage: mknii.py [options] OUT
  OUT ends with .nii, .nii.gz or .hdr (a .hdr/.img pair; .img written beside it).

Options:
  --dtype T        u8 i8 i16 u16 i32 u32 i64 u64 f32 f64  (default i16)
                   (c64 too: a dtype nnpipe does not support, for error tests)
  --shape X,Y,Z[,T]  nibabel/NIfTI order, x fastest on disk (default 7,6,5)
                   (a 5th size makes a 5-D file, for error tests)
  --form F         qform | sform | both | none  (default both)
                   qform: qform_code 1, sform_code 0
                   sform: qform_code 0, sform_code 2 (sform has a shear)
                   both : qform_code 1 and sform_code 4 with a DIFFERENT sform
                   none : both codes 0 (pixdim only)
  --slope S --inter I  store scl_slope / scl_inter (default: 0 and 0 = no scaling)
  --nifti2         NIfTI-2 header (540 bytes, int64 dims)
  --big-endian     big-endian header and voxel data (a byte-swapped file)
  --seed N         random seed (default 0); same options + seed = same bytes
  --geom-seed N    seed of the affines only (default: --seed), so that files
                   with different data share one geometry (channels, labels)
  --pixdim A,B,C   voxel size x,y,z in mm (default 0.75,1.25,2.5)
  --values V       random (default) | ramp (0,1,2,... in file order) | const:K
                   | labels:N (integers 0..N-1)
  --no-specials    for floats: do not plant NaN, +-inf, -0.0 and denormals
  --descrip TEXT   descrip field (default "nnpipe test")
  --ext-comment T  add a NIfTI extension (ecode 6, comment) holding T
  --intent N       intent_code (default 0)
  --gzip-level N   for .nii.gz (default 6); the gzip mtime is always 0

The data also goes to OUT.npy with --npy (the array exactly as nibabel sees it,
unscaled, in x,y,z[,t] order), which the tests use as an independent truth.

Writing is done here, byte by byte (header block from nibabel, then the 4-byte
extension flag, extensions, padding to vox_offset, then voxels in Fortran
order), so the file layout does not depend on nibabel's writer policy
(which would rescale data or reset scl_slope); nibabel reads the result back
and the script checks that it sees what was intended.
"""
import argparse
import gzip
import io
import math
import struct
import sys

import numpy as np
import nibabel as nib
from nibabel import nifti1, nifti2

DTYPES = {
    "u8": np.uint8, "i8": np.int8, "i16": np.int16, "u16": np.uint16,
    "i32": np.int32, "u32": np.uint32, "i64": np.int64, "u64": np.uint64,
    "f32": np.float32, "f64": np.float64,
    "c64": np.complex64,   # not supported by nnpipe: for error tests
}


def die(msg):
    sys.stderr.write("mknii.py: error: %s\n" % msg)
    sys.exit(2)


def rot(ax, ay, az):
    """Rotation matrix from Euler angles (radians)."""
    cx, sx = math.cos(ax), math.sin(ax)
    cy, sy = math.cos(ay), math.sin(ay)
    cz, sz = math.cos(az), math.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def qform_affine(rng, zooms):
    """Rotation + translation, det < 0 (qfac = -1, as DICOM-derived files)."""
    a = rng.uniform(-0.6, 0.6, 3)
    r = rot(*a) @ np.diag([-1.0, 1.0, 1.0])
    aff = np.eye(4)
    aff[:3, :3] = r @ np.diag(zooms)
    aff[:3, 3] = rng.uniform(-120, 120, 3)
    return aff


def sform_affine(rng, zooms):
    """A general affine: rotation, anisotropic scale, a small shear, shift."""
    a = rng.uniform(-0.9, 0.9, 3)
    shear = np.eye(3)
    shear[0, 1] = 0.07
    shear[1, 2] = -0.03
    aff = np.eye(4)
    aff[:3, :3] = rot(*a) @ shear @ np.diag(np.array(zooms) * [1.0, 1.1, 0.9])
    aff[:3, 3] = rng.uniform(-200, 200, 3)
    return aff


def make_data(rng, dt, shape, values, specials):
    dt = np.dtype(dt)
    n = int(np.prod(shape))
    if values == "ramp":
        flat = (np.arange(n) % (256 if dt.itemsize == 1 else 65536)).astype(dt)
    elif values.startswith("const:"):
        flat = np.full(n, float(values[6:])).astype(dt)
    elif values.startswith("labels:"):
        flat = rng.integers(0, int(values[7:]), n).astype(dt)
    elif dt.kind in "iu":
        info = np.iinfo(dt)
        flat = rng.integers(info.min, info.max, n, dtype=dt, endpoint=True)
        if n >= 2:
            flat[0], flat[1] = info.min, info.max
    elif dt.kind == "c":
        flat = (rng.standard_normal(n) + 1j * rng.standard_normal(n)).astype(dt)
    else:
        flat = rng.standard_normal(n) * 1000.0
        flat = flat.astype(dt)
        if specials and n >= 8:
            fi = np.finfo(dt)
            flat[1:8] = np.array([np.nan, np.inf, -np.inf, -0.0, fi.tiny / 4,
                                  fi.max, fi.min], dtype=dt)
    return flat.reshape(shape, order="F")


def build(args):
    if args.dtype not in DTYPES:
        die("unknown dtype '%s'" % args.dtype)
    try:
        shape = tuple(int(s) for s in args.shape.split(","))
    except ValueError:
        die("bad --shape '%s'" % args.shape)
    if len(shape) not in (3, 4, 5) or min(shape) < 1:
        die("--shape needs 3 or 4 (5 for error tests) positive sizes")
    zooms = [float(s) for s in args.pixdim.split(",")]
    if len(zooms) != 3:
        die("--pixdim needs 3 values")
    out = args.out
    pair = out.endswith(".hdr")
    gz = out.endswith(".nii.gz")
    if not (pair or gz or out.endswith(".nii")):
        die("OUT must end with .nii, .nii.gz or .hdr")
    if pair and args.nifti2:
        hcls = nifti2.Nifti2PairHeader
    elif pair:
        hcls = nifti1.Nifti1PairHeader
    elif args.nifti2:
        hcls = nifti2.Nifti2Header
    else:
        hcls = nifti1.Nifti1Header
    endian = ">" if args.big_endian else "<"
    hdr = hcls(endianness=endian)
    rng = np.random.default_rng(args.seed)
    grng = np.random.default_rng(args.seed if args.geom_seed is None else args.geom_seed)
    data = make_data(rng, DTYPES[args.dtype], shape, args.values, not args.no_specials)
    hdr.set_data_dtype(DTYPES[args.dtype])
    hdr.set_data_shape(shape)
    hdr.set_zooms(tuple(zooms) + (1.5, 1.0)[:len(shape) - 3])
    hdr.set_xyzt_units("mm", "sec")
    qa = qform_affine(grng, zooms)
    sa = sform_affine(grng, zooms)
    if args.form in ("qform", "both"):
        hdr.set_qform(qa, code=1)
    else:
        hdr.set_qform(None, code=0)
    if args.form == "sform":
        hdr.set_sform(sa, code=2)
    elif args.form == "both":
        hdr.set_sform(sa, code=4)
    elif args.form == "none":
        hdr.set_sform(None, code=0)
    else:
        hdr.set_sform(None, code=0)
    if args.form in ("sform", "none"):
        # set_qform(None) keeps pixdim; make the unused quaternion fields
        # non-trivial anyway so that a writer that drops them is caught
        hdr["quatern_b"], hdr["quatern_c"], hdr["quatern_d"] = 0.1, -0.2, 0.3
        hdr["qoffset_x"], hdr["qoffset_y"], hdr["qoffset_z"] = 11.5, -7.25, 3.0
    if args.form in ("qform", "none"):
        hdr["srow_x"] = [0.5, 0.0, 0.0, 1.0]
        hdr["srow_y"] = [0.0, 0.5, 0.0, 2.0]
        hdr["srow_z"] = [0.0, 0.0, 0.5, 3.0]
    hdr["scl_slope"] = args.slope
    hdr["scl_inter"] = args.inter
    hdr["descrip"] = args.descrip.encode()
    hdr["intent_code"] = args.intent
    hdr["cal_min"], hdr["cal_max"] = 0.0, 0.0
    exts = b""
    if args.ext_comment is not None:
        e = nifti1.Nifti1Extension(6, args.ext_comment.encode())
        hdr.extensions.append(e)
        bio = io.BytesIO()
        hdr.extensions.write_to(bio, args.big_endian)  # arg: byteswap
        exts = bio.getvalue()
    hsize = len(hdr.binaryblock)
    if pair:
        hdr.set_data_offset(0)
    else:
        off = hsize + 4 + len(exts)
        off = (off + 15) // 16 * 16
        hdr.set_data_offset(off)
    hblock = hdr.binaryblock
    flag = struct.pack("4B", 1 if exts else 0, 0, 0, 0)
    vox = data.astype(np.dtype(DTYPES[args.dtype]).newbyteorder(endian)).tobytes(order="F")
    if pair:
        with open(out, "wb") as f:
            f.write(hblock + flag + exts)
        with open(out[:-4] + ".img", "wb") as f:
            f.write(vox)
    else:
        body = hblock + flag + exts
        body += b"\0" * (hdr.get_data_offset() - len(body))
        body += vox
        if gz:
            with open(out, "wb") as f:
                with gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="",
                                   compresslevel=args.gzip_level) as g:
                    g.write(body)
        else:
            with open(out, "wb") as f:
                f.write(body)
    # read back with nibabel and check it sees what we meant
    img = nib.load(out)
    got = img.dataobj.get_unscaled()
    if got.shape != data.shape or got.dtype.newbyteorder("=") != data.dtype.newbyteorder("="):
        die("nibabel reads back %s %s, wrote %s %s" % (got.dtype, got.shape, data.dtype, data.shape))
    if got.astype(got.dtype.newbyteorder("=")).tobytes(order="F") != data.astype(
            data.dtype.newbyteorder("=")).tobytes(order="F"):
        die("nibabel reads back different voxels")
    if args.npy:
        np.save(out + ".npy", data)


def main():
    p = argparse.ArgumentParser(description="write a synthetic NIfTI test file")
    p.add_argument("out")
    p.add_argument("--dtype", default="i16")
    p.add_argument("--shape", default="7,6,5")
    p.add_argument("--form", default="both", choices=["qform", "sform", "both", "none"])
    p.add_argument("--slope", type=float, default=0.0)
    p.add_argument("--inter", type=float, default=0.0)
    p.add_argument("--nifti2", action="store_true")
    p.add_argument("--big-endian", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--geom-seed", type=int, default=None)
    p.add_argument("--pixdim", default="0.75,1.25,2.5")
    p.add_argument("--values", default="random")
    p.add_argument("--no-specials", action="store_true")
    p.add_argument("--descrip", default="nnpipe test")
    p.add_argument("--ext-comment", default=None)
    p.add_argument("--intent", type=int, default=0)
    p.add_argument("--gzip-level", type=int, default=6)
    p.add_argument("--npy", action="store_true")
    build(p.parse_args())


if __name__ == "__main__":
    main()
