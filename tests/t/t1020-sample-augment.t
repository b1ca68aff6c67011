#!/bin/bash
# t1020-sample-augment.t — the two halves of issue #6 together: the real
# sampler's stream through nnp augment (3d_fullres and 2d of the 901 fixture):
# final patch shapes, valid labels only (RemoveLabel), props of both stages,
# byte-identical output for the same seeds, independent of -j.
. "$(dirname "$0")/lib.sh"
t_require_progs nnp nnp-sample nnp-augment nnp-plan-and-preprocess nnp-info
command -v parallel >/dev/null || { test_skip_all "GNU parallel is not installed"; }

P=$PWD/pre/Dataset901_Spheres

test_expect_success 'setup: four 901 cases preprocessed, a split' '
	mkdir -p raw pre && cp -r "$T_FIXTURES/raw/Dataset901_Spheres" raw/ &&
	nnUNet_raw=$PWD/raw nnUNet_preprocessed=$PWD/pre nnp plan-and-preprocess -d 901 -j 2 -c 3d_fullres 2d &&
	printf "%s" "[{\"train\": [\"sph_005\", \"sph_000\", \"sph_004\"], \"val\": [\"sph_007\"]}]" >$P/splits_final.json
'

for cfg in 3d_fullres 2d; do
test_expect_success "$cfg: sample | augment gives final patches with valid labels" '
	nnp sample --preprocessed "$P" -c '$cfg' --fold 0 -n 3 --seed 4 | nnp augment --seed 9 >aug.nnp &&
	"$PYTHON" - aug.nnp "$P/nnUNetPlans.json" '$cfg' <<-\PY
	import json, sys
	sys.path.insert(0, "'"$T_PYTOOLS"'")
	import nnpframe
	plans = json.load(open(sys.argv[2]))
	patch = plans["configurations"][sys.argv[3]]["patch_size"]
	frames = nnpframe.frames(open(sys.argv[1], "rb").read())
	B = plans["configurations"][sys.argv[3]]["batch_size"]
	assert len(frames) == 2 * 3 * B, len(frames)
	for img, lab in zip(frames[0::2], frames[1::2]):
	    assert img.header["role"] == "image" and lab.header["role"] == "label"
	    sp = list(img.array.shape[1:])
	    want = patch if len(patch) == 3 else [1] + patch
	    assert sp == want, (sp, want)
	    assert lab.array.min() >= 0 and lab.array.max() <= 2, (lab.array.min(), lab.array.max())
	    assert "sample" in img.header["props"] and "augment" in img.header["props"]
	print("ok", len(frames))
	PY
'
done

test_expect_success 'same seeds -> same bytes, for -j 1 and -j 2; other seed -> different' '
	nnp sample --preprocessed "$P" -c 3d_fullres --fold 0 -n 2 --seed 4 >s.nnp &&
	nnp augment --seed 9 -j 1 s.nnp >a1.nnp && nnp augment --seed 9 -j 2 s.nnp >a2.nnp && cmp a1.nnp a2.nnp &&
	nnp augment --seed 10 s.nnp >a3.nnp && ! cmp -s a1.nnp a3.nnp
'

test_expect_success 'validation stream: --split val | augment --none keeps the final patch unchanged' '
	nnp sample --preprocessed "$P" -c 3d_fullres --fold 0 --split val -n 1 --seed 1 | nnp augment --none >v.nnp &&
	nnp info -H v.nnp | grep -m1 shape | grep -q "1 x 56 x 112 x 112"
'
test_expect_success 'nnp info --batches summarises a sample stream' '
	nnp sample --preprocessed "$P" -c 3d_fullres --fold 0 -n 3 --seed 4 | nnp augment --seed 9 | nnp info --batches >b.txt &&
	cat b.txt &&
	grep -q "^samples 6 in 3 batches (batch size 2), patch 1 x 56 x 112 x 112$" b.txt &&
	grep -q "^forced foreground 3 (50.0 %)" b.txt &&
	! grep -q "label values:.* -1 " b.txt &&
	nnp sample --preprocessed "$P" -c 3d_fullres --fold 0 -n 1 --seed 4 | nnp info --batches --json >b.json &&
	"$PYTHON" -c "import json; d = json.load(open(\"b.json\")); assert d[\"samples\"] == 2 and d[\"batches\"] == 1, d" &&
	nnp read "$T_FIXTURES/raw/Dataset901_Spheres/imagesTr/sph_000_0000.nii.gz" >plain.nnp &&
	t_code 1 nnp info --batches plain.nnp && grep -q "not a training sample stream" stderr
'
done_testing
