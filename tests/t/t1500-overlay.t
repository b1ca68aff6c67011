#!/bin/bash
# t1500-overlay.t — nnp overlay: PNG montages of a segmentation over its image.
# Every pixel is compared with tests/tools/overlay_reference.py (the rules of
# docs/overlay.md in numpy, with its own PNG decoder): size, chosen slices (the
# most-foreground slice as computed in Python), grey window, blended colours,
# aspect ratio of anisotropic data, axes, channels; grid mismatches (exit 1),
# usage errors (exit 2), no partial or clobbered output; the batch form.
. "$(dirname "$0")/lib.sh"
t_require_progs nnp-overlay

REF="$T_PYTOOLS/overlay_reference.py"
oref() { "$PYTHON" "$REF" "$@"; }
# ov ARGS...: nnp-overlay with messages on; stderr in ./stderr
ov() { NNP_QUIET= nnp-overlay "$@"; }
# best: the most-foreground slice nnp-overlay reported in ./stderr
best() { sed -n 's/.*(most foreground \([0-9]*\)).*/\1/p' stderr; }

test_expect_success 'setup: synthetic cases (anisotropic 0.8 x 0.8 x 3 mm, NaN/inf, 3 labels, empty, 2D)' '
	oref mkcase . c1 1 --nan --labels 3 &&
	oref mkcase . c2 2 --empty &&
	oref mkcase . c3 3 --shape 30,20,1 --pixdim 0.5,1.0,1.0 &&
	oref mkcase . big 4 --shape 40,36,20 &&
	oref mkcase . shift 1 --nan --labels 3 &&
	"$PYTHON" -c "
