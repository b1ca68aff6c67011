#!/usr/bin/python3
"""torch_trainstep.py — the PyTorch side of the training-step benchmark.

  torch_trainstep.py PLANS.json CONFIG [--channels C] [--classes K] [--batch B] [--reps N] [--threads T]

Builds nnU-Net's PlainConvUNet for the configuration in plain PyTorch
(Conv, InstanceNorm(affine, eps 1e-5), LeakyReLU(0.01, inplace), transposed
convs, concat skips, a 1x1 head per decoder stage: deep supervision), and
times forward + backward of a batch with the loss sum_h <r_h, y_h> (fixed
random r_h): the same work as tests/tools/nnp-trainstep.c.  No optimizer
step (O(parameters), negligible).  Prints "best mean" seconds per step.
"""
import argparse, json, time
import torch
import torch.nn as nn

ap = argparse.ArgumentParser()
ap.add_argument("plans"); ap.add_argument("config")
ap.add_argument("--channels", type=int, default=1); ap.add_argument("--classes", type=int, default=3)
ap.add_argument("--batch", type=int, default=0); ap.add_argument("--reps", type=int, default=3)
ap.add_argument("--threads", type=int, default=2)
a = ap.parse_args()
torch.set_num_threads(a.threads)
cfg = json.load(open(a.plans))["configurations"][a.config]
kw = cfg["architecture"]["arch_kwargs"]
patch = cfg["patch_size"]; B = a.batch or cfg["batch_size"]
nd = len(patch)
Conv = nn.Conv3d if nd == 3 else nn.Conv2d
Norm = nn.InstanceNorm3d if nd == 3 else nn.InstanceNorm2d
Up = nn.ConvTranspose3d if nd == 3 else nn.ConvTranspose2d


def block(cin, cout, k, s):
    return [Conv(cin, cout, k, s, [(x - 1) // 2 for x in k]), Norm(cout, eps=1e-5, affine=True),
            nn.LeakyReLU(0.01, inplace=True)]


class UNet(nn.Module):
    def __init__(self):
        super().__init__()
        F, K, S = kw["features_per_stage"], kw["kernel_sizes"], kw["strides"]
        self.enc = nn.ModuleList()
        cin = a.channels
        for s in range(len(F)):
            layers = []
            for j in range(kw["n_conv_per_stage"][s]):
                layers += block(cin if j == 0 else F[s], F[s], K[s], S[s] if j == 0 else 1)
            self.enc.append(nn.Sequential(*layers))
            cin = F[s]
        self.up, self.dec, self.heads = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for j in range(len(F) - 1):
            s = len(F) - 2 - j
            self.up.append(Up(F[s + 1], F[s], S[s + 1], S[s + 1]))
            layers = []
            for i in range(kw["n_conv_per_stage_decoder"][j]):
                layers += block(2 * F[s] if i == 0 else F[s], F[s], K[s], 1)
            self.dec.append(nn.Sequential(*layers))
            self.heads.append(Conv(F[s], a.classes, 1))

    def forward(self, x):
        skips = []
        for e in self.enc:
            x = e(x)
            skips.append(x)
        outs = []
        x = skips[-1]
        for j in range(len(self.up)):
            x = self.dec[j](torch.cat((self.up[j](x), skips[-2 - j]), 1))
            outs.append(self.heads[j](x))
        return outs[::-1]


net = UNet()
x = torch.randn(B, a.channels, *patch)
with torch.no_grad():
    rs = [torch.randn_like(o) / o.numel() for o in net(x)]
times = []
for r in range(a.reps + 1):
    t0 = time.perf_counter()
    outs = net(x)
    loss = sum((o * q).sum() for o, q in zip(outs, rs))
    net.zero_grad(set_to_none=True)
    loss.backward()
    t1 = time.perf_counter()
    if r:
        times.append(t1 - t0)
print("%.3f %.3f" % (min(times), sum(times) / len(times)))
