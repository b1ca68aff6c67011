#!/bin/bash
# t0720-plan-and-preprocess.t — the porcelain: verify -> fingerprint -> plan ->
# preprocess all configurations with GNU parallel; resume; failures.
. "$(dirname "$0")/lib.sh"
t_require_progs nnp nnp-plan-and-preprocess nnp-preprocess
command -v parallel >/dev/null || { test_skip_all "GNU parallel is not installed"; }

run() { nnUNet_raw=$PWD/raw nnUNet_preprocessed=$PWD/pre nnp plan-and-preprocess "$@"; }

test_expect_success 'setup: two real 901 cases as a raw dataset' '
	mkdir -p raw pre && cp -r "$T_FIXTURES/raw/Dataset901_Spheres" raw/
'
test_expect_success 'everything is written: fingerprint, plans, gt, one .nnp per case and config' '
	run -d 901 --verify -j 2 &&
	P=pre/Dataset901_Spheres &&
	test -f $P/dataset.json && test -f $P/dataset_fingerprint.json && test -f $P/nnUNetPlans.json &&
	test -f $P/gt_segmentations/sph_004.nii.gz && test -f $P/gt_segmentations/sph_007.nii.gz &&
	for c in 2d 3d_fullres; do
		for k in sph_004 sph_007; do test -s $P/nnUNetPlans_$c/$k.nnp || exit 1; done
	done &&
	! ls $P/nnUNetPlans_3d_fullres/.*.tmp 2>/dev/null
'
test_expect_success 'each case file equals the filters run by hand' '
	P=pre/Dataset901_Spheres &&
	nnp read --dataset raw/Dataset901_Spheres --case sph_007 | nnp crop |
		nnp normalize -p $P/nnUNetPlans.json -c 3d_fullres |
		nnp resample -p $P/nnUNetPlans.json -c 3d_fullres | nnp class-locations >hand.nnp &&
	cmp hand.nnp $P/nnUNetPlans_3d_fullres/sph_007.nnp &&
	test "$(nnp info -H $P/nnUNetPlans_2d/sph_004.nnp | grep -c "^frame")" = 3
'
test_expect_success 'a second run resumes: finished cases are kept, missing ones made' '
	P=pre/Dataset901_Spheres/nnUNetPlans_3d_fullres &&
	touch -d "2001-01-01" $P/sph_004.nnp && rm $P/sph_007.nnp &&
	run -d 901 &&
	test "$(stat -c %Y $P/sph_004.nnp)" = "$(date -d 2001-01-01 +%s)" &&
	test -s $P/sph_007.nnp
'
test_expect_success '--force recomputes every case' '
	P=pre/Dataset901_Spheres/nnUNetPlans_3d_fullres &&
	run -d 901 -f -c 3d_fullres &&
	test "$(stat -c %Y $P/sph_004.nnp)" != "$(date -d 2001-01-01 +%s)"
'
test_expect_success '--verify stops on a broken dataset, before writing anything' '
	cp -r raw/Dataset901_Spheres raw/Dataset902_Broken &&
	rm raw/Dataset902_Broken/labelsTr/sph_007.nii.gz &&
	t_code 1 run -d 902 --verify &&
	grep -q "verification failed" stderr &&
	! test -e pre/Dataset902_Broken/dataset_fingerprint.json
'
test_expect_success 'a case that fails stops the run with its error; no partial case file' '
	cp -r raw/Dataset901_Spheres raw/Dataset903_Bad &&
	head -c 20000 raw/Dataset903_Bad/imagesTr/sph_007_0000.nii.gz >x && mv x raw/Dataset903_Bad/imagesTr/sph_007_0000.nii.gz &&
	rc=0; run -d 903 >out 2>err || rc=$?
	test $rc -ne 0 && grep -q "sph_007" err &&
	! ls pre/Dataset903_Bad/nnUNetPlans_*/sph_007.nnp 2>/dev/null &&
	! ls pre/Dataset903_Bad/nnUNetPlans_*/.sph_007.nnp.tmp 2>/dev/null
'
test_expect_success 'usage errors -> 2 with the fix' '
	t_code 2 nnp plan-and-preprocess &&
	(unset nnUNet_preprocessed; t_code 2 nnp plan-and-preprocess -d 901) &&
	grep -q "export nnUNet_preprocessed" stderr &&
	t_code 2 run -d 901 -j zero &&
	nnp plan-and-preprocess --help | grep -q "Exit status"
'
done_testing
