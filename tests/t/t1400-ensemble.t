#!/bin/bash
# t1400-ensemble.t — nnp ensemble (nnUNetv2_ensemble) against nnU-Net's
# average_probabilities + convert_probabilities_to_segmentation in numpy
# (tests/tools/ensemble_reference.py): nnU-Net's own saved probabilities of
# 903 mc_101 with the probabilities of two more nnU-Net predictions (its
# f0_mirror and f01_nomirror logits through nnp export --fp16-compat), a
# synthetic region model, argmax ties, means of exactly 0.5, -j, --continue,
# --force, and every error path (no partial outputs, no temporary files).
. "$(dirname "$0")/lib.sh"
t_require_progs nnp nnp-ensemble nnp-export nnp-write
export T_PYTOOLS

ref() { "$PYTHON" "$T_PYTOOLS/ensemble_reference.py" "$@"; }
D903=$T_FIXTURES/Dataset903_MultiChannel
MC=$T_FIXTURES/inference/Dataset903_MultiChannel/mc_101

# export_probs LOGITS_NAME DIR: nnU-Net's logits -> nnp export's probabilities in DIR.
export_probs() {
	mkdir -p "$2" &&
	"$PYTHON" "$T_PYTOOLS/mklogits.py" "$MC" --logits "$1" --dtype f2 -o "$2.nnp" &&
	nnp-export --fp16-compat --save-probabilities -p "$D903/nnUNetPlans.json" -c 3d_fullres \
		--dataset-json "$D903/dataset.json" "$2.nnp" | nnp-write -o "$2/" &&
	rm "$2/mc_101_seg.nii.gz" "$2.nnp" &&
	cp "$D903/dataset.json" "$2/" && cp "$D903/nnUNetPlans.json" "$2/plans.json"
}

test_expect_success 'setup: three nnU-Net probability folders of mc_101' '
	mkdir -p A && cp "$MC/probabilities_f0_nomirror.nii.gz" A/mc_101_probabilities.nii.gz &&
	cp "$D903/dataset.json" A/ && cp "$D903/nnUNetPlans.json" A/plans.json &&
	export_probs logits_f0_mirror.nii.gz B &&
	export_probs logits_f01_nomirror.nii.gz C &&
	t_files_are B dataset.json plans.json mc_101_probabilities.nii.gz
'
test_expect_success 'two folders: the mean equals numpy float32 averaging to 1e-6, the segmentation its argmax' '
	nnp ensemble -i A B -o AB --save-probabilities &&
	ref check AB A B --probabilities | tee out && grep -q "differs in 0 of" out &&
	t_files_are AB dataset.json plans.json mc_101.nii.gz mc_101_probabilities.nii.gz &&
	t_same_file A/dataset.json AB/dataset.json && t_same_file A/plans.json AB/plans.json && check_no_tmp AB
'
test_expect_success 'the ensemble differs from each member (it is not a copy)' '
	"$PYTHON" -c "
