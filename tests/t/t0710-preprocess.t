#!/bin/bash
# t0710-preprocess.t — read | crop | normalize | resample reproduces nnU-Net's
# preprocessed arrays bit for bit: the sha256 of the C-order data and seg arrays
# equal those of nnU-Net 2.8.1's own output (tests/fixtures/preprocessed_expected.json),
# on every case of nnU-Net's preprocessed fixtures (901: CT, cropped in z, separate-z
# resampling; 903: 2-channel MR, masked z-score), for 3d_fullres and 2d; and the class locations (sha256 of
# nnU-Net's [0, z, y, x] rows per class).
. "$(dirname "$0")/lib.sh"
t_require_progs nnp-read nnp-crop nnp-normalize nnp-resample nnp-class-locations nnp-preprocess

# check DATASET CASE CONFIG: run the pipeline, compare with the expected record.
check() {
	local ds=$1 case=$2 cfg=$3
	nnp-read --dataset "$T_FIXTURES/raw/$ds" --case "$case" |
		nnp-crop |
		nnp-normalize -p "$T_FIXTURES/$ds/nnUNetPlans.json" -c "$cfg" |
		nnp-resample -p "$T_FIXTURES/$ds/nnUNetPlans.json" -c "$cfg" |
		nnp-class-locations >"$case.$cfg.nnp" &&
	"$PYTHON" - "$T_PYTOOLS" "$T_FIXTURES/preprocessed_expected.json" "$ds/$case/$cfg" "$case.$cfg.nnp" <<-'PY'
	import hashlib, json, sys
	sys.path.insert(0, sys.argv[1])
	import numpy as np, nnpframe
	exp = json.load(open(sys.argv[2]))[sys.argv[3]]
	img, seg, loc = [f for f in nnpframe.frames(open(sys.argv[4], "rb").read())]
	assert loc.header["role"] == "class_locations"
	rows, off = nnpframe.assemble(loc)[0, 0].astype(np.int64), 0
	lp = loc.header["props"]
	assert lp["classes"] == list(exp["class_locations"]), (lp["classes"], list(exp["class_locations"]))
	for k, n in zip(lp["classes"], lp["counts"]):
	    e = exp["class_locations"][k]
	    assert n == e["n"], (k, n, e["n"])
	    assert hashlib.sha256(rows[off:off + n].tobytes()).hexdigest() == e["sha256_int64"], "class " + k
	    off += n
	a, s = nnpframe.assemble(img), nnpframe.assemble(seg)
	p = img.header["props"]
	for k in ("shape_before_cropping", "bbox_used_for_cropping", "shape_after_cropping_and_before_resampling"):
	    assert p[k] == exp[k], (k, p[k], exp[k])
	assert list(a.shape) == exp["data_shape"] and a.dtype == np.float32, (a.shape, a.dtype)
	assert list(s.shape) == exp["seg_shape"] and str(s.dtype) == exp["seg_dtype"], (s.shape, s.dtype)
	ha = hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()
	hs = hashlib.sha256(np.ascontiguousarray(s).tobytes()).hexdigest()
	assert ha == exp["data_sha256_c_order"], "data differs from nnU-Net's"
	assert hs == exp["seg_sha256_c_order"], "seg differs from nnU-Net's"
	PY
}

# Every case and configuration of nnU-Net's preprocessed fixtures.
for cfg in 3d_fullres 2d; do
	for c in sph_000 sph_005 sph_007; do
		test_expect_success "901 $c $cfg: identical to nnU-Net (CT norm, crop, separate z)" "
			check Dataset901_Spheres $c $cfg
		"
	done
	for c in mc_000 mc_008; do
		test_expect_success "903 $c $cfg: identical to nnU-Net (2 channels, masked z-score)" "
			check Dataset903_MultiChannel $c $cfg
		"
	done
