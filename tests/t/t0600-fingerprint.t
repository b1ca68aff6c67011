#!/bin/bash
# t0600-fingerprint.t — nnp fingerprint equals nnU-Net's DatasetFingerprintExtractor,
# checked byte for byte against tests/tools/fingerprint_reference.py (nnU-Net's
# algorithm with numpy/scipy; it reproduces nnU-Net's own fixture JSON exactly).
. "$(dirname "$0")/lib.sh"
t_require_progs nnp-fingerprint

ref() { "$PYTHON" "$T_PYTOOLS/fingerprint_reference.py" "$@"; }

# mkds DIR: 4 cases, 2 channels (float32 MR-like with zero background and an
# enclosed zero cavity that crop_to_nonzero fills; int16 with scl_slope), one
# case without foreground, anisotropic spacing.
mkds() {
	"$PYTHON" - "$1" <<-'PY'
	import json, os, sys
	import numpy as np, nibabel as nib
	d = sys.argv[1]
	for s in ("imagesTr", "labelsTr"):
	    os.makedirs(os.path.join(d, s), exist_ok=True)
	rng = np.random.default_rng(7)
	for i in range(4):
	    nx, ny, nz = 20 + 2 * i, 18 + i, 9 + i
	    x, y, z = np.meshgrid(np.arange(nx), np.arange(ny), np.arange(nz), indexing="ij")
	    r = ((x - nx / 2) / (nx / 2.6)) ** 2 + ((y - ny / 2) / (ny / 2.4)) ** 2 + ((z - nz / 2) / (nz / 2.2)) ** 2
	    inside = r < 1
	    t1 = np.where(inside, 100 + 20 * rng.standard_normal(inside.shape), 0).astype(np.float32)
	    t1[r < 0.05] = 0                      # an enclosed hole: filled by binary_fill_holes
	    t2 = np.where(inside, rng.integers(50, 400, inside.shape), 0).astype(np.int16)
	    lab = np.zeros(inside.shape, np.uint8)
	    if i != 2:                            # case 2 has no foreground
	        lab[(r < 0.3) & inside] = 1
	        lab[(r < 0.1) & (x > nx / 2)] = 2
	    aff = np.diag([0.8, 0.75, 3.0 + 0.5 * i, 1])
	    nib.save(nib.Nifti1Image(t1, aff), os.path.join(d, "imagesTr", "c%02d_0000.nii.gz" % i))
	    im = nib.Nifti1Image(t2, aff)
	    im.header.set_slope_inter(0.5, 0)    # zeros stay zero, so the crop happens
	    nib.save(im, os.path.join(d, "imagesTr", "c%02d_0001.nii.gz" % i))
	    nib.save(nib.Nifti1Image(lab, aff), os.path.join(d, "labelsTr", "c%02d.nii.gz" % i))
	json.dump({"channel_names": {"0": "T1", "1": "T2"}, "labels": {"background": 0, "a": 1, "b": 2},
	           "numTraining": 4, "file_ending": ".nii.gz"}, open(os.path.join(d, "dataset.json"), "w"))
	PY
}

test_expect_success 'setup: a small 2-channel dataset' '
	mkds raw/Dataset777_Fp
'
test_expect_success 'equals the numpy reference byte for byte (1e6 samples)' '
	nnp-fingerprint --num-samples 1e6 -o fp.json raw/Dataset777_Fp &&
	ref --num-samples 1e6 raw/Dataset777_Fp >ref.json &&
	cmp fp.json ref.json
'
test_expect_success 'odd sample totals, and totals below one buffer block' '
	nnp-fingerprint --num-samples 30001 -o fp2.json raw/Dataset777_Fp &&
	ref --num-samples 30001 raw/Dataset777_Fp >ref2.json &&
	cmp fp2.json ref2.json &&
	nnp-fingerprint --num-samples 999 -o fp3.json raw/Dataset777_Fp &&
	ref --num-samples 999 raw/Dataset777_Fp >ref3.json &&
	cmp fp3.json ref3.json
'
test_expect_success 'threads and the re-read path (--cache-mb 0) give the same bytes' '
	nnp-fingerprint -j 1 --num-samples 1e6 -o j1.json raw/Dataset777_Fp &&
	nnp-fingerprint -j 2 --cache-mb 0 --num-samples 1e6 -o j2.json raw/Dataset777_Fp &&
	cmp fp.json j1.json && cmp fp.json j2.json
'
test_expect_success 'crop: shapes after crop and relative sizes from the filled mask' '
	"$PYTHON" -c "
