"""nnpframe.py — a small, independent Python reader/writer of nnp frame streams.

Used by frame_decode.py, frame_edit.py and frame_encode.py.  It uses only the
generic msgpack Unpacker/Packer (python3-msgpack): the point is to prove that a
stock msgpack decoder reads what the C programs write, and that the C programs
read what a stock encoder writes.

Stream = top-level msgpack objects.  Frame = header map ("nnp": "frame", ...)
followed by header["nchunks"] bin objects; chunk i holds slices
[i*chunk, min((i+1)*chunk, z)) of all channels as (c, zs, y, x), x fastest.
"""
import io
import math

import msgpack
import numpy as np

REQUIRED = ("nnp", "v", "role", "dtype", "shape", "chunk", "nchunks", "nbytes")


class StreamError(Exception):
    pass


class Obj:
    """One top-level msgpack object of a stream with its byte range."""

    def __init__(self, value, start, end, first_byte):
        self.value, self.start, self.end, self.first_byte = value, start, end, first_byte


def objects(data):
    """All top-level objects of data (bytes) with their offsets."""
    u = msgpack.Unpacker(io.BytesIO(data), raw=False, strict_map_key=False,
                         max_buffer_size=0)
    out = []
    start = 0
    while True:
        try:
            v = u.unpack()
        except msgpack.OutOfData:
            if start != len(data):
                raise StreamError("truncated object at byte %d" % start)
            break
        end = u.tell()
        out.append(Obj(v, start, end, data[start]))
        start = end
    return out


class Frame:
    def __init__(self, header, hobj):
        self.header = header
        self.hobj = hobj
        self.chunks = []       # list of Obj (values are bytes)
        self.array = None      # (c, z, y, x) numpy array, dtype as in header


def frames(data, check=True):
    """Parse a stream into Frames; validate the structure if check."""
    objs = objects(data)
    out = []
    i = 0
    while i < len(objs):
        o = objs[i]
        h = o.value
        if not isinstance(h, dict):
            raise StreamError("object at byte %d is a %s, not a header map"
                              % (o.start, type(h).__name__))
        if h.get("nnp") != "frame":
            raise StreamError("map at byte %d has no \"nnp\": \"frame\"" % o.start)
        f = Frame(h, o)
        if check:
            check_header(h, o.start)
        n = int(h.get("nchunks", 0))
        if i + 1 + n > len(objs):
            raise StreamError("frame at byte %d: %d chunks announced, %d present"
                              % (o.start, n, len(objs) - i - 1))
        f.chunks = objs[i + 1:i + 1 + n]
        i += 1 + n
        if check:
            f.array = assemble(f)
        out.append(f)
    return out


def check_header(h, at):
    for k in REQUIRED:
        if k not in h:
            raise StreamError("header at byte %d lacks \"%s\"" % (at, k))
    v = h["v"]
    if not (isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) for x in v)):
        raise StreamError("header at byte %d: bad \"v\" %r" % (at, v))
    if v[0] != 1:
        raise StreamError("header at byte %d: major version %d" % (at, v[0]))
    dt = np.dtype(h["dtype"])
    if h["dtype"][0] not in "<>|":
        raise StreamError("dtype %r has no explicit byte order" % h["dtype"])
    shape = h["shape"]
    if not (isinstance(shape, list) and len(shape) == 4 and all(
            isinstance(x, int) and x >= 1 for x in shape)):
        raise StreamError("header at byte %d: bad shape %r" % (at, shape))
    c, z, y, x = shape
    if h["nbytes"] != c * z * y * x * dt.itemsize:
        raise StreamError("nbytes %d != %d" % (h["nbytes"], c * z * y * x * dt.itemsize))
    ch = h["chunk"]
    if not (isinstance(ch, int) and 1 <= ch):
        raise StreamError("bad chunk %r" % ch)
    if h["nchunks"] != math.ceil(z / ch):
        raise StreamError("nchunks %d != ceil(%d/%d)" % (h["nchunks"], z, ch))
    if "spacing" in h:
        sp = h["spacing"]
        if not (isinstance(sp, list) and len(sp) == 3):
            raise StreamError("bad spacing %r" % (sp,))
    if "affine" in h:
        a = h["affine"]
        if not (isinstance(a, list) and len(a) == 4 and all(
                isinstance(r, list) and len(r) == 4 for r in a)):
            raise StreamError("bad affine %r" % (a,))
    if "codec" in h and h["codec"] != "raw":
        raise StreamError("codec %r" % h["codec"])
    if "scale" in h and h["scale"] is not None:
        s = h["scale"]
        if not (isinstance(s, list) and len(s) == c and all(
                isinstance(p, list) and len(p) == 2 for p in s)):
            raise StreamError("scale %r is not one [slope, inter] per channel" % (s,))


def assemble(f):
    h = f.header
    dt = np.dtype(h["dtype"])
    c, z, y, x = h["shape"]
    ch = h["chunk"]
    slabs = []
    for k, o in enumerate(f.chunks):
        b = o.value
        if not isinstance(b, (bytes, bytearray)):
            raise StreamError("chunk %d at byte %d is a %s, not bin"
                              % (k, o.start, type(b).__name__))
        zs = min(ch, z - k * ch)
        want = c * zs * y * x * dt.itemsize
        if len(b) != want:
            raise StreamError("chunk %d at byte %d has %d bytes, expected %d"
                              % (k, o.start, len(b), want))
        if len(b) > 64 << 20:
            raise StreamError("chunk %d over 64 MiB" % k)
        slabs.append(np.frombuffer(b, dtype=dt).reshape(c, zs, y, x))
    return np.concatenate(slabs, axis=1) if slabs else np.zeros((c, 0, y, x), dt)


def pack(obj):
    return msgpack.packb(obj, use_bin_type=True)


def encode_frame(header, array, chunk=None):
    """Encode a (c, z, y, x) array as one frame; header gets the size fields."""
    a = np.ascontiguousarray(array)
    c, z, y, x = a.shape
    if chunk is None:
        chunk = max(1, (8 << 20) // max(1, c * y * x * a.dtype.itemsize))
    chunk = min(chunk, z)
    h = dict(header)
    h.setdefault("nnp", "frame")
    h.setdefault("v", [1, 0])
    h["dtype"] = a.dtype.str
    h["shape"] = [c, z, y, x]
    h["chunk"] = chunk
    h["nchunks"] = math.ceil(z / chunk)
    h["nbytes"] = a.nbytes
    h.setdefault("codec", "raw")
    out = [pack(h)]
    for z0 in range(0, z, chunk):
        out.append(pack(a[:, z0:z0 + chunk].tobytes()))
    return b"".join(out)


def nii_to_cz(path):
    """A NIfTI file's unscaled voxels as (c, z, y, x), plus the image."""
    import nibabel as nib
    img = nib.load(path)
    a = np.asarray(img.dataobj.get_unscaled())
    if a.ndim == 3:
        a = a.transpose(2, 1, 0)[None]
    elif a.ndim == 4:
        a = a.transpose(3, 2, 1, 0)
    else:
        raise StreamError("%s: %d-D image" % (path, a.ndim))
    return a, img