done
for c in sph_000 sph_005; do
	test_expect_success "nnp preprocess (fused) = the four-filter pipeline, byte for byte ($c, 2d and 3d_fullres)" "
		for cfg in 2d 3d_fullres; do
			nnp-read --dataset \"\$T_FIXTURES/raw/Dataset901_Spheres\" --case $c >in.nnp &&
			nnp-crop in.nnp | nnp-normalize -p \"\$T_FIXTURES/Dataset901_Spheres/nnUNetPlans.json\" -c \$cfg |
				nnp-resample -p \"\$T_FIXTURES/Dataset901_Spheres/nnUNetPlans.json\" -c \$cfg |
				nnp-class-locations >pipe.nnp &&
			nnp-preprocess -p \"\$T_FIXTURES/Dataset901_Spheres/nnUNetPlans.json\" -c \$cfg in.nnp >fused.nnp &&
			cmp pipe.nnp fused.nnp || exit 1
		done
	"
done
test_expect_success 'nnp preprocess: 2 channels, and --no-mask on a case without label' '
	nnp-read --dataset "$T_FIXTURES/raw/Dataset903_MultiChannel" --case mc_000 >m0.nnp &&
	nnp-crop m0.nnp | nnp-normalize -p "$T_FIXTURES/Dataset903_MultiChannel/nnUNetPlans.json" -c 3d_fullres |
		nnp-resample -p "$T_FIXTURES/Dataset903_MultiChannel/nnUNetPlans.json" -c 3d_fullres |
		nnp-class-locations >m0pipe.nnp &&
	nnp-preprocess -p "$T_FIXTURES/Dataset903_MultiChannel/nnUNetPlans.json" -c 3d_fullres m0.nnp | cmp - m0pipe.nnp &&
	nnp-read --dataset "$T_FIXTURES/raw/Dataset903_MultiChannel" --case mc_000 --no-label |
		nnp-preprocess --no-mask -p "$T_FIXTURES/Dataset903_MultiChannel/nnUNetPlans.json" -c 3d_fullres |
		nnp-info -H | grep -c "^frame" | grep -qx 1
'
test_expect_success 'normalize with explicit parameters = the plans (CT; masked z-score, 2 channels)' '
	nnp-read --dataset "$T_FIXTURES/raw/Dataset901_Spheres" --case sph_005 | nnp-crop >e5.nnp &&
	nnp-normalize -p "$T_FIXTURES/Dataset901_Spheres/nnUNetPlans.json" -c 3d_fullres e5.nnp >e5a.nnp &&
	nnp-normalize --scheme ct --fingerprint "$T_FIXTURES/Dataset901_Spheres/dataset_fingerprint.json" e5.nnp >e5b.nnp &&
	cmp e5a.nnp e5b.nnp &&
	nnp-read --dataset "$T_FIXTURES/raw/Dataset903_MultiChannel" --case mc_000 | nnp-crop >e0.nnp &&
	nnp-normalize -p "$T_FIXTURES/Dataset903_MultiChannel/nnUNetPlans.json" -c 3d_fullres e0.nnp >e0a.nnp &&
	nnp-normalize --scheme zscore,ZScoreNormalization --use-mask 1,1 e0.nnp >e0b.nnp &&
	cmp e0a.nnp e0b.nnp &&
	nnp-normalize --scheme zscore,zscore e0.nnp | cmp -s - e0a.nnp && exit 1
	t_code 1 nnp-normalize --scheme ct e5.nnp && grep -q "foreground_intensity_properties" stderr &&
	t_code 2 nnp-normalize --scheme ct -p x.json -c 3d_fullres e5.nnp &&
	t_code 2 nnp-normalize --scheme zscore --use-mask 2 e5.nnp &&
	t_code 1 nnp-normalize --scheme nosuch e5.nnp
'
test_expect_success 'resample --to-original returns to the cropped grid' '
	nnp-resample --to-original <sph_007.3d_fullres.nnp | nnp-info --json -H | head -2 >orig.json &&
	"$PYTHON" -c "
