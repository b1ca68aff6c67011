#!/bin/bash
# t0920-predict.t — nnp predict end to end (raw NIfTI -> preprocess -> infer ->
# export -> NIfTI) against the segmentations nnU-Net's own predictor exported
# for the test cases of the tiny 901 (anisotropic: separate z) and 903
# (2 channels, crop box) models.  --fp16-compat reproduces nnU-Net's float16
# roundings: at most 5 voxels per case may differ (the engine's fp32 tiles
# differ from PyTorch's by round-off, measured 0-3).  The float32 path differs
# where nnU-Net's float16 logits flip near-ties: at most 0.5 % of the voxels
# (measured <= 0.36 %, the fixtures README reports the same fractions).
. "$(dirname "$0")/lib.sh"
t_require_progs nnp nnp-predict nnp-read nnp-preprocess nnp-infer nnp-export nnp-write

segcmp() { # OUT_DIR DATASET VARIANT MAX_FRACTION MAX_VOXELS
	"$PYTHON" - "$@" "$T_FIXTURES" <<-\PY
	import sys, glob, os
	import numpy as np, nibabel as nib
	out, ds, var, frac, vox, fx = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
	refs = sorted(glob.glob(f"{fx}/inference/{ds}/*/seg_{var}.nii.gz"))
	assert refs, "no reference segmentations"
	msg, ok = [], True
	for r in refs:
	    case = os.path.basename(os.path.dirname(r))
	    a, b = nib.load(f"{out}/{case}.nii.gz"), nib.load(r)
	    x, y = np.asanyarray(a.dataobj), np.asanyarray(b.dataobj)
	    assert x.shape == y.shape and x.dtype == y.dtype, (case, x.shape, y.shape, x.dtype, y.dtype)
	    assert np.allclose(a.affine, b.affine, atol=1e-4), case
	    d = int((x != y).sum())
	    ok &= d <= vox and d <= frac * x.size
	    msg.append(f"{case} {d}/{x.size}")
	print(" ".join(msg))
	sys.exit(0 if ok else 1)
	PY
}

RES903="$T_FIXTURES/results/Dataset903_MultiChannel/nnUNetTrainer__nnUNetPlans_tiny__3d_fullres"
RES901="$T_FIXTURES/results/Dataset901_Spheres/nnUNetTrainer__nnUNetPlans_tiny__3d_fullres"
IN903="$T_FIXTURES/raw/Dataset903_MultiChannel/imagesTs"
IN901="$T_FIXTURES/raw/Dataset901_Spheres/imagesTs"

while read ds res in variant opts; do
test_expect_success "$ds $variant --fp16-compat: nnU-Net's segmentations (<= 5 voxels differ)" '
	rm -rf out && nnp predict -q -i "'$in'" -o out -m "'$res'" '"$opts"' --fp16-compat &&
	segcmp out '$ds' '$variant' 1 5 >m.txt && t_comment "$(cat m.txt)"
'
test_expect_success "$ds $variant float32: <= 0.5 % of voxels differ from nnU-Net" '
	rm -rf out && nnp predict -q -j 2 -i "'$in'" -o out -m "'$res'" '"$opts"' &&
	segcmp out '$ds' '$variant' 0.005 100000000 >m.txt && t_comment "$(cat m.txt)"
'
done <<-EOF2
Dataset903_MultiChannel $RES903 $IN903 f0_nomirror -f 0 --disable-tta
Dataset903_MultiChannel $RES903 $IN903 f0_mirror -f 0
Dataset903_MultiChannel $RES903 $IN903 f01_nomirror -f 0 1 --disable-tta
Dataset901_Spheres $RES901 $IN901 f0_nomirror -f 0 --disable-tta
Dataset901_Spheres $RES901 $IN901 f01_nomirror -f 0 1 --disable-tta
EOF2

test_expect_success 'the output folder: segmentations, dataset.json, plans.json, args; no temp left' '
	t_files_are out dataset.json plans.json predict_args.json sph_100.nii.gz sph_101.nii.gz sph_102.nii.gz
