#!/usr/bin/python3
"""pthcheck.py — check a PyTorch checkpoint written by nnp export-model, without torch.

  pthcheck.py check NEW.pth [--like ORIG.pth] [--zero-ds] [--epoch N] [--fold F]
                  [--trainer T] [--config C] [--mirror AXIS... | --no-mirror]
                  [--plans plans.json] [--dataset dataset.json]
  pthcheck.py torch NEW.pth... [--like ORIG.pth...] [--zero-ds] [--plans plans.json]

'check' reads NEW with Python's own zipfile and a pickle.Unpickler whose
find_class returns stand-ins for torch._utils._rebuild_tensor_v2,
torch.FloatStorage and torch.device (nothing of torch is imported) and whose
persistent_load reads the storages from the zip members, then verifies:
  * the container: every member STORED, its data at a 64-byte aligned file
    offset, CRCs (zipfile.testzip), all names under PREFIX/ = the file stem,
    PREFIX/version == b"3\\n", one PREFIX/data/KEY per storage, nothing else
    but PREFIX/data.pkl and PREFIX/byteorder ("little");
  * the pickle: protocol 2, and pickling the loaded object again with
    Python's pickler (protocol 2, the same persistent ids) gives the same bytes;
  * network_weights: an OrderedDict of float32 tensors (offset 0, C-contiguous,
    whole storages) with a _metadata BUILD; with --like: the same names in
    the same order, the same storage key for every name (so aliases share
    storage exactly as in ORIG), the same shapes, bit-identical values (with
    --zero-ds the deep-supervision heads decoder.seg_layers.0..S-3 must be
    all zeros instead), the same _metadata;
  * the other entries: init_args (configuration, fold, device cpu, plans and
    dataset_json equal to the given JSON files or to ORIG's), trainer_name,
    inference_allowed_mirroring_axes (a tuple or None), current_epoch, the
    key order of nnUNetTrainer.save_checkpoint.
'torch' does the same comparisons through torch.load(weights_only=False) and
checks that aliased tensors share memory (several NEW files, each with its
--like file in the same order: torch is imported once).  Exit 0 when all holds, else 1 with
one line per problem.
"""
import argparse, codecs, collections, io, json, os, pickle, struct, sys, types, zipfile
import numpy as np

KEYS = ["network_weights", "optimizer_state", "grad_scaler_state", "logging", "_best_ema", "current_epoch",
        "init_args", "trainer_name", "inference_allowed_mirroring_axes"]
problems = []


def bad(msg):
    problems.append(msg)


# ---- stand-ins for the torch globals a checkpoint names ----
def install_fake_torch():
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    class device:
        def __init__(self, *args):
            self.args = args
            self.type = args[0]

        def __reduce__(self):
            return (device, self.args)

    class Tensor:
        def __init__(self, args):
            self.args = args
            self.storage, self.offset, self.size, self.stride = args[0], args[1], args[2], args[3]

        def __reduce__(self):
            return (_rebuild_tensor_v2, self.args)

        def values(self):
            n = int(np.prod(self.size)) if self.size else 1
            return self.storage.data[self.offset:self.offset + n].reshape(self.size)

    def _rebuild_tensor_v2(*args):
        return Tensor(args)

    FloatStorage.__module__ = device.__module__ = "torch"
    _rebuild_tensor_v2.__module__ = "torch._utils"
    for f in (FloatStorage, device, _rebuild_tensor_v2):
        f.__qualname__ = f.__name__
    torch.FloatStorage, torch.device, torch._utils = FloatStorage, device, utils
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    sys.modules["torch"], sys.modules["torch._utils"] = torch, utils
    return torch, utils, Tensor


FAKE_TORCH = FAKE_UTILS = Tensor = None   # set by cmd_check (cmd_torch imports the real torch)


class Storage:
    def __init__(self, pid, data):
        self.pid = pid
        self.key = pid[2]
        self.data = data


