#!/usr/bin/python3
"""mkmodel.py — write an nnU-Net results folder with random weights, without torch.

  mkmodel.py --plans PLANS.json --config C --dataset-json D.json --out DIR
             [--folds 0 1] [--seed 1] [--npz]   [--mirror-axes 0 1 2]

DIR gets plans.json, dataset.json and fold_N/checkpoint_final.pth in PyTorch's
zip format (pickle protocol 2, storages as STORED members 64-byte aligned,
GLOBALs torch._utils._rebuild_tensor_v2 / torch.FloatStorage /
collections.OrderedDict / torch.device — what torch.save writes), holding
'network_weights' (every parameter under nnU-Net's state_dict names, with the
all_modules.* and decoder.encoder.* aliases sharing storage), init_args,
trainer_name, current_epoch and inference_allowed_mirroring_axes.  The
parameter names/shapes are derived here independently of nnpipe's C graph
(dynamic_network_architectures' module structure).  --npz also writes
fold_N/weights.npz for tests/tools/unet_reference.py.

Weights: He normal (a=0.01) for convs, biases ~ N(0, 0.5), norm weights
~ N(1, 0.2), norm biases ~ N(0, 0.5) (like the fixtures' tiny models).
"""
import argparse, collections, io, json, os, pickle, sys, types, zipfile
import numpy as np

# ---- fake torch globals so that pickle writes the names torch would ----
torch = types.ModuleType("torch")
torch_utils = types.ModuleType("torch._utils")


def _rebuild_tensor_v2(*a):
    raise RuntimeError("never called")


_rebuild_tensor_v2.__module__ = "torch._utils"
torch_utils._rebuild_tensor_v2 = _rebuild_tensor_v2


class FloatStorage:
    pass


FloatStorage.__module__ = "torch"


class device:
    def __init__(self, s):
        self.s = s

    def __reduce__(self):
        return (device, (self.s,))


device.__module__ = "torch"
torch.FloatStorage = FloatStorage
torch.device = device
torch._utils = torch_utils
sys.modules.setdefault("torch", torch)
sys.modules.setdefault("torch._utils", torch_utils)


class Tensor:
    def __init__(self, key, shape):
        self.key, self.shape = key, tuple(int(s) for s in shape)

    def __reduce__(self):
        stride, acc = [], 1
        for s in reversed(self.shape):
            stride.insert(0, acc)
            acc *= s
        return (_rebuild_tensor_v2, (StorageRef(self.key, acc), 0, self.shape, tuple(stride), False,
                                     collections.OrderedDict()))


class StorageRef:
    def __init__(self, key, numel):
        self.key, self.numel = key, numel


class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, StorageRef):
            return ("storage", FloatStorage, obj.key, "cpu", obj.numel)
        return None


# ---- nnU-Net parameter names (dynamic_network_architectures) ----
def conv_block(prefix, cin, cout, k, bias=True):
    out = [(prefix + ".conv.weight", (cout, cin) + tuple(k))]
    if bias:
        out.append((prefix + ".conv.bias", (cout,)))
    out += [(prefix + ".norm.weight", (cout,)), (prefix + ".norm.bias", (cout,))]
    return out


def params(arch, cin, ncls):
    kw = arch["arch_kwargs"]
    cls = arch["network_class_name"].rsplit(".", 1)[1]
    S, F, K, ST = kw["n_stages"], kw["features_per_stage"], kw["kernel_sizes"], kw["strides"]
    bias = kw["conv_bias"]
    enc = []
    if cls == "PlainConvUNet":
        c = cin
        for s in range(S):
            for k in range(kw["n_conv_per_stage"][s]):
                enc += conv_block(f"encoder.stages.{s}.0.convs.{k}", c, F[s], K[s], bias)
                c = F[s]
    else:
        enc += conv_block("encoder.stem.convs.0", cin, F[0], K[0], bias)
        c = F[0]
        for s in range(S):
            for b in range(kw["n_blocks_per_stage"][s]):
                st = ST[s] if b == 0 else [1] * len(ST[s])
                p = f"encoder.stages.{s}.blocks.{b}"
                enc += conv_block(p + ".conv1", c, F[s], K[s], bias)
                enc += conv_block(p + ".conv2", F[s], F[s], K[s], bias)
                if any(x != 1 for x in st) or c != F[s]:
                    idx = 1 if any(x != 1 for x in st) else 0
                    if c != F[s]:
                        enc += conv_block(f"{p}.skip.{idx}", c, F[s], [1] * len(K[s]), False)
                c = F[s]
    dec = []
    for j in range(S - 1):
        s = S - 2 - j
        for k in range(kw["n_conv_per_stage_decoder"][j]):
            dec += conv_block(f"decoder.stages.{j}.convs.{k}", 2 * F[s] if k == 0 else F[s], F[s], K[s], bias)
    tr = []
    for j in range(S - 1):
        s = S - 2 - j
        tr.append((f"decoder.transpconvs.{j}.weight", (F[s + 1], F[s]) + tuple(ST[s + 1])))
        if bias:
            tr.append((f"decoder.transpconvs.{j}.bias", (F[s],)))
    seg = []
    for j in range(S - 1):
        s = S - 2 - j
        seg += [(f"decoder.seg_layers.{j}.weight", (ncls, F[s]) + (1,) * len(K[s])),
                (f"decoder.seg_layers.{j}.bias", (ncls,))]
    return enc, dec + tr + seg


