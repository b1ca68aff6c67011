#!/bin/bash
# t0700-crop.t — nnp crop / nnp uncrop (nnU-Net's crop_to_nonzero; the library is
# checked against nnU-Net's own outputs in tests/unit/test_crop.c).
. "$(dirname "$0")/lib.sh"
t_require_progs nnp-read nnp-crop nnp-uncrop nnp-write nnp-info

test_expect_success 'setup: zero background, an enclosed hole, a label' '
	"$PYTHON" -c "
import numpy as np, nibabel as nib
x, y, z = np.meshgrid(np.arange(30), np.arange(26), np.arange(12), indexing=\"ij\")
r = ((x - 16) / 9.0) ** 2 + ((y - 12) / 7.0) ** 2 + ((z - 6) / 4.0) ** 2
img = np.where(r < 1, 50 + x + y, 0).astype(np.int16)
img[r < 0.1] = 0
lab = np.zeros(img.shape, np.uint8); lab[r < 0.4] = 1; lab[0, 0, 0] = 2
aff = np.array([[0.9, 0, 0, -10], [0, 0.8, 0, 5], [0, 0, 2.5, 30], [0, 0, 0, 1]])
nib.save(nib.Nifti1Image(img, aff), \"c_0000.nii.gz\")
nib.save(nib.Nifti1Image(lab, aff), \"c.nii.gz\")
"
'
test_expect_success 'image + label: cropped to the filled mask, -1 outside, props recorded' '
	nnp-read c_0000.nii.gz --label c.nii.gz | nnp-crop >cropped.nnp &&
	nnp-info --json -H cropped.nnp >info.json &&
	"$PYTHON" -c "
import json
a, b = [json.loads(l) for l in open(\"info.json\")]
assert a[\"role\"] == \"image\" and b[\"role\"] == \"label\" and b[\"dtype\"] == \"int8\", (a, b)
assert a[\"affine\"] == b[\"affine\"], (a[\"affine\"], b[\"affine\"])   # label moves with the image
p = a[\"props\"]
assert p[\"shape_before_cropping\"] == [12, 26, 30], p
assert p[\"bbox_used_for_cropping\"] == [[3, 10], [6, 19], [8, 25]], p
assert p[\"shape_after_cropping_and_before_resampling\"] == [7, 13, 17] == a[\"shape\"][1:], p
assert abs(a[\"affine\"][0][3] - (-10 + 0.9 * 8)) < 1e-5 and abs(a[\"affine\"][2][3] - (30 + 2.5 * 3)) < 1e-5  # sform is float32
" &&
	nnp-write -o out/ <cropped.nnp &&
	"$PYTHON" -c "
import numpy as np, nibabel as nib
s = np.asanyarray(nib.load(\"out/c.nii.gz\").dataobj)
i = np.asanyarray(nib.load(\"out/c_0000.nii.gz\").dataobj)
assert set(np.unique(s)) == {-1, 0, 1}, np.unique(s)   # label 2 lay outside the box
assert (s[i != 0] >= 0).all()                          # inside the mask: no -1
assert (s == -1).sum() > 0
"
'
test_expect_success 'the enclosed zero cavity is inside the mask (holes filled)' '
	"$PYTHON" -c "
import numpy as np, nibabel as nib
s = np.asanyarray(nib.load(\"out/c.nii.gz\").dataobj)
assert s[8, 6, 3] == 1, s[8, 6, 3]   # centre voxel: zero in the image, labelled 1
"
'
test_expect_success 'without a label: a mask frame (0 inside, -1 outside); --no-mask drops it' '
	nnp-read c_0000.nii.gz | nnp-crop | nnp-info --json >m.json &&
	"$PYTHON" -c "
import json
a, m = [json.loads(l) for l in open(\"m.json\")]
assert m[\"role\"] == \"mask\" and m[\"channels\"][0][\"min\"] == -1 and m[\"channels\"][0][\"max\"] == 0, m
assert \"channel_dtypes\" not in m.get(\"props\", {})
" &&
	test "$(nnp-read c_0000.nii.gz | nnp-crop --no-mask | nnp-info -H | grep -c ^frame)" = 1
'
test_expect_success 'uncrop restores the image exactly (voxels, geometry, header)' '
	nnp-uncrop <cropped.nnp | nnp-write -o back/ &&
	cmp <(gzip -dc c_0000.nii.gz) <(gzip -dc back/c_0000.nii.gz)
'
test_expect_success 'uncrop --negative-to 0 gives the label map back (inside the box)' '
	nnp-uncrop --negative-to 0 <cropped.nnp | nnp-write -o back2/ &&
	"$PYTHON" -c "
import numpy as np, nibabel as nib
a = np.asanyarray(nib.load(\"c.nii.gz\").dataobj).astype(int); a[0, 0, 0] = 0
b = np.asanyarray(nib.load(\"back2/c.nii.gz\").dataobj).astype(int)
assert np.array_equal(a, b)
assert np.allclose(nib.load(\"c.nii.gz\").affine, nib.load(\"back2/c.nii.gz\").affine)
"
'
test_expect_success 'a label frame without its image -> 1 naming the case' '
	nnp-read --role label c.nii.gz >lab.nnp &&
	t_code 1 nnp-crop lab.nnp &&
	t_err_line nnp-crop && grep -q "does not follow its image" stderr
'
test_expect_success 'uncrop of a frame without a crop record -> 1' '
	nnp-read c_0000.nii.gz >plain.nnp &&
	t_code 1 nnp-uncrop plain.nnp &&
	grep -q "no crop record" stderr
'
test_expect_success 'a truncated stream -> 1, and frames to a terminal are refused' '
	head -c 3000 cropped.nnp >cut.nnp &&
	t_code 1 nnp-crop cut.nnp && grep -q truncated stderr &&
	rc=0; script -qec "nnp-crop cropped.nnp" /dev/null >tty.out 2>&1 || rc=$?
	grep -q terminal tty.out
'
done_testing