import json; f = json.load(open(\"fp.json\"))
assert len(f[\"shapes_after_crop\"]) == 4 and all(len(s) == 3 for s in f[\"shapes_after_crop\"])
assert f[\"spacings\"][1] == [3.5, 0.75, 0.800000011920929], f[\"spacings\"][1]
assert 0 < f[\"median_relative_size_after_cropping\"] < 1
assert set(f[\"foreground_intensity_properties_per_channel\"]) == {\"0\", \"1\"}
"
'
test_expect_success 'scl_slope/scl_inter are applied to the intensities' '
	"$PYTHON" -c "
import json; p = json.load(open(\"fp.json\"))[\"foreground_intensity_properties_per_channel\"][\"1\"]
assert 25 <= p[\"min\"] and 150 < p[\"max\"] <= 199.5, p   # 0.5 * [50, 400): unscaled max would be ~399
"
'
test_expect_success 'default output under $nnUNet_preprocessed, dataset.json copied, reused' '
	mkdir -p pre &&
	nnUNet_raw=$PWD/raw nnUNet_preprocessed=$PWD/pre nnp-fingerprint --num-samples 1e5 777 &&
	test -f pre/Dataset777_Fp/dataset_fingerprint.json &&
	test -f pre/Dataset777_Fp/dataset.json &&
	cp pre/Dataset777_Fp/dataset_fingerprint.json first.json &&
	NNP_QUIET= nnUNet_raw=$PWD/raw nnUNet_preprocessed=$PWD/pre nnp-fingerprint 777 2>msg &&
	grep -q "reusing" msg &&
	cmp first.json pre/Dataset777_Fp/dataset_fingerprint.json &&
	nnUNet_raw=$PWD/raw nnUNet_preprocessed=$PWD/pre nnp-fingerprint -f --num-samples 2e5 777 &&
	! cmp -s first.json pre/Dataset777_Fp/dataset_fingerprint.json
'
test_expect_success 'no -o and no nnUNet_preprocessed -> 2 with the fix' '
	(unset nnUNet_preprocessed; t_code 2 nnp-fingerprint raw/Dataset777_Fp) &&
	grep -q "export nnUNet_preprocessed" stderr
'
test_expect_success 'a missing label file -> 1 naming the case' '
	cp -r raw/Dataset777_Fp raw/Dataset778_NoLab &&
	rm raw/Dataset778_NoLab/labelsTr/c01.nii.gz &&
	t_code 1 nnp-fingerprint -o x.json raw/Dataset778_NoLab &&
	t_err_line nnp-fingerprint && grep -q "c01" stderr && t_no_file x.json
'
test_expect_success 'a dataset without any foreground -> 1' '
	cp -r raw/Dataset777_Fp raw/Dataset779_Empty &&
	"$PYTHON" -c "
import glob, nibabel as nib, numpy as np
for f in glob.glob(\"raw/Dataset779_Empty/labelsTr/*.nii.gz\"):
    i = nib.load(f); nib.save(nib.Nifti1Image(np.zeros(i.shape, np.uint8), i.affine), f)
" &&
	t_code 1 nnp-fingerprint -o y.json raw/Dataset779_Empty &&
	grep -q "no case has foreground" stderr && t_no_file y.json
'
test_expect_success 'usage errors -> 2' '
	t_code 2 nnp-fingerprint &&
	t_code 2 nnp-fingerprint --num-samples 0 raw/Dataset777_Fp &&
	t_code 2 nnp-fingerprint -j 0 raw/Dataset777_Fp
'
test_expect_success 'four real nnU-Net cases (901 sph_000/004/005/007, two cropped in z): crop as nnU-Net' '
	nnp-fingerprint --num-samples 1e6 -o real.json "$T_FIXTURES/raw/Dataset901_Spheres" &&
	"$PYTHON" -c "
import json
ours = json.load(open(\"real.json\"))
nnu = json.load(open(\"$T_FIXTURES/Dataset901_Spheres/dataset_fingerprint.json\"))
assert ours[\"shapes_after_crop\"] == [nnu[\"shapes_after_crop\"][i] for i in (0, 4, 5, 7)], ours
assert ours[\"spacings\"] == [nnu[\"spacings\"][i] for i in (0, 4, 5, 7)], ours[\"spacings\"]
" &&
	ref --num-samples 1e6 "$T_FIXTURES/raw/Dataset901_Spheres" >realref.json &&
	cmp real.json realref.json
'
done_testing
