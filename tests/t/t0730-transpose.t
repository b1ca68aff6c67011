#!/bin/bash
# t0730-transpose.t — datasets whose low-resolution axis is not axis 0: the
# planner transposes (transpose_forward), the preprocessing follows.
. "$(dirname "$0")/lib.sh"
t_require_progs nnp-transpose nnp-fingerprint nnp-plan nnp-preprocess nnp-crop nnp-normalize nnp-resample

test_expect_success 'setup: 3 cases with 3 mm along x (array axis 2)' '
	"$PYTHON" -c "
import json, os, numpy as np, nibabel as nib
rng = np.random.default_rng(3)
for s in (\"imagesTr\", \"labelsTr\"):
    os.makedirs(\"raw/Dataset880_Tx/\" + s, exist_ok=True)
for i in range(3):
    nx, ny, nz = 14 + i, 40, 36 + 2 * i
    x, y, z = np.meshgrid(np.arange(nx), np.arange(ny), np.arange(nz), indexing=\"ij\")
    r = ((x - nx / 2) / (nx / 2.5)) ** 2 + ((y - 20) / 15.0) ** 2 + ((z - nz / 2) / 14.0) ** 2
    img = np.where(r < 1, 100 + 10 * rng.standard_normal(r.shape), 0).astype(np.float32)
    lab = (r < 0.4).astype(np.uint8) + (r < 0.1).astype(np.uint8)
    aff = np.array([[3.0, 0, 0, 5], [0, 0.8, 0, -7], [0, 0, 0.8, 11], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(img, aff), \"raw/Dataset880_Tx/imagesTr/t%d_0000.nii.gz\" % i)
    nib.save(nib.Nifti1Image(lab, aff), \"raw/Dataset880_Tx/labelsTr/t%d.nii.gz\" % i)
json.dump({\"channel_names\": {\"0\": \"MR\"}, \"labels\": {\"background\": 0, \"a\": 1, \"b\": 2},
           \"numTraining\": 3, \"file_ending\": \".nii.gz\"}, open(\"raw/Dataset880_Tx/dataset.json\", \"w\"))
" &&
	mkdir -p pre/Dataset880_Tx && cp raw/Dataset880_Tx/dataset.json pre/Dataset880_Tx/ &&
	nnp-fingerprint --num-samples 1e5 -o pre/Dataset880_Tx/dataset_fingerprint.json raw/Dataset880_Tx &&
	nnp-plan pre/Dataset880_Tx &&
	"$PYTHON" -c "
import json; p = json.load(open(\"pre/Dataset880_Tx/nnUNetPlans.json\"))
assert p[\"transpose_forward\"] == [2, 0, 1] and p[\"transpose_backward\"] == [1, 2, 0], p[\"transpose_forward\"]
assert p[\"configurations\"][\"3d_fullres\"][\"spacing\"][0] == 3.0, p[\"configurations\"][\"3d_fullres\"][\"spacing\"]
"
'
P=pre/Dataset880_Tx/nnUNetPlans.json
test_expect_success 'transpose permutes voxels, spacing and affine together (world positions kept)' '
	nnp-read --dataset raw/Dataset880_Tx --case t1 --no-label | nnp-transpose -p '"$P"' >tr.nnp &&
	nnp-write -o tr/ <tr.nnp &&
	"$PYTHON" -c "
import numpy as np, nibabel as nib
a = nib.load(\"raw/Dataset880_Tx/imagesTr/t1_0000.nii.gz\"); b = nib.load(\"tr/t1_0000.nii.gz\")
A = np.asanyarray(a.dataobj).transpose(2, 1, 0)          # nnU-Net order (z, y, x)
B = np.asanyarray(b.dataobj).transpose(2, 1, 0)
assert np.array_equal(A.transpose(2, 0, 1), B), (A.shape, B.shape)
assert np.allclose(list(b.header.get_zooms()[:3])[::-1], [3.0, 0.8, 0.8]), b.header.get_zooms()
# the same voxel at the same world position
z, y, x = 5, 7, 3                                           # index in A
zb, yb, xb = x, z, y                                        # transposed index (axes 2, 0, 1)
wa = a.affine @ [x, y, z, 1]; wb = b.affine @ [xb, yb, zb, 1]
assert np.allclose(wa, wb, atol=1e-4), (wa, wb)
"
'
test_expect_success 'transpose -p P --backward, and --undo, restore the original bytes' '
	nnp-transpose --undo <tr.nnp | nnp-write -o undo/ &&
	cmp <(gzip -dc raw/Dataset880_Tx/imagesTr/t1_0000.nii.gz) <(gzip -dc undo/t1_0000.nii.gz) &&
	nnp-transpose -p '"$P"' --backward <tr.nnp | nnp-info --json -H | "$PYTHON" -c "
import json, sys; a = json.loads(sys.stdin.readline())
assert \"transpose_forward\" not in a.get(\"props\", {}) and a[\"shape\"] == [1, 38, 40, 15], a
"
'
test_expect_success 'preprocess applies transpose_forward itself = the explicit filter pipe' '
	nnp-read --dataset raw/Dataset880_Tx --case t2 >in.nnp &&
	nnp-transpose -p '"$P"' in.nnp | nnp-crop | nnp-normalize -p '"$P"' -c 3d_fullres |
		nnp-resample -p '"$P"' -c 3d_fullres | nnp-class-locations >pipe.nnp &&
	nnp-preprocess -p '"$P"' -c 3d_fullres in.nnp >fused.nnp &&
	cmp pipe.nnp fused.nnp &&
	nnp-info --json -H fused.nnp | head -1 | "$PYTHON" -c "
import json, sys; a = json.loads(sys.stdin.readline())
assert a[\"props\"][\"transpose_forward\"] == [2, 0, 1] and a[\"spacing\"][0] == 3.0, a
assert a[\"props\"][\"shape_before_cropping\"][0] == 16, a[\"props\"]   # x (16) became axis 0
"
'
test_expect_success 'normalize/resample refuse untransposed frames, naming the fix' '
	nnp-crop in.nnp >c.nnp &&
	t_code 1 nnp-normalize -p '"$P"' -c 3d_fullres c.nnp &&
	grep -q "nnp transpose -p PLANS" stderr &&
	t_code 1 nnp-resample -p '"$P"' -c 3d_fullres c.nnp &&
	grep -q "nnp transpose -p PLANS" stderr
'
test_expect_success 'usage errors -> 2' '
	t_code 2 nnp-transpose --axes 0,0,1 in.nnp &&
	t_code 2 nnp-transpose in.nnp &&
	t_code 2 nnp-transpose --backward --undo in.nnp
'
done_testing