class Unpickler(pickle.Unpickler):
    def __init__(self, f, zf, prefix, numpy_ok):
        super().__init__(f)
        self.zf, self.prefix, self.numpy_ok = zf, prefix, numpy_ok

    def find_class(self, module, name):
        allowed = {("collections", "OrderedDict"): collections.OrderedDict,
                   ("torch._utils", "_rebuild_tensor_v2"): FAKE_UTILS._rebuild_tensor_v2,
                   ("torch", "FloatStorage"): FAKE_TORCH.FloatStorage,
                   ("torch", "device"): FAKE_TORCH.device}
        if self.numpy_ok:   # a trainer's logging holds numpy scalars
            allowed.update({("numpy.core.multiarray", "scalar"): np_scalar, ("numpy._core.multiarray", "scalar"): np_scalar,
                            ("numpy", "dtype"): np.dtype, ("_codecs", "encode"): codecs.encode})
        if (module, name) not in allowed:
            raise pickle.UnpicklingError("unexpected global %s.%s" % (module, name))
        return allowed[(module, name)]

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and pid[1] is FAKE_TORCH.FloatStorage):
            raise pickle.UnpicklingError("unexpected persistent id %r" % (pid,))
        raw = self.zf.read(self.prefix + "data/" + pid[2])
        if len(raw) != 4 * pid[4]:
            bad("storage %s: %d bytes for %d floats" % (pid[2], len(raw), pid[4]))
        return Storage(pid, np.frombuffer(raw, dtype="<f4"))


class Repickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return tuple(list(obj.pid))   # a fresh tuple, as torch.save makes one per use
        return None


def check_zip(path, data):
    zf = zipfile.ZipFile(path)
    stem = os.path.basename(path).rsplit(".", 1)[0]
    prefix = stem + "/"
    names = zf.namelist()
    if zf.testzip() is not None:
        bad("CRC error in %s" % zf.testzip())
    for info in zf.infolist():
        if not info.filename.startswith(prefix):
            bad("member %s is not under %s" % (info.filename, prefix))
        if info.compress_type != zipfile.ZIP_STORED:
            bad("member %s is compressed" % info.filename)
        o = info.header_offset
        nlen, xlen = struct.unpack("<HH", data[o + 26:o + 30])
        if (o + 30 + nlen + xlen) % 64:
            bad("member %s: data at offset %d, not 64-byte aligned" % (info.filename, o + 30 + nlen + xlen))
    if prefix + "data.pkl" not in names or names[0] != prefix + "data.pkl":
        bad("data.pkl is not the first member")
    if prefix + "version" not in names or zf.read(prefix + "version") != b"3\n":
        bad("no %sversion == '3\\n'" % prefix)
    if prefix + "byteorder" in names and zf.read(prefix + "byteorder") != b"little":
        bad("byteorder is not 'little'")
    return zf, prefix, names


def np_scalar(dtype, raw):
    return np.frombuffer(raw, dtype=dtype)[0]


def load(path, numpy_ok=False):
    data = open(path, "rb").read()
    zf, prefix, names = check_zip(path, data)
    pkl = zf.read(prefix + "data.pkl")
    if pkl[:2] != b"\x80\x02":
        bad("the pickle is not protocol 2")
    obj = Unpickler(io.BytesIO(pkl), zf, prefix, numpy_ok).load()
    return obj, pkl, names, prefix


def check_tensors(sd, what):
    if not isinstance(sd, collections.OrderedDict):
        bad("%s network_weights is %s, not an OrderedDict" % (what, type(sd).__name__))
    for name, t in sd.items():
        if not isinstance(t, Tensor):
            bad("%s: %s is not a tensor" % (what, name))
            continue
        acc, want = 1, []
        for s in reversed(t.size):
            want.insert(0, acc)
            acc *= s
        if t.offset != 0 or tuple(t.stride) != tuple(want) or t.storage.pid[4] != acc or t.args[4] is not False:
            bad("%s: %s is not a whole C-contiguous storage" % (what, name))