import json
a, s = [json.loads(l) for l in open(\"orig.json\")]
assert a[\"shape\"][1:] == a[\"props\"][\"shape_after_cropping_and_before_resampling\"] == s[\"shape\"][1:], a
assert \"spacing_before_resampling\" not in a[\"props\"]
"
'
test_expect_success 'explicit --spacing and --shape, and the image/label shapes agree' '
	nnp-read --dataset "$T_FIXTURES/raw/Dataset901_Spheres" --case sph_004 | nnp-crop |
		nnp-resample --spacing 3,1,1 | nnp-info --json -H >sp.json &&
	"$PYTHON" -c "
import json
a, s = [json.loads(l) for l in open(\"sp.json\")]
assert a[\"spacing\"] == [3.0, 1.0, 1.0] and a[\"shape\"][1:] == s[\"shape\"][1:], (a, s)
assert a[\"dtype\"] == \"float32\" and s[\"dtype\"] == \"int8\"
" &&
	nnp-read --dataset "$T_FIXTURES/raw/Dataset901_Spheres" --case sph_004 |
		nnp-resample --shape 10,20,30 | nnp-info --json -H | grep -q "\"shape\":\[1,10,20,30\]"
'
test_expect_success 'errors: unknown configuration, wrong channel count, missing options' '
	nnp-read --dataset "$T_FIXTURES/raw/Dataset901_Spheres" --case sph_004 >s4.nnp &&
	t_code 1 nnp-normalize -p "$T_FIXTURES/Dataset901_Spheres/nnUNetPlans.json" -c 3d_nope s4.nnp &&
	grep -q "no configuration .3d_nope." stderr &&
	nnp-read --dataset "$T_FIXTURES/raw/Dataset903_MultiChannel" --case mc_008 | nnp-crop >m8.nnp &&
	t_code 1 nnp-normalize -p "$T_FIXTURES/Dataset901_Spheres/nnUNetPlans.json" -c 3d_fullres m8.nnp &&
	grep -q "2 channels, the plans normalise 1" stderr &&
	t_code 2 nnp-resample s4.nnp &&
	t_code 2 nnp-normalize -p x.json s4.nnp &&
	t_code 1 nnp-resample --to-original s4.nnp && grep -q "spacing_before_resampling" stderr
'
test_expect_success 'bad inputs: plans without CT statistics, label values outside dataset.json -> 1' '
	"$PYTHON" -c "
import json
p = json.load(open(\"$T_FIXTURES/Dataset901_Spheres/nnUNetPlans.json\"))
p[\"foreground_intensity_properties_per_channel\"] = {}
json.dump(p, open(\"nofp.json\", \"w\"))
d = json.load(open(\"$T_FIXTURES/raw/Dataset901_Spheres/dataset.json\"))
d[\"labels\"] = {\"background\": 0, \"organ\": 1}
json.dump(d, open(\"dj.json\", \"w\"))
" &&
	nnp-read --dataset "$T_FIXTURES/raw/Dataset901_Spheres" --case sph_007 | nnp-crop >c7.nnp &&
	t_code 1 nnp-normalize -p nofp.json -c 3d_fullres c7.nnp &&
	grep -q "needs the channel.s foreground_intensity_properties_per_channel" stderr &&
	t_code 1 nnp-class-locations --dataset-json dj.json c7.nnp &&
	grep -q "label value 2 is not declared" stderr
'
test_expect_success 'class-locations needs labels: props.labels or --dataset-json' '
	nnp-read "$T_FIXTURES/raw/Dataset901_Spheres/imagesTr/sph_004_0000.nii.gz" \
		--label "$T_FIXTURES/raw/Dataset901_Spheres/labelsTr/sph_004.nii.gz" >nolab.nnp &&
	t_code 2 nnp-class-locations nolab.nnp && grep -q "dataset-json" stderr &&
	nnp-class-locations --dataset-json "$T_FIXTURES/raw/Dataset901_Spheres/dataset.json" nolab.nnp |
		nnp-info -H | grep -q "role class_locations"
'
done_testing
