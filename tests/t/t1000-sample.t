#!/bin/bash
# t1000-sample.t — nnp sample: nnU-Net's training data loader as a stream.
# The stream is checked against nnU-Net's loader logic re-run in numpy
# (tests/tools/sample_reference.py: same RandomState draws, get_bbox,
# oversampling, crop_and_pad_nd), on 901 cases preprocessed here.
. "$(dirname "$0")/lib.sh"
t_require_progs nnp nnp-sample nnp-plan-and-preprocess
command -v parallel >/dev/null || { test_skip_all "GNU parallel is not installed"; }

P=$PWD/pre/Dataset901_Spheres
ref() { "$PYTHON" "$T_PYTOOLS/sample_reference.py" "$P" "$@"; }
smp() { nnp sample --preprocessed "$P" "$@"; }

test_expect_success 'setup: four 901 cases preprocessed (3d_fullres, 2d), a two-fold split' '
	mkdir -p raw pre && cp -r "$T_FIXTURES/raw/Dataset901_Spheres" raw/ &&
	nnUNet_raw=$PWD/raw nnUNet_preprocessed=$PWD/pre nnp plan-and-preprocess -d 901 -j 2 -c 3d_fullres 2d &&
	printf "%s" "[{\"train\": [\"sph_005\", \"sph_000\", \"sph_004\"], \"val\": [\"sph_007\"]},
		{\"train\": [\"sph_007\", \"sph_000\"], \"val\": [\"sph_004\", \"sph_005\"]}]" >$P/splits_final.json
'
test_expect_success '3d_fullres train: draws, boxes and patch bytes are nnU-Net loader'"'"'s' '
	smp -c 3d_fullres --fold 0 -n 4 --seed 1 >tr.nnp &&
	ref 3d_fullres 0 train 1 4 tr.nnp | tee out &&
	grep -q "^samples 8 forced 4 " out
'
test_expect_success 'batch size 12 (4 forced per batch), fold 1' '
	smp -c 3d_fullres --fold 1 -n 3 --seed 77 -b 12 >b12.nnp &&
	ref 3d_fullres 1 train 77 3 b12.nnp 12 | tee out &&
	grep -q "^samples 36 forced 12 " out
'
test_expect_success 'val split: the final patch, same rules' '
	smp -c 3d_fullres --fold 1 --split val -n 3 --seed 5 >val.nnp &&
	ref 3d_fullres 1 val 5 3 val.nnp &&
	nnp info -H val.nnp >info && grep -m1 "shape" info >shape &&
	grep -q "1 x 56 x 112 x 112" shape
'
test_expect_success '2d, fold all: (C, 1, p0, p1) patches of single slices' '
	smp -c 2d --fold all -n 2 --seed 3 >2d.nnp &&
	ref 2d all train 3 2 2d.nnp &&
	nnp info -H 2d.nnp >info && grep -m1 "shape" info | grep -q "1 x 1 x "
'
test_expect_success 'the train patch is the enlarged initial patch of the plans patch' '
	nnp info -H tr.nnp >info && grep -m1 "shape" info >shape &&
	p=$("$PYTHON" -c "import json; print(*json.load(open(\"$P/nnUNetPlans.json\"))[\"configurations\"][\"3d_fullres\"][\"patch_size\"])") &&
	echo "1 x $("$PYTHON" "$T_PYTOOLS/sample_reference.py" initial $p | sed "s/ / x /g")" >want && cat want shape &&
	grep -qF "$(cat want)" shape
'
test_expect_success 'same seed: the same bytes; another seed: different bytes' '
	smp -c 3d_fullres --fold 0 -n 4 --seed 1 >again.nnp && cmp tr.nnp again.nnp &&
	smp -c 3d_fullres --fold 0 -n 4 --seed 2 >other.nnp && ! cmp -s tr.nnp other.nnp
'
test_expect_success '-d through $nnUNet_preprocessed gives the same stream' '
	nnUNet_preprocessed=$PWD/pre nnp sample -d 901 -c 3d_fullres --fold 0 -n 4 --seed 1 | cmp - tr.nnp
'
test_expect_success 'endless by default; ends quietly when the reader goes away' '
	set +o pipefail
	smp -c 3d_fullres --fold 0 2>err | head -c 3000000 | wc -c >n
	test "$(cat n)" = 3000000 && t_stderr_empty err
'
test_expect_success 'bad input -> 1 with the problem named' '
	mkdir -p nosplit && cp $P/nnUNetPlans.json nosplit/ &&
	t_code 1 nnp sample --preprocessed nosplit -c 3d_fullres --fold 0 -n 1 &&
	t_err_line nnp-sample splits_final.json &&
	t_code 1 smp -c 3d_lowres --fold 0 -n 1 && t_err_line nnp-sample 3d_lowres &&
	mv $P/nnUNetPlans_3d_fullres/sph_007.nnp sph_007.nnp &&
	rc=0; t_code 1 smp -c 3d_fullres --fold 1 -n 1 || rc=1
	mv sph_007.nnp $P/nnUNetPlans_3d_fullres/ && test $rc = 0 &&
	t_err_line nnp-sample sph_007.nnp
'
test_expect_success 'a fold beyond splits_final.json: the seeded random 80:20 split of nnU-Net' '
	for split in train val; do
		smp -c 3d_fullres --fold 5 --split $split -n 30 --seed 3 >r.nnp &&
		nnp info --json -H r.nnp | "$PYTHON" -c "
import json, sys
import numpy as np
ids = sorted([\"sph_000\", \"sph_004\", \"sph_005\", \"sph_007\"])
tr = np.random.RandomState(12350).choice(len(ids), int(len(ids) * 0.8), replace=False)
want = set(ids[i] for i in tr) if \"$split\" == \"train\" else set(ids) - set(ids[i] for i in tr)
got = set(json.loads(l)[\"case\"] for l in sys.stdin)
assert got <= want and len(got) == len(want), (got, want)
" || return 1
	done
'
test_expect_success 'usage errors -> 2' '
	t_code 2 smp -c 3d_fullres -n 1 && t_err_line nnp-sample "--fold" &&
	t_code 2 nnp sample -c 3d_fullres --fold 0 && t_err_line nnp-sample "--preprocessed" &&
	t_code 2 smp -c 3d_fullres --fold 0 --split test && t_err_line nnp-sample "--split" &&
	t_code 2 smp -c 3d_fullres --fold x && t_code 2 smp -c 3d_fullres --fold 0 --seed -1 &&
	t_code 2 smp -c 3d_fullres --fold 0 --bogus &&
	nnp sample --help | grep -q "Exit status" && nnp sample --version | grep -q nnpipe
'
done_testing
