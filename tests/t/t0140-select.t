#!/bin/bash
# t0140-select.t — nnp select keeps the frames with the given roles/cases.
. "$(dirname "$0")/lib.sh"
t_require_progs nnp nnp-select nnp-read nnp-info

IMG=$T_FIXTURES/raw/Dataset901_Spheres/imagesTr
LAB=$T_FIXTURES/raw/Dataset901_Spheres/labelsTr

test_expect_success 'setup: two cases with labels' '
	nnp read -l "$LAB/sph_000.nii.gz" "$IMG/sph_000_0000.nii.gz" >a.nnp &&
	nnp read -l "$LAB/sph_004.nii.gz" "$IMG/sph_004_0000.nii.gz" >b.nnp &&
	cat a.nnp b.nnp >ab.nnp &&
	nnp read "$IMG/sph_000_0000.nii.gz" >a_img.nnp
'
test_expect_success '--role image keeps the images, byte for byte' '
	nnp select --role image ab.nnp >img.nnp &&
	nnp info img.nnp | grep "^frame" >f && test $(wc -l <f) = 2 && ! grep -q label f &&
	nnp select --role image a.nnp | cmp - a_img.nnp
'
test_expect_success '--case and --invert' '
	nnp select --case sph_004 ab.nnp | nnp info | grep "^frame" >f &&
	test $(wc -l <f) = 2 && grep -q "sph_004.*image" f && grep -q "sph_004.*label" f &&
	nnp select --invert --role image ab.nnp | nnp info | grep "^frame" >f &&
	test $(wc -l <f) = 2 && ! grep -q image f &&
	nnp select --role label --case sph_000,sph_004 <ab.nnp | nnp info | grep -c "^frame" | grep -qx 2
'
test_expect_success 'no match: an empty stream; no filter: everything' '
	nnp select --role logits ab.nnp >none.nnp && test ! -s none.nnp &&
	nnp select ab.nnp | cmp - ab.nnp
'
test_expect_success 'a truncated stream is a data error naming the input' '
	head -c 100000 ab.nnp >cut.nnp &&
	t_code 1 nnp select --role label cut.nnp && grep -q "cut.nnp.*truncated" stderr
'
test_expect_success 'usage errors and terminal refusal' '
	t_code 2 nnp select --bogus ab.nnp &&
	t_code 2 nnp select a.nnp b.nnp
'
done_testing
