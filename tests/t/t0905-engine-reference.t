#!/bin/bash
# t0905-engine-reference.t — the network engine against an independent float64
# numpy implementation of dynamic_network_architectures' UNets
# (tests/tools/unet_reference.py) on models written by tests/tools/mkmodel.py
# in PyTorch's checkpoint format: PlainConvUNet 3D, ResidualEncoderUNet 3D
# (strided residual blocks with avgpool + projection skips) and a 2D
# configuration (per-slice tiles, anisotropic kernels/strides).  A single
# patch-sized tile without mirroring is the plain forward pass (the Gaussian
# weight cancels to 1 ulp): rel-L2 <= 1e-5 against float64.
. "$(dirname "$0")/lib.sh"
t_require_progs nnp nnp-read nnp-infer nnp-write

RES="$T_FIXTURES/results/Dataset903_MultiChannel/nnUNetTrainer__nnUNetPlans_tiny__3d_fullres"

test_expect_success 'setup: plans variants, models and an input' '
	cp "$RES/plans.json" plain.json &&
	"$PYTHON" "$T_PYTOOLS/archvariants.py" "$RES/plans.json" . &&
	for v in plain:3d_fullres resenc:3d_fullres twod:2d; do
		"$PYTHON" "$T_PYTOOLS/mkmodel.py" --plans ${v%%:*}.json --config ${v#*:} \
			--dataset-json "$RES/dataset.json" --out ${v%%:*} --npz || return 1
	done &&
	nnp inspect-model resenc/fold_0/checkpoint_final.pth >resenc.txt &&
	grep -q "^encoder.stages.1.blocks.0.skip.1.conv.weight	float32	\[8, 4, 1, 1, 1\]$" resenc.txt
'

cat >mkin.py <<'PY'
import numpy as np, nibabel as nib, sys
shape = tuple(int(s) for s in sys.argv[1].split(","))
x = np.random.RandomState(7).standard_normal((2,) + shape).astype(np.float32)
np.save("in.npy", x)
nib.save(nib.Nifti1Image(np.transpose(x, (3, 2, 1, 0)), np.eye(4)), "in.nii.gz")
PY
cat >cmpref.py <<'PY'
import numpy as np, nibabel as nib, sys, subprocess
tool, plans, cfg, w, twod = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5] == "1"
x = np.load("in.npy")
def ref(inp):
    np.save("s.npy", inp)
    subprocess.check_call([sys.executable, tool, plans, cfg, w, "s.npy", "o.npy"])
    return np.load("o.npy")
r = np.stack([ref(x[:, z]) for z in range(x.shape[1])], axis=1) if twod else ref(x)
ours = np.transpose(np.asanyarray(nib.load("out.nii.gz").dataobj), (3, 2, 1, 0))
rl = np.linalg.norm(ours - r) / np.linalg.norm(r)
print(f"rel-L2 {rl:.3g} max abs {np.abs(ours - r).max():.3g}")
sys.exit(0 if ours.shape == r.shape and rl <= 1e-5 else 1)
PY

while read name config shape twod; do
test_expect_success "$name: engine equals the float64 reference (rel-L2 <= 1e-5)" '
	"$PYTHON" mkin.py '$shape' &&
	nnp read in.nii.gz | nnp infer -m '$name' -f 0 --disable-tta | nnp write --force -o out.nii.gz &&
	"$PYTHON" cmpref.py "$T_PYTOOLS/unet_reference.py" '$name'.json '$config' '$name'/fold_0/weights.npz '$twod' >m.txt &&
	t_comment "$(cat m.txt)"
'
done <<-EOF2
plain 3d_fullres 56,64,56 0
resenc 3d_fullres 56,64,56 0
twod 2d 3,64,48 1
EOF2

test_expect_success 'a 2d model predicts every slice (larger image: several tiles per slice)' '
	"$PYTHON" mkin.py 2,100,70 &&
	nnp read in.nii.gz | nnp infer -m twod -f 0 >l.nnp &&
	nnp info --json l.nnp | grep -q "\"shape\":\[3,2,100,70\]"
'
done_testing
