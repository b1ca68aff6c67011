#!/usr/bin/python3
"""archvariants.py PLANS.json OUTDIR — from a 3d_fullres PlainConvUNet plans file, write
OUTDIR/resenc.json (ResidualEncoderUNet, blocks [1,2,2,2], one decoder conv per stage)
and OUTDIR/twod.json (a 2d configuration: Conv2d/InstanceNorm2d, anisotropic kernels
and strides) for the engine-vs-reference tests."""
import json, sys, copy
src, out = sys.argv[1], sys.argv[2]
p = json.load(open(src))
c = p["configurations"]["3d_fullres"]
a = c["architecture"]["arch_kwargs"]
res = copy.deepcopy(p)
r = res["configurations"]["3d_fullres"]["architecture"]
r["network_class_name"] = "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"
r["arch_kwargs"]["n_blocks_per_stage"] = [1, 2, 2, 2]
del r["arch_kwargs"]["n_conv_per_stage"]
r["arch_kwargs"]["n_conv_per_stage_decoder"] = [1, 1, 1]
json.dump(res, open(out + "/resenc.json", "w"))
two = copy.deepcopy(p)
t = two["configurations"]["3d_fullres"]
t["patch_size"] = [64, 48]
k = t["architecture"]["arch_kwargs"]
k["conv_op"] = "torch.nn.modules.conv.Conv2d"
k["norm_op"] = "torch.nn.modules.instancenorm.InstanceNorm2d"
k["kernel_sizes"] = [[3, 3], [3, 3], [1, 3], [3, 3]]
k["strides"] = [[1, 1], [2, 2], [2, 2], [2, 1]]
two["configurations"]["2d"] = t
del two["configurations"]["3d_fullres"]
json.dump(two, open(out + "/twod.json", "w"))
