#!/usr/bin/python3
"""unet_reference.py — nnU-Net's PlainConvUNet / ResidualEncoderUNet forward in
float64 numpy, an oracle independent of nnpipe's C engine (and of torch).

  unet_reference.py PLANS.json CONFIG WEIGHTS.npz IN.npy OUT.npy

IN.npy: (C, *spatial) float32; OUT.npy: (K, *spatial) float32 logits (deep
supervision off).  The module structure follows dynamic_network_architectures
(nnunet-facts §6.2-6.3): ConvDropoutNormReLU = conv (padding (k-1)//2) ->
InstanceNorm(eps, affine, biased variance) -> LeakyReLU(0.01); BasicBlockD =
conv1 (stride) + conv2 (no nonlin) + skip (AvgPool(stride) then 1x1 conv +
norm when channels change) -> LeakyReLU; decoder = transposed conv (kernel =
stride), concat(up, skip), convs, 1x1 head at full resolution.
"""
import json, sys
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def conv(x, w, b, stride):
    nd = x.ndim - 1
    k = w.shape[2:]
    pad = [(0, 0)] + [((kk - 1) // 2, (kk - 1) // 2) for kk in k]
    xp = np.pad(x, pad)
    win = sliding_window_view(xp, k, axis=tuple(range(1, nd + 1)))
    win = win[(slice(None),) + tuple(slice(None, None, s) for s in stride)]
    out = np.tensordot(w, win, axes=([1] + list(range(2, 2 + nd)), [0] + list(range(nd + 1, 2 * nd + 1))))
    if b is not None:
        out += b.reshape((-1,) + (1,) * nd)
    return out


def deconv(x, w, b):
    nd = x.ndim - 1
    k = w.shape[2:]
    t = np.tensordot(w, x, axes=([0], [0]))  # (co, *k, *sp)
    order = [0]
    for d in range(nd):
        order += [1 + nd + d, 1 + d]
    t = t.transpose(order)
    shape = [t.shape[0]] + [x.shape[1 + d] * k[d] for d in range(nd)]
    out = t.reshape(shape)
    if b is not None:
        out += b.reshape((-1,) + (1,) * nd)
    return out


def inorm(x, g, b, eps):
    ax = tuple(range(1, x.ndim))
    m = x.mean(axis=ax, keepdims=True)
    v = ((x - m) ** 2).mean(axis=ax, keepdims=True)
    y = (x - m) / np.sqrt(v + eps)
    sh = (-1,) + (1,) * (x.ndim - 1)
    return y * g.reshape(sh) + b.reshape(sh)


def lrelu(x, slope=0.01):
    return np.where(x > 0, x, x * slope)


def avgpool(x, k):
    shape = [x.shape[0]]
    for d, kk in enumerate(k):
        shape += [x.shape[1 + d] // kk, kk]
    return x.reshape(shape).mean(axis=tuple(range(2, len(shape), 2)))


class Net:
    def __init__(self, arch, W):
        self.kw, self.W = arch["arch_kwargs"], W
        self.cls = arch["network_class_name"].rsplit(".", 1)[1]
        self.eps = self.kw["norm_op_kwargs"]["eps"]

    def p(self, name):
        return self.W[name].astype(np.float64) if name in self.W else None

    def cdnr(self, prefix, x, stride, act=True):
        y = conv(x, self.p(prefix + ".conv.weight"), self.p(prefix + ".conv.bias"), stride)
        y = inorm(y, self.p(prefix + ".norm.weight"), self.p(prefix + ".norm.bias"), self.eps)
        return lrelu(y) if act else y

    def encoder(self, x):
        kw, skips = self.kw, []
        S = kw["n_stages"]
        if self.cls == "PlainConvUNet":
            for s in range(S):
                for k in range(kw["n_conv_per_stage"][s]):
                    x = self.cdnr(f"encoder.stages.{s}.0.convs.{k}", x, kw["strides"][s] if k == 0 else
                                  [1] * len(kw["strides"][s]))
                skips.append(x)
            return skips
        x = self.cdnr("encoder.stem.convs.0", x, [1] * len(kw["strides"][0]))
        for s in range(S):
            for b in range(kw["n_blocks_per_stage"][s]):
                st = kw["strides"][s] if b == 0 else [1] * len(kw["strides"][s])
                p = f"encoder.stages.{s}.blocks.{b}"
                y = self.cdnr(p + ".conv1", x, st)
                y = self.cdnr(p + ".conv2", y, [1] * len(st), act=False)
                r = x
                strided = any(v != 1 for v in st)
                if strided:
                    r = avgpool(r, st)
                if x.shape[0] != y.shape[0]:
                    r = self.cdnr(f"{p}.skip.{1 if strided else 0}", r, [1] * len(st), act=False)
                x = lrelu(y + r)
            skips.append(x)
        return skips

    def forward(self, x):
        kw = self.kw
        skips = self.encoder(x)
        x = skips[-1]
        S = kw["n_stages"]
        for j in range(S - 1):
            s = S - 2 - j
            x = deconv(x, self.p(f"decoder.transpconvs.{j}.weight"), self.p(f"decoder.transpconvs.{j}.bias"))
            x = np.concatenate([x, skips[s]], axis=0)
            for k in range(kw["n_conv_per_stage_decoder"][j]):
                x = self.cdnr(f"decoder.stages.{j}.convs.{k}", x, [1] * len(kw["strides"][s]))
        return conv(x, self.p(f"decoder.seg_layers.{S - 2}.weight"), self.p(f"decoder.seg_layers.{S - 2}.bias"),
                    [1] * (x.ndim - 1))


def main():
    plans, config, wpath, inp, outp = sys.argv[1:6]
    arch = json.load(open(plans))["configurations"][config]["architecture"]
    W = dict(np.load(wpath))
    x = np.load(inp).astype(np.float64)
    np.save(outp, Net(arch, W).forward(x).astype(np.float32))
    return 0


if __name__ == "__main__":
    sys.exit(main())