import nibabel as nib, numpy as np
a = nib.load(\"c1_seg.nii.gz\")
aff = a.affine.copy(); aff[0, 3] += 1.0
nib.save(nib.Nifti1Image(np.asarray(a.dataobj), aff), \"shift_seg.nii.gz\")
aff = a.affine.copy(); aff[2, 2] = 2.5
nib.save(nib.Nifti1Image(np.asarray(a.dataobj), aff), \"sp_seg.nii.gz\")
nib.save(nib.Nifti1Image(np.asarray(a.dataobj).astype(np.float32), a.affine), \"c1_fseg.nii.gz\")
t = np.zeros(a.shape, np.uint8)            # foreground on z = 4, 5, 6 only, most on 5
t[5:15, 5:15, 4] = 1; t[5:25, 5:25, 5] = 2; t[5:10, 5:10, 6] = 1
nib.save(nib.Nifti1Image(t, a.affine), \"thin_seg.nii.gz\")
" &&
	ls c1_0000.nii.gz c1_ref.nii.gz c2_seg.nii.gz c3_0000.nii.gz shift_seg.nii.gz
'

test_expect_success 'default montage: 3 rows x (image, reference, prediction), pixels as the rules give' '
	t_code 0 ov --image c1_0000.nii.gz --seg c1_seg.nii.gz --ref c1_ref.nii.gz -o m.png &&
	b=$(best) && test -n "$b" &&
	oref check m.png --image c1_0000.nii.gz --seg c1_seg.nii.gz --ref c1_ref.nii.gz --best "$b" >out &&
	cat out && grep -q "^ok " out &&
	set -- $(cat out) &&
	test "$7" = "$b" &&
	grep -q "c1: z slices $(echo "$5" | tr , " ") (most foreground $b) -> m.png" stderr &&
	test "$(oref png m.png)" = "$2 $3" &&
	check_no_tmp .
'

test_expect_success 'the chosen slice is the one with the most foreground (numpy argmax of the reference)' '
	"$PYTHON" -c "
import nibabel as nib, numpy as np
r = np.asarray(nib.load(\"c1_ref.nii.gz\").dataobj)   # x, y, z
print(int(np.argmax((r > 0).sum((0, 1)))), int(np.argmax((r > 0).sum((0, 2)))))
" >want && read bz by <want &&
	t_code 0 ov --image c1_0000.nii.gz --seg c1_seg.nii.gz --ref c1_ref.nii.gz --slices 1 -o one.png &&
	grep -q "z slices $bz (most foreground $bz)" stderr &&
	t_code 0 ov --image c1_0000.nii.gz --seg c1_seg.nii.gz --ref c1_ref.nii.gz --slices 1 --axis 1 -o one1.png &&
	grep -q "y slices $by (most foreground $by)" stderr &&
	oref check one.png --image c1_0000.nii.gz --seg c1_seg.nii.gz --ref c1_ref.nii.gz --slices 1 --best $bz
'

test_expect_success 'a thin foreground: the extent'"'"'s slices (collisions move to a free slice), fewer rows' '
	t_code 0 ov --image c1_0000.nii.gz --seg thin_seg.nii.gz -o t3.png &&
	grep -q "z slices 4 5 6 (most foreground 5)" stderr &&
	oref check t3.png --image c1_0000.nii.gz --seg thin_seg.nii.gz --best 5 &&
	t_code 0 ov --image c1_0000.nii.gz --seg thin_seg.nii.gz --slices 6 -o t6.png &&
	grep -q "z slices 4 5 6 (most foreground 5)" stderr &&
	t_code 0 ov --image c1_0000.nii.gz --seg thin_seg.nii.gz --slices 2 -o t2.png &&
	grep -q "z slices 5 6 (most foreground 5)" stderr &&
	oref check t2.png --image c1_0000.nii.gz --seg thin_seg.nii.gz --slices 2 --best 5
'

test_expect_success 'a label-1 voxel has exactly (1-alpha)*grey + alpha*colour (decoded in Python)' '
	for a in 0.6 0.35 1 0; do
		t_code 0 nnp-overlay -f --alpha $a --image c1_0000.nii.gz --seg c1_seg.nii.gz -o a$a.png &&
		oref check a$a.png --alpha $a --image c1_0000.nii.gz --seg c1_seg.nii.gz >out$a &&
		cat out$a && grep -q "^ok .* blend [0-9]*,[0-9]*,[0-9]*$" out$a || return 1
	done &&
	grep -q " blend 67,99,216$" out1 &&
	g=$(sed -n "s/.* blend \([0-9]*\),.*/\1/p" out0) && grep -q " blend $g,$g,$g$" out0
'

test_expect_success 'every pixel (no captions): axes 0/1/2, 1-7 rows, channels, panel sizes, alpha' '
	n=0 &&
	for ax in 0 1 2; do
		for s in 1 2 5 7; do
			args="--no-captions --axis $ax --slices $s --alpha 0.45 --min-size 90 --image c1_0000.nii.gz --image c1_0001.nii.gz --channel $((s % 2)) --seg c1_seg.nii.gz --ref c1_ref.nii.gz" &&
			t_code 0 ov -f $args -o p.png &&
			oref check p.png $args --best "$(best)" >out || { cat out; return 1; }
			n=$((n + 1))
		done
	done &&
	echo "$n montages identical" &&
	args="--no-captions --image big_0000.nii.gz --seg big_seg.nii.gz --min-size 300" &&
	t_code 0 nnp-overlay $args -o q.png && oref check q.png $args
'

test_expect_success 'anisotropic spacing: panels keep the physical aspect ratio, smallest edge >= 256' '
	t_code 0 nnp-overlay --no-captions --axis 1 --slices 1 --image c1_0000.nii.gz --seg c1_seg.nii.gz -o an.png &&
	set -- $(oref png an.png) &&
	"$PYTHON" -c "
import sys
w, h = int(sys.argv[1]), int(sys.argv[2])
pw, ph = (w - 4 * 3) // 2, h - 8
# axis 1: rows z (14 x 3 mm = 42 mm), columns x (40 x 0.8 mm = 32 mm)
assert min(pw, ph) == 256 and abs(ph / pw - 42 / 32) < 0.01, (pw, ph)
" "$1" "$2"
'

test_expect_success 'no reference: two columns; the prediction picks the slices' '
	t_code 0 ov --image c1_0000.nii.gz --seg c1_seg.nii.gz -o nr.png &&
	oref check nr.png --image c1_0000.nii.gz --seg c1_seg.nii.gz --best "$(best)" >out && cat out &&
	set -- $(cat out) &&
	# rows y (36 x 0.8 mm) are the shorter edge: 256 px; columns x (40 x 0.8 mm): 284 px
	test "$2" = $((4 + 2 * (284 + 4))) && test "$3" = $((4 + 20 + 3 * (20 + 256 + 4)))
'

test_expect_success 'no foreground: evenly spread slices; a float label file; a 2D image' '
	t_code 0 ov --image c2_0000.nii.gz --seg c2_seg.nii.gz --ref c2_ref.nii.gz -o e.png &&
	grep -q "c2: z slices 2 7 11 (no foreground)" stderr &&
	oref check e.png --image c2_0000.nii.gz --seg c2_seg.nii.gz --ref c2_ref.nii.gz &&
	t_code 0 nnp-overlay --image c1_0000.nii.gz --seg c1_fseg.nii.gz -o f.png &&
	oref check f.png --image c1_0000.nii.gz --seg c1_fseg.nii.gz &&
	t_code 0 ov --image c3_0000.nii.gz --seg c3_seg.nii.gz --ref c3_ref.nii.gz -o d2.png &&
	grep -q "z slices 0 (most foreground 0)" stderr &&
	oref check d2.png --image c3_0000.nii.gz --seg c3_seg.nii.gz --ref c3_ref.nii.gz --best 0 &&
	t_code 0 nnp-overlay --axis 2 --image c3_0000.nii.gz --seg c3_seg.nii.gz -o d2x.png &&
	oref check d2x.png --axis 2 --image c3_0000.nii.gz --seg c3_seg.nii.gz
'

test_expect_success 'grids differ (shape, origin, spacing, channel files): exit 1 naming the files, nothing written' '
	t_code 1 nnp-overlay --image c1_0000.nii.gz --seg big_seg.nii.gz -o g.png &&
	t_err_line nnp-overlay big_seg.nii.gz c1_0000.nii.gz shape &&
	t_code 1 nnp-overlay --image c1_0000.nii.gz --seg c1_seg.nii.gz --ref shift_seg.nii.gz -o g.png &&
	t_err_line nnp-overlay shift_seg.nii.gz c1_0000.nii.gz &&
	t_code 1 nnp-overlay --image c1_0000.nii.gz --seg sp_seg.nii.gz -o g.png &&
	t_err_line nnp-overlay sp_seg.nii.gz spacing &&
	t_code 1 nnp-overlay --image c1_0000.nii.gz --image big_0001.nii.gz --seg c1_seg.nii.gz -o g.png &&
	t_err_line nnp-overlay big_0001.nii.gz &&
	t_no_file g.png && check_no_tmp .
'

test_expect_success 'missing or corrupt input: exit 1, no partial file' '
	t_code 1 nnp-overlay --image nosuch_0000.nii.gz --seg c1_seg.nii.gz -o g.png &&
	t_err_line nnp-overlay nosuch_0000.nii.gz &&
	head -c $(($(stat -c %s c1_0000.nii.gz) / 2)) c1_0000.nii.gz >cut.nii.gz &&
	t_code 1 nnp-overlay --image cut.nii.gz --seg c1_seg.nii.gz -o g.png &&
	t_err_line nnp-overlay cut.nii.gz &&
	t_no_file g.png && check_no_tmp .
'

test_expect_success 'usage errors: exit 2 with one message' '
	I="--image c1_0000.nii.gz --seg c1_seg.nii.gz" &&
	for bad in "--slices 0" "--slices 65" "--slices x" "--axis 3" "--axis -1" "--alpha 1.5" \
		"--alpha -0.1" "--alpha nan" "--alpha abc" "--min-size 0" "--channel -1" "-j 2" "--bogus"; do
		t_code 2 nnp-overlay $I $bad -o u.png || { echo "accepted: $bad"; return 1; }
		test "$(grep -vc "^Try" stderr)" = 1 || return 1
	done &&
	t_code 2 nnp-overlay $I --channel 1 -o u.png && t_err_line nnp-overlay channel &&
	t_code 2 nnp-overlay --image c1_0000.nii.gz -o u.png && t_err_line nnp-overlay seg &&
	t_code 2 nnp-overlay --seg c1_seg.nii.gz -o u.png && t_err_line nnp-overlay image &&
	t_code 2 nnp-overlay $I && t_err_line nnp-overlay "-o" &&
	t_code 2 nnp-overlay $I -o - && t_err_line nnp-overlay &&
	t_code 2 nnp-overlay $I --seg-dir . -o u.png && t_err_line nnp-overlay either &&
	t_code 2 nnp-overlay && t_err_line nnp-overlay missing &&
	t_code 2 nnp-overlay $I -o u.png extra && t_err_line nnp-overlay unexpected &&
	t_code 0 nnp-overlay --help && grep -q -- "--ref-dir" stdout &&
	t_no_file u.png
'

test_expect_success 'an existing PNG is kept without --force (exit 2), replaced with it' '
	echo keep >k.png &&
	t_code 2 nnp-overlay --image c1_0000.nii.gz --seg c1_seg.nii.gz -o k.png &&
	t_err_line nnp-overlay k.png --force && test "$(cat k.png)" = keep &&
	t_code 0 nnp-overlay -f --image c1_0000.nii.gz --seg c1_seg.nii.gz -o k.png &&
	t_same_file nr.png k.png && check_no_tmp .
'

test_expect_success 'batch: one PNG per prediction, the same bytes as one by one; -j 2' '
	mkdir -p ds pred lab &&
	for c in c1 c2 big; do
		cp ${c}_0000.nii.gz ${c}_0001.nii.gz ds/ && cp ${c}_seg.nii.gz pred/$c.nii.gz &&
		cp ${c}_ref.nii.gz lab/$c.nii.gz || return 1
	done &&
	echo "{\"file_ending\": \".nii.gz\"}" >pred/dataset.json &&
	t_code 0 ov --dataset-dir ds --seg-dir pred --ref-dir lab -o outp/png -j 2 &&
	t_files_are outp/png big.png c1.png c2.png &&
	test "$(grep -c " -> outp/png/" stderr)" = 3 &&
	t_code 0 nnp-overlay --image ds/c1_0000.nii.gz --seg pred/c1.nii.gz --ref lab/c1.nii.gz -o c1.png &&
	t_same_file c1.png outp/png/c1.png &&
	oref check outp/png/big.png --image ds/big_0000.nii.gz --seg pred/big.nii.gz --ref lab/big.nii.gz &&
	t_code 0 nnp-overlay --dataset-dir ds --seg-dir pred -o outp/ch1 --channel 1 --slices 2 &&
	oref check outp/ch1/c2.png --image ds/c2_0001.nii.gz --seg pred/c2.nii.gz --slices 2 &&
	check_no_tmp outp
'

test_expect_success 'batch: existing outputs (2) and missing inputs (1) stop before anything is written' '
	t_code 2 nnp-overlay --dataset-dir ds --seg-dir pred --ref-dir lab -o outp/png &&
	t_err_line nnp-overlay big.png --force &&
	rm -rf out2 && rm lab/c2.nii.gz &&
	t_code 1 nnp-overlay --dataset-dir ds --seg-dir pred --ref-dir lab -o out2 &&
	t_err_line nnp-overlay c2 lab/c2.nii.gz && t_no_file out2 &&
	cp c2_ref.nii.gz lab/c2.nii.gz && rm ds/big_0000.nii.gz &&
	t_code 1 nnp-overlay --dataset-dir ds --seg-dir pred -o out2 &&
	t_err_line nnp-overlay big_0000.nii.gz && t_no_file out2 &&
	cp big_0000.nii.gz ds/ && head -c $(($(stat -c %s c2_seg.nii.gz) / 2)) c2_seg.nii.gz >pred/c2.nii.gz &&
	t_code 1 nnp-overlay --dataset-dir ds --seg-dir pred -o out2 -j 3 &&
	t_err_line nnp-overlay case c2 pred/c2.nii.gz &&
	t_no_file out2/c2.png && check_no_tmp out2 &&
	cp c2_seg.nii.gz pred/c2.nii.gz
'

test_expect_success 'batch: the file ending of PRED_DIR/dataset.json (.nii); an empty folder is exit 1' '
	mkdir -p ds2 pred2 empty &&
	"$PYTHON" -c "
import nibabel as nib
for s, d in ((\"c1_0000.nii.gz\", \"ds2/c1_0000.nii\"), (\"c1_seg.nii.gz\", \"pred2/c1.nii\")):
    nib.save(nib.load(s), d)
" &&
	cp c1_seg.nii.gz pred2/ignored.nii.gz &&
	echo "{\"file_ending\": \".nii\"}" >pred2/dataset.json &&
	t_code 0 nnp-overlay --dataset-dir ds2 --seg-dir pred2 -o out3 &&
	t_files_are out3 c1.png && t_same_file nr.png out3/c1.png &&
	t_code 1 nnp-overlay --dataset-dir ds2 --seg-dir empty -o out4 && t_err_line nnp-overlay empty &&
	echo "{\"file_ending\": 3}" >empty/dataset.json &&
	t_code 1 nnp-overlay --dataset-dir ds2 --seg-dir empty -o out4 && t_err_line nnp-overlay file_ending
'

test_expect_success 'the nnp front end runs it' '
	if [ -x "$NNP_BIN/nnp" ]; then
		t_code 0 nnp overlay --image c1_0000.nii.gz --seg c1_seg.nii.gz -o front.png &&
		t_same_file nr.png front.png
	fi
'

done_testing