def num_heads(ds):
    labels = ds["labels"]
    if any(isinstance(v, list) and len(v) > 1 for v in labels.values()):
        return sum(1 for k, v in labels.items() if k != "ignore" and not all(x == 0 for x in np.atleast_1d(v)))
    return max(int(np.atleast_1d(v)[0]) for k, v in labels.items() if k != "ignore") + 1


def random_value(rng, name, shape):
    if name.endswith("norm.weight"):
        return rng.normal(1, 0.2, shape)
    if name.endswith("bias"):
        return rng.normal(0, 0.5, shape)
    fan_in = int(np.prod(shape[1:]))
    return rng.normal(0, np.sqrt(2 / (1 + 1e-4)) / np.sqrt(fan_in), shape)


def aliases(name):
    """The all_modules.* aliases of a ConvDropoutNormReLU's conv and norm."""
    for a, b in ((".conv.weight", ".all_modules.0.weight"), (".conv.bias", ".all_modules.0.bias"),
                 (".norm.weight", ".all_modules.1.weight"), (".norm.bias", ".all_modules.1.bias")):
        if name.endswith(a):
            return [name[: -len(a)] + b]
    return []


def write_fold(path, plans, config, ds, fold, seed, axes, npz):
    arch = plans["configurations"][config]["architecture"]
    cin = len(ds["channel_names"])
    enc, rest = params(arch, cin, num_heads(ds))
    rng = np.random.RandomState(seed)
    sd, blobs, weights = collections.OrderedDict(), [], {}
    def add(name, shape, key):
        sd[name] = Tensor(key, shape)
    for name, shape in enc + rest:
        key = str(len(blobs))
        v = random_value(rng, name, shape).astype("<f4")
        blobs.append(v.tobytes())
        weights[name] = v
        add(name, shape, key)
        for al in aliases(name):
            add(al, shape, key)
    for name, shape in enc:  # the decoder's reference to the encoder
        key = [t.key for n, t in sd.items() if n == name][0]
        add("decoder.encoder." + name, shape, key)
        for al in aliases(name):
            add("decoder.encoder." + al, shape, key)
    ckpt = {"network_weights": sd, "optimizer_state": None, "grad_scaler_state": None, "logging": {},
            "_best_ema": None, "current_epoch": 1,
            "init_args": {"plans": plans, "configuration": config, "fold": fold, "dataset_json": ds,
                          "device": device("cpu")},
            "trainer_name": "nnUNetTrainer", "inference_allowed_mirroring_axes": tuple(axes)}
    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump(ckpt)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pre = "checkpoint_final/"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(pre + "data.pkl", buf.getvalue())
        for i, b in enumerate(blobs):
            z.writestr(pre + f"data/{i}", b)
        z.writestr(pre + "version", "3\n")
    if npz:
        np.savez(os.path.join(os.path.dirname(path), "weights.npz"), **weights)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--plans", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--dataset-json", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--folds", nargs="+", default=["0"])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--mirror-axes", nargs="*", type=int)
    ap.add_argument("--npz", action="store_true")
    a = ap.parse_args()
    plans = json.load(open(a.plans))
    ds = json.load(open(a.dataset_json))
    nd = len(plans["configurations"][a.config]["patch_size"])
    axes = a.mirror_axes if a.mirror_axes is not None else list(range(nd))
    os.makedirs(a.out, exist_ok=True)
    json.dump(plans, open(os.path.join(a.out, "plans.json"), "w"), indent=1)
    json.dump(ds, open(os.path.join(a.out, "dataset.json"), "w"), indent=1)
    for i, f in enumerate(a.folds):
        write_fold(os.path.join(a.out, f"fold_{f}", "checkpoint_final.pth"), plans, a.config, ds,
                   int(f) if f.isdigit() else f, a.seed + 1000 * i, axes, a.npz)
    return 0


if __name__ == "__main__":
    sys.exit(main())