import nibabel as nib, numpy as np
s = np.asanyarray(nib.load(\"AB/mc_101.nii.gz\").dataobj)
for f in (\"A\", \"B\"):
    p = np.asanyarray(nib.load(f + \"/mc_101_probabilities.nii.gz\").dataobj).argmax(3)
    d = int((p != s).sum()); print(f, \"argmax differs from the ensemble in\", d, \"voxels\"); assert d > 0
"
'
test_expect_success 'three folders (order matters for float32 sums: A B C and C B A both match numpy)' '
	nnp ensemble -i A B C -o ABC --save-probabilities && ref check ABC A B C --probabilities &&
	nnp ensemble -i C B A -o CBA --save-probabilities && ref check CBA C B A --probabilities &&
	"$PYTHON" -c "
import nibabel as nib, numpy as np
a, b = (np.asanyarray(nib.load(d + \"/mc_101_probabilities.nii.gz\").dataobj) for d in (\"ABC\", \"CBA\"))
n = int((a != b).sum()); print(\"A B C vs C B A: %d values differ (max %.3g)\" % (n, np.abs(a - b).max())); assert n > 0"
'
test_expect_success 'without --save-probabilities only the segmentation; it is the same file' '
	nnp ensemble -i A B -o AB2 && t_files_are AB2 dataset.json plans.json mc_101.nii.gz &&
	t_same_file AB/mc_101.nii.gz AB2/mc_101.nii.gz
'
test_expect_success 'region model (synthetic): mean > 0.5 per region in regions_class_order, later ones win' '
	ref make R --folders 3 --cases r1,r2,r3 --shape 3,7,9,11 --regions 1,2,3 --levels 4 --seed 1 &&
	nnp ensemble -i R/f0 R/f1 R/f2 -o R/out --save-probabilities -j 2 &&
	ref check R/out R/f0 R/f1 R/f2 --probabilities | tee out && grep -q "exactly 0.5: [1-9]" out
'
test_expect_success 'regions in another order (2,3,1): the order decides overlaps' '
	ref make R2 --folders 2 --cases x --shape 3,6,8,10 --regions 2,3,1 --levels 4 --seed 5 &&
	nnp ensemble -i R2/f0 R2/f1 -o R2/out && ref check R2/out R2/f0 R2/f1
'
test_expect_success 'labels with argmax ties (quantised values): the first maximum wins; .nii ending' '
	ref make L --folders 2 --cases a,b,c,d,e --shape 4,5,6,7 --levels 4 --seed 2 --ending .nii &&
	nnp ensemble -i L/f0 L/f1 -o L/out --save-probabilities -j 1 &&
	ref check L/out L/f0 L/f1 --probabilities | tee out && grep -q "ties [1-9]" out &&
	t_files_are L/out dataset.json plans.json a.nii b.nii c.nii d.nii e.nii \
		a_probabilities.nii b_probabilities.nii c_probabilities.nii d_probabilities.nii e_probabilities.nii
'
test_expect_success '-j 3 writes the same bytes as -j 1' '
	nnp ensemble -i L/f0 L/f1 -o L/out3 --save-probabilities -j 3 &&
	for f in a b c d e; do t_same_file L/out/$f.nii L/out3/$f.nii &&
		t_same_file L/out/${f}_probabilities.nii L/out3/${f}_probabilities.nii; done
'
test_expect_success '--continue skips finished cases and redoes the others' '
	cp -r L/out L/cont && echo stale >L/cont/b.nii && rm L/cont/c.nii L/cont/d_probabilities.nii &&
	nnp ensemble -i L/f0 L/f1 -o L/cont --continue --save-probabilities &&
	echo stale | cmp - L/cont/b.nii &&
	t_same_file L/out/c.nii L/cont/c.nii && t_same_file L/out/d_probabilities.nii L/cont/d_probabilities.nii &&
	t_same_file L/out/d.nii L/cont/d.nii && check_no_tmp L/cont
'
test_expect_success 'existing outputs: refused without --force (exit 2, nothing written), replaced with it' '
	t_code 2 nnp ensemble -i L/f0 L/f1 -o L/cont && t_err_line nnp-ensemble "L/cont/a.nii" "exists" "--force" &&
	echo stale | cmp - L/cont/b.nii &&
	nnp ensemble -i L/f0 L/f1 -o L/cont --force && t_same_file L/out/b.nii L/cont/b.nii
'
# peak RSS means nothing under AddressSanitizer (shadow memory, quarantine)
ldd "$NNP_BIN/nnp-ensemble" 2>/dev/null | grep -q libasan || test_set_prereq NOSAN
test_expect_success NOSAN 'memory: streamed channel by channel, peak RSS below one K-channel float32 array' '
	ref make M --folders 2 --cases big --shape 12,64,128,128 --seed 3 --ending .nii &&
	/usr/bin/time -f %M -o rss nnp-ensemble -i M/f0 M/f1 -o M/out -j 1 &&
	echo "peak RSS $(cat rss) KiB; one K-channel float32 array $((12 * 64 * 128 * 128 * 4 / 1024)) KiB" &&
	test "$(cat rss)" -lt $((12 * 64 * 128 * 128 * 4 / 1024)) &&
	ref check M/out M/f0 M/f1
'
test_expect_success '--max-memory: a case over the limit is refused with exit 4 and the numbers' '
	t_code 4 nnp ensemble -i L/f0 L/f1 -o L/mem --max-memory 1K &&
	t_err_line nnp-ensemble "case" "MiB" "--max-memory" && t_no_file L/mem/a.nii
'
test_expect_success '--dataset-json when the first folder has none' '
	mkdir -p N && cp A/mc_101_probabilities.nii.gz N/ &&
	t_code 1 nnp ensemble -i N B -o NB && t_err_line nnp-ensemble "no dataset.json" "--dataset-json" &&
	nnp ensemble -i N B -o NB --dataset-json "$D903/dataset.json" 2>err && grep -q "no plans.json" err &&
	t_same_file AB/mc_101.nii.gz NB/mc_101.nii.gz && t_same_file "$D903/dataset.json" NB/dataset.json
'

# ---- errors ----
test_expect_success 'a case missing from one folder: exit 1 naming the folder and the case, nothing written' '
	ref make E --folders 2 --cases a,b,c --shape 3,4,5,6 --seed 4 && rm E/f1/b_probabilities.nii.gz &&
	t_code 1 nnp ensemble -i E/f0 E/f1 -o E/out && t_err_line nnp-ensemble "E/f1" "case '\''b'\''" "missing" &&
	t_no_file E/out/a.nii.gz E/out/c.nii.gz &&
	t_code 1 nnp ensemble -i E/f1 E/f0 -o E/out && t_err_line nnp-ensemble "E/f1" "b_probabilities.nii.gz"
'
test_expect_success 'a shape, channel or affine mismatch: exit 1 naming both files' '
	ref make G --folders 2 --cases a --shape 3,4,5,6 --seed 6 && ref make G2 --folders 1 --cases a --shape 3,4,5,7 &&
	ref make G3 --folders 1 --cases a --shape 4,4,5,6 && cp G/f0/dataset.json G3/f0/ &&
	t_code 1 nnp ensemble -i G/f0 G2/f0 -o G/out && t_err_line nnp-ensemble "G/f0/a_probabilities" "G2/f0/a_probabilities" "shape" &&
	t_code 1 nnp ensemble -i G/f0 G3/f0 -o G/out && t_err_line nnp-ensemble "G3/f0/a_probabilities" "channels" &&
	"$PYTHON" -c "
import nibabel as nib
i = nib.load(\"G/f1/a_probabilities.nii.gz\"); a = i.affine.copy(); a[0, 3] += 1.0
nib.save(nib.Nifti1Image(i.get_fdata().astype(\"float32\"), a), \"G/f1/a_probabilities.nii.gz\")" &&
	t_code 1 nnp ensemble -i G/f0 G/f1 -o G/out && t_err_line nnp-ensemble "G/f1/a_probabilities" "affine" &&
	t_no_file G/out/a.nii.gz && check_no_tmp G
'
test_expect_success 'channels other than dataset.json labels: exit 1' '
	ref make H --folders 2 --cases a --shape 3,4,5,6 && sed -i "s/\"c2\": 2/\"c2\": 2, \"c3\": 3/" H/f0/dataset.json &&
	t_code 1 nnp ensemble -i H/f0 H/f1 -o H/out && t_err_line nnp-ensemble "3 channels" "4 labels"
'
test_expect_success 'NaN in a later case: exit 1 naming file and channel; earlier cases done, no partial output' '
	ref make Q --folders 2 --cases a,b,c --shape 3,4,5,6 --seed 7 &&
	"$PYTHON" -c "
import nibabel as nib, numpy as np
i = nib.load(\"Q/f1/b_probabilities.nii.gz\"); d = i.get_fdata().astype(np.float32); d[2, 3, 1, 2] = np.nan
nib.save(nib.Nifti1Image(d, i.affine), \"Q/f1/b_probabilities.nii.gz\")" &&
	t_code 1 nnp ensemble -i Q/f0 Q/f1 -o Q/out --save-probabilities -j 1 &&
	t_err_line nnp-ensemble "Q/f1/b_probabilities.nii.gz" "NaN" "channel 2" "z = 1" &&
	test -f Q/out/a.nii.gz && t_no_file Q/out/b.nii.gz Q/out/b_probabilities.nii.gz Q/out/c.nii.gz &&
	check_no_tmp Q/out
'
test_expect_success 'a corrupt NIfTI, an integer file: exit 1 naming the file' '
	ref make K --folders 2 --cases a --shape 3,4,5,6 &&
	head -c 200 K/f0/a_probabilities.nii.gz >K/f1/a_probabilities.nii.gz &&
	t_code 1 nnp ensemble -i K/f0 K/f1 -o K/out && t_err_line nnp-ensemble "K/f1/a_probabilities.nii.gz" &&
	"$PYTHON" -c "
import nibabel as nib, numpy as np
nib.save(nib.Nifti1Image(np.zeros((6, 5, 4, 3), np.uint8), np.eye(4)), \"K/f1/a_probabilities.nii.gz\")" &&
	t_code 1 nnp ensemble -i K/f0 K/f1 -o K/out && t_err_line nnp-ensemble "uint8" "float32" &&
	t_no_file K/out/a.nii.gz && check_no_tmp K
'
test_expect_success 'a missing folder, a folder without probability files: exit 1' '
	t_code 1 nnp ensemble -i A nowhere -o X && t_err_line nnp-ensemble "nowhere" "No such file" &&
	mkdir -p empty && t_code 1 nnp ensemble -i A empty -o X && t_err_line nnp-ensemble "empty" "no probability files" &&
	t_no_file X
'
test_expect_success 'usage errors: exit 2' '
	t_code 2 nnp ensemble -i A -o X && t_err_line nnp-ensemble "two input folders" &&
	t_code 2 nnp ensemble -i A B && t_err_line nnp-ensemble "-o" &&
	t_code 2 nnp ensemble -i A B -o X --bogus &&
	t_code 2 nnp ensemble -i A B -o X -j 0 &&
	t_code 2 nnp ensemble -i A B -o X --continue --force &&
	t_code 2 nnp ensemble -i A B -o B && t_err_line nnp-ensemble "is input folder" &&
	t_code 2 nnp ensemble -i A B -o X --max-memory lots &&
	t_no_file X
'
test_expect_success '--help and --version' '
	nnp ensemble --help >h && grep -q "nnUNetv2_ensemble" h && grep -q "Exit status" h &&
	nnp ensemble --version | grep -q "nnpipe"
'
done_testing