def ds_heads(names):
    segs = sorted({int(n.split(".")[2]) for n in names if n.startswith("decoder.seg_layers.")})
    return {n for n in names if n.startswith("decoder.seg_layers.") and int(n.split(".")[2]) < segs[-1]}


def compare_weights(new, orig, zero_ds):
    nn, on = list(new), list(orig)
    if nn != on:
        extra, missing = set(nn) - set(on), set(on) - set(nn)
        bad("state_dict names differ from the original: %d extra, %d missing, order %s" %
            (len(extra), len(missing), "same" if not extra and not missing else "-"))
        if not extra and not missing:
            first = next(i for i, (a, b) in enumerate(zip(nn, on)) if a != b)
            bad("  first difference at %d: %s vs %s" % (first, nn[first], on[first]))
        return
    zeros = ds_heads(nn) if zero_ds else set()
    for name in nn:
        a, b = new[name], orig[name]
        if a.storage.key != b.storage.key:
            bad("%s: storage key %s, original %s" % (name, a.storage.key, b.storage.key))
        if tuple(a.size) != tuple(b.size):
            bad("%s: shape %s, original %s" % (name, a.size, b.size))
            continue
        va = a.values()
        if name in zeros:
            if np.any(va != 0):
                bad("%s: a deep-supervision head not in the source must be zeros" % name)
        elif va.tobytes() != b.values().astype("<f4").tobytes():
            bad("%s: values differ from the original" % name)
    if getattr(new, "_metadata", None) != getattr(orig, "_metadata", None):
        bad("_metadata differs from the original")


def check_meta(ck, a, orig):
    if list(ck) != KEYS:
        bad("checkpoint keys %s, want %s" % (list(ck), KEYS))
    ia = ck.get("init_args", {})
    if list(ia) != ["plans", "configuration", "fold", "dataset_json", "device"]:
        bad("init_args keys %s" % list(ia))
    dev = ia.get("device")
    if not isinstance(dev, FAKE_TORCH.device) or dev.args != ("cpu",):
        bad("init_args.device is not torch.device('cpu')")
    for key, file in (("plans", a.plans), ("dataset_json", a.dataset)):
        want = json.load(open(file)) if file else (orig["init_args"][key] if orig else None)
        if want is not None and ia.get(key) != want:
            bad("init_args.%s differs" % key)
    if a.config is not None and ia.get("configuration") != a.config:
        bad("configuration %r, want %r" % (ia.get("configuration"), a.config))
    if a.fold is not None:
        want = int(a.fold) if a.fold.isdigit() else a.fold
        if ia.get("fold") != want or type(ia.get("fold")) is not type(want):
            bad("fold %r, want %r" % (ia.get("fold"), want))
    if a.trainer is not None and ck.get("trainer_name") != a.trainer:
        bad("trainer_name %r, want %r" % (ck.get("trainer_name"), a.trainer))
    ax = ck.get("inference_allowed_mirroring_axes")
    if a.no_mirror and ax is not None:
        bad("mirroring axes %r, want None" % (ax,))
    if a.mirror is not None and ax != tuple(a.mirror):
        bad("mirroring axes %r, want %r" % (ax, tuple(a.mirror)))
    if a.epoch is not None and ck.get("current_epoch") != a.epoch:
        bad("current_epoch %r, want %d" % (ck.get("current_epoch"), a.epoch))
    opt = ck.get("optimizer_state")
    if not (isinstance(opt, dict) and opt.get("state") == {} and
            opt["param_groups"][0]["params"] == list(range(len({t.storage.key for t in ck["network_weights"].values()})))):
        bad("optimizer_state is not a fresh SGD state over every parameter")
    if ck.get("grad_scaler_state") is not None or ck.get("_best_ema") is not None:
        bad("grad_scaler_state / _best_ema not None")
    if not isinstance(ck.get("logging"), dict) or any(v != [] for v in ck["logging"].values()):
        bad("logging is not a dict of empty lists")