'

test_expect_success '--save-probabilities: K channels summing to 1, background 1 outside the crop' '
	rm -rf p && nnp predict -q -i "$IN903" -o p -m "$RES903" -f 0 --disable-tta --save-probabilities &&
	"$PYTHON" -c "
import numpy as np, nibabel as nib
p = np.asanyarray(nib.load(\"p/mc_101_probabilities.nii.gz\").dataobj)
s = np.asanyarray(nib.load(\"p/mc_101.nii.gz\").dataobj)
assert p.shape == s.shape + (3,), p.shape
assert np.abs(p.sum(-1) - 1).max() < 1e-5
assert (p.argmax(-1) == s).mean() > 0.999
assert p[0, 0, 0, 0] == 1
"
'

test_expect_success '--continue skips finished cases; a rerun without it redoes them' '
	touch -d "2000-01-01" p/mc_100.nii.gz &&
	NNP_QUIET= nnp predict -i "$IN903" -o p -m "$RES903" -f 0 --disable-tta --save-probabilities --continue 2>err &&
	grep -q "mc_100: exists, skipped" err &&
	test "$(stat -c %Y p/mc_100.nii.gz)" -lt 1000000000 &&
	nnp predict -q -i "$IN903" -o p -m "$RES903" -f 0 --disable-tta &&
	test "$(stat -c %Y p/mc_100.nii.gz)" -gt 1000000000
'

test_expect_success 'a model folder not named TRAINER__PLANS__CONFIG: the configuration from the checkpoint' '
	mkdir -p mymodel && cp -r "$RES903"/* mymodel/ &&
	rm -rf o4 && nnp predict -q -i "$IN903" -o o4 -m mymodel -f 0 --disable-tta &&
	grep -q "\"configuration\": \"3d_fullres\"" o4/predict_args.json && test -f o4/mc_101.nii.gz
'

test_expect_success '--num-parts/--part-id split the cases' '
	rm -rf a b &&
	nnp predict -q -i "$IN901" -o a -m "$RES901" -f 0 --disable-tta --num-parts 2 --part-id 0 &&
	nnp predict -q -i "$IN901" -o b -m "$RES901" -f 0 --disable-tta --num-parts 2 --part-id 1 &&
	test -f a/sph_100.nii.gz && test -f a/sph_102.nii.gz && test ! -f a/sph_101.nii.gz &&
	test -f b/sph_101.nii.gz && test ! -f b/sph_100.nii.gz
'

test_expect_success 'bad input: a missing channel file, an empty folder (exit 1), no partial output' '
	mkdir -p in1 && cp "$IN903"/mc_100_0000.nii.gz in1/ &&
	t_code 1 nnp predict -i in1 -o o1 -m "$RES903" -f 0 &&
	grep -q "mc_100.: 1 channel file(s)" stderr &&
	mkdir -p empty && t_code 1 nnp predict -i empty -o o2 -m "$RES903" &&
	mkdir -p in2 && cp "$IN903"/mc_100_0000.nii.gz in2/ && cp "$IN903"/mc_100_0000.nii.gz in2/mc_100_0001.nii.gz &&
	head -c 5000 "$IN903"/mc_100_0001.nii.gz >in2/mc_100_0001.nii.gz &&
	t_code 1 nnp predict -q -i in2 -o o3 -m "$RES903" -f 0 --disable-tta &&
	test ! -e o3/mc_100.nii.gz
'

test_expect_success 'usage errors exit 2' '
	t_code 2 nnp predict -i "$IN903" -o o &&
	t_code 2 nnp predict -o o -m "$RES903" &&
	t_code 2 nnp predict -i "$IN903" -o o -m "$RES903" --bogus &&
	t_code 2 nnp predict -i "$IN903" -o o -m "$RES903" -j 0 &&
	t_code 2 nnp predict -i "$IN903" -o o -m "$RES903" --num-parts 2 --part-id 2 &&
	nnp predict --help | grep -q "nnUNetv2_predict"
'
done_testing