def cmd_check(a):
    global FAKE_TORCH, FAKE_UTILS, Tensor
    FAKE_TORCH, FAKE_UTILS, Tensor = install_fake_torch()
    if len(a.new) != 1 or (a.like and len(a.like) != 1):
        bad("check takes one checkpoint and at most one --like file")
        return
    a.new, a.like = a.new[0], a.like[0] if a.like else None
    ck, pkl, names, prefix = load(a.new)
    again = io.BytesIO()
    Repickler(again, protocol=2).dump(ck)
    if again.getvalue() != pkl:
        x, y = again.getvalue(), pkl
        first = next((i for i in range(min(len(x), len(y))) if x[i] != y[i]), min(len(x), len(y)))
        bad("pickling the loaded object again gives other bytes (first difference at byte %d)" % first)
    sd = ck.get("network_weights", {})
    check_tensors(sd, a.new)
    keys = {t.storage.key for t in sd.values()}
    data = {n[len(prefix) + 5:] for n in names if n.startswith(prefix + "data/")}
    if keys != data or set(names) - {prefix + "data/" + k for k in keys} - {prefix + x for x in ("data.pkl", "version", "byteorder")}:
        bad("zip members do not match the storages")
    orig = None
    if a.like:
        orig = load(a.like, numpy_ok=True)[0]
        compare_weights(sd, orig["network_weights"], a.zero_ds)
    check_meta(ck, a, orig)


def cmd_torch(a):
    import torch
    likes = a.like or []
    if likes and len(likes) != len(a.new):
        bad("give one --like file per checkpoint")
        return
    for i, path in enumerate(a.new):
        torch_one(torch, a, path, likes[i] if likes else None)


def torch_one(torch, a, path, like):
    new = torch.load(path, map_location="cpu", weights_only=False)
    sd = new["network_weights"]
    if list(new) != KEYS or not isinstance(sd, collections.OrderedDict):
        bad("%s: torch.load: unexpected keys or network_weights type" % path)
    if not all(t.dtype == torch.float32 for t in sd.values()):
        bad("%s: torch.load: a tensor that is not float32" % path)
    for n, t in sd.items():
        for canon in (n.replace("decoder.encoder.", "encoder.", 1), n.replace(".all_modules.0.", ".conv.")
                      .replace(".all_modules.1.", ".norm.")):
            if canon != n and canon in sd and sd[canon].data_ptr() != t.data_ptr():
                bad("%s: torch.load: %s does not share memory with %s" % (path, n, canon))
    if like:
        orig = torch.load(like, map_location="cpu", weights_only=False)["network_weights"]
        if list(orig) != list(sd):
            bad("%s: torch.load: names or order differ from the original" % path)
        zeros = ds_heads(list(sd)) if a.zero_ds else set()
        for n in sd:
            if n in zeros:
                if torch.count_nonzero(sd[n]):
                    bad("%s: torch.load: %s is not zero" % (path, n))
            elif n not in orig or not torch.equal(sd[n], orig[n].float()):
                bad("%s: torch.load: %s differs" % (path, n))
        if getattr(sd, "_metadata", None) != getattr(orig, "_metadata", None):
            bad("%s: torch.load: _metadata differs" % path)
    if a.plans and new["init_args"]["plans"] != json.load(open(a.plans)):
        bad("%s: torch.load: init_args.plans differs" % path)
    if new["init_args"]["device"] != torch.device("cpu"):
        bad("%s: torch.load: device is not cpu" % path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["check", "torch"])
    ap.add_argument("new", nargs="+")
    ap.add_argument("--like", nargs="*")
    ap.add_argument("--zero-ds", action="store_true")
    ap.add_argument("--epoch", type=int)
    ap.add_argument("--fold")
    ap.add_argument("--trainer")
    ap.add_argument("--config")
    ap.add_argument("--mirror", nargs="*", type=int)
    ap.add_argument("--no-mirror", action="store_true")
    ap.add_argument("--plans")
    ap.add_argument("--dataset")
    a = ap.parse_args()
    (cmd_check if a.cmd == "check" else cmd_torch)(a)
    for p in problems:
        print("pthcheck: " + p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
