#!/bin/bash
# t0300-verify.t — nnp verify: a generated clean dataset passes; copies of it
# with one defect each fail (exit 1) with the specific message naming the
# file; warnings alone pass (exit 0); look-alikes of the 901/903 fixture
# datasets (their dataset.json, generated tiny volumes) pass and reproduce
# nnU-Net's negative fixtures (tests/fixtures/../ops/verify_dataset_integrity
# _negative.json); --json, -j and --max-errors.
. "$(dirname "$0")/lib.sh"
t_require_progs nnp-verify

RAW=$(t_tmpdir)
unset nnUNet_raw nnUNet_preprocessed nnUNet_results
CLEAN="$RAW/Dataset990_Tiny"
MKDS="$T_PYTOOLS/mkdataset.py"

# bad NAME [BASE]: a fresh copy of the clean dataset (or of $RAW/BASE) as
# $RAW/bad/NAME; prints its folder.
bad() {
	local d="$RAW/bad/$1" src=$CLEAN
	[ -z "${2:-}" ] || src="$RAW/$2"
	rm -rf "$d" && mkdir -p "$RAW/bad" && cp -r "$src" "$d" && printf '%s\n' "$d"
}

# Voxel and header defects are made in one Python run (importing nibabel
# takes 0.3 s): EDITS has one line per edit, TAB-separated,
#   NAME  BASE  FILE  CODE
# = copy $RAW/BASE to $RAW/bad/NAME (once), load NAME/FILE with nibabel
# (a = voxels as stored, hdr = header, aff = affine), run CODE, save it back
# with a's dtype.  CODE may set slope (scl_slope) or pixdim3 (a raw pixdim[3]
# written into the saved bytes, for values nibabel refuses to write).
EDITS='
shape	Dataset990_Tiny	labelsTr/case_001.nii.gz	a = a[:, :, :-1]
chshape	Dataset990_Tiny	imagesTr/case_002_0001.nii.gz	a = a[:-1]
spacing	Dataset990_Tiny	labelsTr/case_002.nii.gz	aff[:3, 2] *= 1.1; z = list(hdr.get_zooms()); z[2] *= 1.1; hdr.set_zooms(z)
zerosp	Dataset990_Tiny	imagesTr/case_000_0000.nii.gz	pixdim3 = 0.0
zerosp	Dataset990_Tiny	imagesTr/case_000_0001.nii.gz	pixdim3 = 0.0
zerosp	Dataset990_Tiny	labelsTr/case_000.nii.gz	pixdim3 = 0.0
nan	Dataset990_Tiny	imagesTr/case_002_0000.nii.gz	a[0, 0, 0] = np.nan; a[1, 2, 3] = np.inf; a[2, 2, 2] = -np.inf
nanlab	Dataset990_Tiny	labelsTr/case_003.nii.gz	a = a.astype(np.float32); a[0, 0, 0] = np.nan
unexpected	Dataset990_Tiny	labelsTr/case_000.nii.gz	a[0, 0, 0] = 3; a[1, 1, 1] = 7
nonint	Dataset990_Tiny	labelsTr/case_001.nii.gz	a = a.astype(np.float32); a[3, 3, 3] = 0.5
slope	Dataset990_Tiny	labelsTr/case_001.nii.gz	slope = 0.5
negative	Dataset990_Tiny	labelsTr/case_002.nii.gz	a = a.astype(np.int8); a[0, 0, 0] = -1
label4d	Dataset990_Tiny	labelsTr/case_003.nii.gz	a = np.stack([a, a], axis=-1)
origin	Dataset990_Tiny	labelsTr/case_001.nii.gz	aff[0, 3] += 1.5
direction	Dataset990_Tiny	labelsTr/case_002.nii.gz	aff[:3, 1] *= -1
empty	Dataset990_Tiny	labelsTr/case_000.nii.gz	a[:] = 0
floatlab	Dataset990_Tiny	labelsTr/case_003.nii.gz	a = a.astype(np.float32)
thick	Dataset990_Tiny	imagesTr/case_001_0000.nii.gz	aff[:3, 2] *= 24; z = list(hdr.get_zooms()); z[2] = 60; hdr.set_zooms(z)
thick	Dataset990_Tiny	imagesTr/case_001_0001.nii.gz	aff[:3, 2] *= 24; z = list(hdr.get_zooms()); z[2] = 60; hdr.set_zooms(z)
thick	Dataset990_Tiny	labelsTr/case_001.nii.gz	aff[:3, 2] *= 24; z = list(hdr.get_zooms()); z[2] = 60; hdr.set_zooms(z)
many	Dataset990_Tiny	labelsTr/case_001.nii.gz	a[0, 0, 0] = 9
many	Dataset990_Tiny	imagesTr/case_002_0001.nii.gz	a[0, 0, 0] = np.nan
many	Dataset990_Tiny	labelsTr/case_002.nii.gz	aff[1, 3] -= 2
unexpected_label	Dataset901_Spheres	labelsTr/sph_000.nii.gz	a[0, 0, 0] = 5
shape_mismatch	Dataset901_Spheres	labelsTr/sph_001.nii.gz	a = a[:, :, :-1]
spacing_mismatch	Dataset901_Spheres	labelsTr/sph_002.nii.gz	aff[:3, 2] *= 1.1; z = list(hdr.get_zooms()); z[2] *= 1.1; hdr.set_zooms(z)
nan_in_image	Dataset903_MultiChannel	imagesTr/mc_002_0000.nii.gz	a[1, 1, 1] = np.nan
nansp	Dataset990_Tiny	labelsTr/case_002.nii.gz	pixdim3 = float("nan")
image4d	Dataset990_Tiny	imagesTr/case_001_0001.nii.gz	a = np.stack([a, a], axis=-1)
'
make_edits() {
	printf '%s' "$EDITS" | "$PYTHON" -c '
import gzip, os, shutil, struct, sys
import numpy as np, nibabel as nib
raw = sys.argv[1]
for line in sys.stdin.read().splitlines():
    if not line.strip():
        continue
    name, base, f, code = line.split("\t", 3)
    d = os.path.join(raw, "bad", name)
    if not os.path.isdir(d):
        shutil.copytree(os.path.join(raw, base), d)
    path = os.path.join(d, f)
    img = nib.load(path)
    ns = {"np": np, "a": np.asanyarray(img.dataobj).copy(), "hdr": img.header.copy(),
          "aff": img.affine.copy()}
    exec(code, ns)
    a, hdr = ns["a"], ns["hdr"]
    hdr.set_data_dtype(a.dtype)
    out = nib.Nifti1Image(a, ns["aff"], hdr)
    out.header.set_data_dtype(a.dtype)
    if "slope" in ns:
        out.header.set_slope_inter(ns["slope"], 0.0)
    nib.save(out, path)
    if "pixdim3" in ns:
        b = bytearray(gzip.decompress(open(path, "rb").read()))
        struct.pack_into("<f", b, 76 + 3 * 4, ns["pixdim3"])
        open(path, "wb").write(gzip.compress(bytes(b)))
' "$RAW"
}

# jedit DIR CODE: edit DIR/dataset.json as the dict j (key order kept).
jedit() {
	"$PYTHON" -c '
import sys, json
p = sys.argv[1] + "/dataset.json"
j = json.load(open(p))
exec(sys.argv[2])
json.dump(j, open(p, "w"), indent=4)
' "$@"
}

# has_check KIND CHECK FILE: the --json report lists a finding of KIND
# (errors|warnings) with check id CHECK about FILE.
has_check() {
	"$PYTHON" -c '
import sys, json
kind, check, path = sys.argv[1:4]
r = json.load(open("report.json"))
assert any(f["check"] == check and f["file"] == path for f in r[kind]), \
    "no %s %s for %s in %s" % (kind, check, path, json.dumps(r[kind], indent=1))
' "$@"
}

# fails DIR FILE CHECK WORD...: nnp-verify DIR exits 1; stdout has an error
# line for DIR/FILE holding every WORD; --json has the check id; the last
# line is a FAILED summary; nothing on stderr.
fails() {
	local d=$1 f=$2 check=$3 w
	shift 3
	t_code 1 nnp-verify "$d" || return 1
	t_stderr_empty || return 1
	grep -F "error: $d/$f: " stdout >lines || {
		echo "no error line for $d/$f:"; cat stdout; return 1
	}
	for w in "$@"; do
		grep -qF -- "$w" lines || { echo "error line lacks '$w':"; cat lines; return 1; }
	done
	tail -n 1 stdout | grep -q ": FAILED$" || { echo "bad summary:"; tail -n 1 stdout; return 1; }
	nnp-verify --json "$d" >report.json || test $? -eq 1
	has_check errors "$check" "$d/$f"
}

# warns DIR FILE CHECK WORD...: exit 0 with a warning line for DIR/FILE.
warns() {
	local d=$1 f=$2 check=$3 w
	shift 3
	t_code 0 nnp-verify "$d" || return 1
	grep -F "warning: $d/$f: " stdout >lines || {
		echo "no warning line for $d/$f:"; cat stdout; return 1
	}
	for w in "$@"; do
		grep -qF -- "$w" lines || { echo "warning line lacks '$w':"; cat lines; return 1; }
	done
	! grep -q "^error: " stdout &&
	tail -n 1 stdout | grep -q " 0 errors, .*: OK$" &&
	nnp-verify --json "$d" >report.json &&
	has_check warnings "$check" "$d/$f"
}

# ---- the clean dataset ---------------------------------------------------------
test_expect_success 'setup: a clean 4-case, 2-channel dataset (8x9x10)' '
	"$PYTHON" "$MKDS" --cases 4 --channels 2 --shape 8,9,10 --labels 3 "$CLEAN" &&
	test -f "$CLEAN/imagesTr/case_003_0001.nii.gz"
'
test_expect_success 'setup: 901/903 look-alikes (fixture dataset.json, tiny volumes)' '
	"$PYTHON" "$MKDS" --cases 12 --channels 1 --image-dtype int16 --shape 9,8,7 \
		--spacing 0.772,0.772,2.75 "$RAW/Dataset901_Spheres" &&
	cp "$T_FIXTURES/Dataset901_Spheres/dataset.json" "$RAW/Dataset901_Spheres/" &&
	(cd "$RAW/Dataset901_Spheres" && for s in imagesTr/case_0*; do
		n=${s#imagesTr/case_}; mv "$s" "imagesTr/sph_$n"; done &&
	 for s in labelsTr/case_0*; do n=${s#labelsTr/case_}; mv "$s" "labelsTr/sph_$n"; done) &&
	"$PYTHON" "$MKDS" --cases 10 --channels 2 --image-dtype float32 --shape 8,9,7 \
		--spacing 1,1,1 "$RAW/Dataset903_MultiChannel" &&
	cp "$T_FIXTURES/Dataset903_MultiChannel/dataset.json" "$RAW/Dataset903_MultiChannel/" &&
	(cd "$RAW/Dataset903_MultiChannel" && for s in imagesTr/case_0* labelsTr/case_0*; do
		mv "$s" "${s%%/*}/mc_${s#*/case_}"; done)
'
test_expect_success 'setup: copies with voxel/header defects (one Python run)' '
	make_edits && test -d "$RAW/bad/nan_in_image"
'
test_expect_success 'the clean dataset passes: exit 0, only the summary' '
	t_code 0 nnp-verify "$CLEAN" &&
	t_stderr_empty &&
	echo "Dataset990_Tiny: 4 cases, 0 errors, 0 warnings: OK" >want &&
	t_same_file want stdout
'
test_expect_success 'ids and names resolve in $nnUNet_raw; the nnp front end runs verify' '
	nnUNet_raw="$RAW" t_code 0 nnp-verify 990 && grep -q ": OK$" stdout &&
	nnUNet_raw="$RAW" t_code 0 nnp-verify Dataset990_Tiny && grep -q ": OK$" stdout &&
	if [ -x "$NNP_BIN/nnp" ]; then nnUNet_raw="$RAW" t_code 0 nnp verify 990; fi
'
test_expect_success '--json of the clean dataset' '
	t_code 0 nnp-verify --json "$CLEAN" &&
	"$PYTHON" -c "
import json
r = json.load(open(\"stdout\"))
assert r == {\"dataset\": \"Dataset990_Tiny\", \"cases\": 4, \"errors\": [], \"warnings\": [],
             \"ok\": True, \"truncated\": False}, r
"
'

# ---- dataset.json defects ---------------------------------------------------------
test_expect_success 'defect: dataset.json missing' '
	d=$(bad nojson) && rm "$d/dataset.json" &&
	fails "$d" dataset.json dataset-json "missing" "create dataset.json"
'
test_expect_success 'defect: dataset.json is not valid JSON (line and column)' '
	d=$(bad syntax) && printf "{\"labels\": {\"background\": 0,}\n}\n" >"$d/dataset.json" &&
	fails "$d" dataset.json dataset-json "invalid JSON at line 1, column"
'
test_expect_success 'defect: required key labels missing' '
	d=$(bad nolabels) && jedit "$d" "del j[\"labels\"]" &&
	fails "$d" dataset.json required-key "labels: missing required key" "add \"labels\""
'
test_expect_success 'defect: numTraining misspelt numtraining' '
	d=$(bad typo) && jedit "$d" "j[\"numtraining\"] = j.pop(\"numTraining\")" &&
	fails "$d" dataset.json required-key "numTraining: missing required key" \
		"'\''numtraining'\'' is present"
'
test_expect_success 'defect: labels.background is not 0' '
	d=$(bad bg) && jedit "$d" "j[\"labels\"][\"background\"] = 1" &&
	fails "$d" dataset.json background "labels.background: must be 0, not 1"
'
test_expect_success 'defect: a label value is not an integer' '
	d=$(bad labstr) && jedit "$d" "j[\"labels\"][\"label1\"] = \"one\"" &&
	fails "$d" dataset.json label-value \
		"labels.label1: must be an integer or a list of integers, not \"one\""
'
test_expect_success 'defect: ignore label is not max(labels) + 1' '
	d=$(bad ignore) && jedit "$d" "j[\"labels\"][\"ignore\"] = 7" &&
	fails "$d" dataset.json ignore-label "labels.ignore: is 7 but must be max(labels) + 1 = 3"
'
test_expect_success 'defect: regions without regions_class_order' '
	d=$(bad regions) && jedit "$d" "j[\"labels\"][\"label1\"] = [1, 2]" &&
	fails "$d" dataset.json regions "regions_class_order: missing: labels define 2 regions"
'
test_expect_success 'defect: regions_class_order of the wrong length' '
	d=$(bad rco) && jedit "$d" "j[\"labels\"][\"label1\"] = [1, 2]; j[\"regions_class_order\"] = [1]" &&
	fails "$d" dataset.json regions "regions_class_order: has 1 entries but labels define 2 regions"
'
test_expect_success 'defect: nnU-Net v1 labels {"0": "background"}' '
	d=$(bad v1) && jedit "$d" "j[\"labels\"] = {\"0\": \"background\", \"1\": \"a\", \"2\": \"b\"}" &&
	fails "$d" dataset.json labels "looks like nnU-Net v1" nnUNetv2_convert_old_nnUNet_dataset
'
test_expect_success 'defect: channel_names keys are not 0..N-1' '
	d=$(bad chkeys) && jedit "$d" "j[\"channel_names\"] = {\"0\": \"CT\", \"one\": \"T2\"}" &&
	fails "$d" dataset.json channel-names "channel_names.one: keys must be channel indices \"0\"..\"1\""
'
test_expect_success 'defect: unknown overwrite_image_reader_writer' '
	d=$(bad rw) && jedit "$d" "j[\"overwrite_image_reader_writer\"] = \"NiftiIO\"" &&
	fails "$d" dataset.json reader-writer "unknown reader/writer \"NiftiIO\""
'
test_expect_success 'defect: file_ending .nii for .nii.gz files' '
	d=$(bad ending) && jedit "$d" "j[\"file_ending\"] = \".nii\"" &&
	fails "$d" imagesTr file-ending "no file ends with file_ending '\''.nii'\'' of dataset.json" \
		"the 8 image files end with e.g. '\''.nii.gz'\''" "set \"file_ending\": \".nii.gz\"" &&
	grep -qF "error: $d/dataset.json: numTraining: is 4 but 0 training cases were found" stdout
'

# ---- file names and counts ------------------------------------------------------------
test_expect_success 'defect: a channel suffix with 3 digits (_001)' '
	d=$(bad suffix) && mv "$d/imagesTr/case_001_0001.nii.gz" "$d/imagesTr/case_001_001.nii.gz" &&
	fails "$d" imagesTr/case_001_001.nii.gz file-name "channel suffix '\''_001'\'' must have 4 digits" \
		"rename it to '\''case_001_0001.nii.gz'\''"
'
test_expect_success 'defect: an image without channel suffix' '
	d=$(bad nosuffix) && mv "$d/imagesTr/case_002_0001.nii.gz" "$d/imagesTr/case_002.nii.gz" &&
	fails "$d" imagesTr/case_002.nii.gz file-name "no _XXXX channel suffix" \
		"rename it to '\''case_002_0001.nii.gz'\''"
'
test_expect_success 'defect: one image stored as .nii in a .nii.gz dataset' '
	d=$(bad niifile) && gunzip -S .gz "$d/imagesTr/case_002_0001.nii.gz" &&
	fails "$d" imagesTr/case_002_0001.nii file-ending "does not end with file_ending '\''.nii.gz'\''"
'
test_expect_success 'defect: a missing channel file (fewer files than channel_names)' '
	d=$(bad nochan) && rm "$d/imagesTr/case_003_0001.nii.gz" &&
	fails "$d" imagesTr/case_003_0001.nii.gz missing-channel \
		"missing channel file(s) case_003_0001.nii.gz: dataset.json declares 2 channels, the case has 1"
'
test_expect_success 'defect: an extra channel file' '
	d=$(bad extrachan) && cp "$d/imagesTr/case_000_0001.nii.gz" "$d/imagesTr/case_000_0002.nii.gz" &&
	fails "$d" imagesTr/case_000_0002.nii.gz extra-channel \
		"3 channel files (0000, 0001, 0002) but dataset.json declares 2 channels"
'
test_expect_success 'defect: channel numbering differs between cases' '
	d=$(bad numbering) && mv "$d/imagesTr/case_001_0001.nii.gz" "$d/imagesTr/case_001_0002.nii.gz" &&
	fails "$d" imagesTr/case_001_0000.nii.gz channel-numbering \
		"channel files are numbered 0000, 0002, other cases (e.g. '\''case_000'\'') 0000, 0001"
'
test_expect_success 'defect: an image without a label' '
	d=$(bad nolabel) && rm "$d/labelsTr/case_002.nii.gz" &&
	fails "$d" labelsTr/case_002.nii.gz missing-label "missing label file" \
		"add labelsTr/case_002.nii.gz"
'
test_expect_success 'defect: a label without images (orphan), counts differ' '
	d=$(bad orphan) && cp "$d/labelsTr/case_000.nii.gz" "$d/labelsTr/case_999.nii.gz" &&
	fails "$d" labelsTr/case_999.nii.gz orphan-label "label file without images: imagesTr has no case '\''case_999'\''" &&
	grep -qF "error: $d/labelsTr: 5 label files for 4 cases in imagesTr" stdout &&
	has_check errors count-mismatch "$d/labelsTr"
'
test_expect_success 'defect: a label named like a channel file (case_001_0000)' '
	d=$(bad labsuffix) && mv "$d/labelsTr/case_001.nii.gz" "$d/labelsTr/case_001_0000.nii.gz" &&
	fails "$d" labelsTr/case_001_0000.nii.gz orphan-label "rename it to '\''case_001.nii.gz'\''"
'
test_expect_success 'defect: a hidden macOS ._ file with the file ending' '
	d=$(bad hidden) && cp "$d/imagesTr/case_000_0000.nii.gz" "$d/imagesTr/._case_000_0000.nii.gz" &&
	: >"$d/imagesTr/.DS_Store" &&
	fails "$d" imagesTr/._case_000_0000.nii.gz hidden-file "hidden file ending with file_ending" dot_clean &&
	! grep -q DS_Store stdout
'
test_expect_success 'defect: a 4D image file: channels in the files differ from channel_names' '
	d="$RAW/bad/image4d" &&
	fails "$d" imagesTr/case_001_0000.nii.gz channel-count "the case'\''s files hold 3 channels (4D files) but dataset.json declares 2" &&
	grep -qF "warning: $d/imagesTr/case_001_0001.nii.gz: 4D image file with 2 volumes" stdout
'
test_expect_success 'defect: no labelsTr folder' '
	d=$(bad nolabelsdir) && rm -r "$d/labelsTr" &&
	fails "$d" labelsTr labels-folder "missing: the training labels folder"
'
test_expect_success 'defect: a "dataset" dict naming a missing file' '
	d=$(bad dict) &&
	jedit "$d" "j[\"dataset\"] = {c: {\"images\": [\"imagesTr/%s_%04d.nii.gz\" % (c, k) for k in (0, 1)],
	  \"label\": \"labelsTr/%s.nii.gz\" % c} for c in (\"case_000\", \"case_001\", \"case_002\", \"case_003\")}" &&
	rm "$d/imagesTr/case_001_0001.nii.gz" &&
	fails "$d" imagesTr/case_001_0001.nii.gz missing-file \
		"missing image file (dataset.json: dataset.case_001.images[1])"
'

# ---- contents ----------------------------------------------------------------------
test_expect_success 'defect: a truncated .nii.gz (corrupt gzip) is named' '
	d=$(bad trunc) && f="$d/imagesTr/case_001_0000.nii.gz" &&
	head -c $(( $(wc -c <"$f") / 2 )) "$f" >"$f.tmp" && mv "$f.tmp" "$f" &&
	fails "$d" imagesTr/case_001_0000.nii.gz unreadable "cannot be read:"
'
test_expect_success 'defect: a text file named .nii.gz' '
	d=$(bad text) && echo "not an image" | gzip >"$d/labelsTr/case_000.nii.gz" &&
	fails "$d" labelsTr/case_000.nii.gz unreadable "cannot be read:" "not a NIfTI file"
'
test_expect_success 'defect: label shape differs from the images (one slice less)' '
	d="$RAW/bad/shape" &&
	fails "$d" labelsTr/case_001.nii.gz shape \
		"shape (z,y,x) 9x9x8 differs from the image'\''s 10x9x8 ('\''case_001_0000.nii.gz'\'')"
'
test_expect_success 'defect: a channel of another shape than channel 0' '
	d="$RAW/bad/chshape" &&
	fails "$d" imagesTr/case_002_0001.nii.gz shape "shape (z,y,x) 10x9x7 differs from the case'\''s first image'\''s 10x9x8"
'
test_expect_success 'defect: label spacing differs (slice thickness x1.1)' '
	d="$RAW/bad/spacing" &&
	fails "$d" labelsTr/case_002.nii.gz spacing "spacing (z,y,x) 2.75, 0.9, 0.8 differs from the image'\''s 2.5, 0.9, 0.8"
'
test_expect_success 'defect: zero voxel size in the header' '
	d="$RAW/bad/zerosp" &&
	fails "$d" imagesTr/case_000_0000.nii.gz spacing-invalid "voxel size (pixdim) z 0: spacing must be a positive number"
'
test_expect_success 'defect: a NaN voxel size in the header' '
	d="$RAW/bad/nansp" &&
	fails "$d" labelsTr/case_002.nii.gz unreadable "corrupt NIfTI header: pixdim[3] is not finite"
'
test_expect_success 'defect: NaN and Inf voxels in an image (counted)' '
	d="$RAW/bad/nan" &&
	fails "$d" imagesTr/case_002_0000.nii.gz nan-image "image contains 1 NaN and 2 Inf voxels (of 720)"
'
test_expect_success 'defect: NaN in a (float) label map' '
	d="$RAW/bad/nanlab" &&
	fails "$d" labelsTr/case_003.nii.gz nan-label "label map contains 1 NaN and 0 Inf voxels"
'
test_expect_success 'defect: label values not declared in dataset.json' '
	d="$RAW/bad/unexpected" &&
	fails "$d" labelsTr/case_000.nii.gz unexpected-labels "unexpected labels [3, 7]; dataset.json declares 0..2"
'
test_expect_success 'defect: non-integer label values (0.5 in a float label file)' '
	d="$RAW/bad/nonint" &&
	fails "$d" labelsTr/case_001.nii.gz non-integer-labels "1 voxels have non-integer label values (e.g. 0.5)"
'
test_expect_success 'defect: scl_slope 0.5 makes integer label voxels non-integer' '
	d="$RAW/bad/slope" &&
	fails "$d" labelsTr/case_001.nii.gz non-integer-labels "non-integer label values (e.g. 0.5)"
'
test_expect_success 'defect: negative label values' '
	d="$RAW/bad/negative" &&
	fails "$d" labelsTr/case_002.nii.gz negative-labels "negative label values [-1]"
'
test_expect_success 'defect: a 4D label file' '
	d="$RAW/bad/label4d" &&
	fails "$d" labelsTr/case_003.nii.gz label-4d "4D label file (2 volumes)"
'

# ---- warnings only: exit 0 ----------------------------------------------------------
test_expect_success 'warning: label origin differs from the image (nnU-Net warns only)' '
	d="$RAW/bad/origin" &&
	warns "$d" labelsTr/case_001.nii.gz origin "differs from the image'\''s" "by 1.5 mm" nnUNetv2_plot_overlay_pngs
'
test_expect_success 'warning: label direction flipped (nnU-Net warns only)' '
	d="$RAW/bad/direction" &&
	warns "$d" labelsTr/case_002.nii.gz direction "orientation (direction cosines of the affine) differs"
'
test_expect_success 'warning: an empty label map (only background)' '
	d="$RAW/bad/empty" &&
	warns "$d" labelsTr/case_000.nii.gz empty-label "only background (0)"
'
test_expect_success 'warning: labels stored as float32' '
	d="$RAW/bad/floatlab" &&
	warns "$d" labelsTr/case_003.nii.gz label-dtype "stored as float32"
'
test_expect_success 'warning: an absurd voxel size (60 mm slices)' '
	d="$RAW/bad/thick" &&
	warns "$d" imagesTr/case_001_0000.nii.gz spacing-unusual "unusual voxel size z 60 mm"
'
test_expect_success 'warning: legacy "modality", duplicate keys, a stray file' '
	d=$(bad legacy) && jedit "$d" "j[\"modality\"] = j.pop(\"channel_names\")" &&
	sed -i "s/\"numTraining\": 4,/\"numTraining\": 3, \"numTraining\": 4,/" "$d/dataset.json" &&
	echo notes >"$d/imagesTr/README.txt" &&
	warns "$d" dataset.json legacy-modality "modality: legacy key" &&
	has_check warnings json-duplicate-key "$d/dataset.json" &&
	has_check warnings stray-file "$d/imagesTr/README.txt"
'

# ---- look-alikes of the fixture datasets 901 and 903 ---------------------------------
for ds in 901 903; do
	test_expect_success "the $ds look-alike passes (exit 0, OK)" "
		nnUNet_raw=\"\$RAW\" t_code 0 nnp-verify $ds &&
		t_stderr_empty && grep -q ' 0 errors, 0 warnings: OK$' stdout
	"
done
# Opt-in only (the suite never reads ../shared on its own): point
# NNP_RAW_FIXTURES at an nnUNet_raw folder holding the real 901/903 datasets.
SHARED_RAW=${NNP_RAW_FIXTURES:-}
for ds in 901 903; do
	if [ -n "$SHARED_RAW" ] && [ -d "$SHARED_RAW" ]; then
		test_expect_success "the real fixture dataset $ds passes" "
			nnUNet_raw=\"\$SHARED_RAW\" t_code 0 nnp-verify $ds &&
			grep -q ' 0 errors, 0 warnings: OK$' stdout
		"
	else
		test_skip "the real fixture dataset $ds passes" "set NNP_RAW_FIXTURES=/path/to/nnUNet_raw to run it"
	fi
done

# The eight cases of verify_dataset_integrity_negative.json: nnU-Net fails each.
test_expect_success 'nnU-Net negative fixture unexpected_label: sph_000 contains 5' '
	d="$RAW/bad/unexpected_label" &&
	fails "$d" labelsTr/sph_000.nii.gz unexpected-labels "unexpected labels [5]; dataset.json declares 0..2"
'
test_expect_success 'nnU-Net negative fixture shape_mismatch: sph_001 label one slice less' '
	d="$RAW/bad/shape_mismatch" &&
	fails "$d" labelsTr/sph_001.nii.gz shape "shape (z,y,x) 6x8x9 differs from the image'\''s 7x8x9"
'
test_expect_success 'nnU-Net negative fixture spacing_mismatch: sph_002 slices x1.1' '
	d="$RAW/bad/spacing_mismatch" &&
	fails "$d" labelsTr/sph_002.nii.gz spacing "spacing (z,y,x) 3.025, 0.772, 0.772 differs from the image'\''s 2.75, 0.772, 0.772"
'
test_expect_success 'nnU-Net negative fixture missing_label: sph_003 deleted' '
	d=$(bad missing_label Dataset901_Spheres) && rm "$d/labelsTr/sph_003.nii.gz" &&
	fails "$d" labelsTr/sph_003.nii.gz missing-label "missing label file"
'
test_expect_success 'nnU-Net negative fixture numTraining_mismatch: 13 for 12' '
	d=$(bad numTraining_mismatch Dataset901_Spheres) && jedit "$d" "j[\"numTraining\"] = 13" &&
	fails "$d" dataset.json num-training "numTraining: is 13 but 12 training cases were found in imagesTr"
'
test_expect_success 'nnU-Net negative fixture labels_not_consecutive: lesion 3' '
	d=$(bad labels_not_consecutive Dataset901_Spheres) && jedit "$d" "j[\"labels\"][\"lesion\"] = 3" &&
	fails "$d" dataset.json consecutive-labels "[3] do not satisfy this (declared [0, 1, 3])"
'
test_expect_success 'nnU-Net negative fixture missing_channel: mc_004_0001 deleted' '
	d=$(bad missing_channel Dataset903_MultiChannel) && rm "$d/imagesTr/mc_004_0001.nii.gz" &&
	fails "$d" imagesTr/mc_004_0001.nii.gz missing-channel "dataset.json declares 2 channels, the case has 1"
'
test_expect_success 'nnU-Net negative fixture nan_in_image: one NaN in mc_002_0000' '
	d="$RAW/bad/nan_in_image" &&
	fails "$d" imagesTr/mc_002_0000.nii.gz nan-image "image contains 1 NaN voxels"
'

# ---- report format, determinism, limits ------------------------------------------------
test_expect_success 'setup: a dataset with many defects' '
	d="$RAW/bad/many" && rm "$d/labelsTr/case_000.nii.gz" "$d/imagesTr/case_003_0001.nii.gz" &&
	jedit "$d" "j[\"numTraining\"] = 6"
'
test_expect_success 'the report is the same for -j 1 and -j 4 (sorted by case)' '
	d="$RAW/bad/many" &&
	t_code 1 nnp-verify -j 1 "$d" && mv stdout j1 &&
	t_code 1 nnp-verify -j 4 "$d" && mv stdout j4 &&
	NNP_THREADS=3 t_code 1 nnp-verify "$d" && mv stdout j3 &&
	t_same_file j1 j4 && t_same_file j1 j3 &&
	test "$(grep -c "^error: " j1)" -eq 6 && test "$(grep -c "^warning: " j1)" -eq 1 &&
	tail -n 1 j1 | grep -qx "many: 4 cases, 6 errors, 1 warning: FAILED"
'
test_expect_success '--json parses and matches the text report' '
	d="$RAW/bad/many" &&
	t_code 1 nnp-verify "$d" && mv stdout text &&
	t_code 1 nnp-verify --json "$d" &&
	"$PYTHON" -c "
import json
r = json.load(open(\"stdout\"))
lines = open(\"text\").read().splitlines()
assert r[\"dataset\"] == \"many\" and r[\"cases\"] == 4 and r[\"ok\"] is False, r
assert set(r) == {\"dataset\", \"cases\", \"errors\", \"warnings\", \"ok\", \"truncated\"}, r
for kind, lst in ((\"error\", r[\"errors\"]), (\"warning\", r[\"warnings\"])):
    for f in lst:
        assert set(f) == {\"file\", \"case\", \"check\", \"message\", \"fix\"}, f
        line = \"%s: %s: %s: %s\" % (kind, f[\"file\"], f[\"message\"], f[\"fix\"])
        assert line in lines, line
assert len(r[\"errors\"]) + len(r[\"warnings\"]) == len(lines) - 1
assert [f[\"case\"] for f in r[\"errors\"]] == [None, None, \"case_000\", \"case_001\", \"case_002\", \"case_003\"], r[\"errors\"]
assert [f[\"check\"] for f in r[\"errors\"]][:2] == [\"num-training\", \"count-mismatch\"], r[\"errors\"]
assert [f[\"case\"] for f in r[\"warnings\"]] == [\"case_002\"], r[\"warnings\"]
"
'
test_expect_success '--max-errors 2 stops after two errors' '
	t_code 1 nnp-verify --max-errors 2 "$RAW/bad/many" &&
	test "$(grep -c "^error: " stdout)" -eq 2 &&
	tail -n 1 stdout | grep -q "2 errors, .*FAILED (stopped after 2 errors" &&
	t_code 1 nnp-verify --json --max-errors 1 "$RAW/bad/many" &&
	"$PYTHON" -c "import json; r = json.load(open(\"stdout\")); assert len(r[\"errors\"]) == 1 and r[\"truncated\"], r"
'

test_expect_success 'schemas/dataset.schema.json is JSON Schema; the fixture dataset.json files conform' '
	"$PYTHON" -c "import json, sys; json.load(open(sys.argv[1]))" "$T_REPO/schemas/dataset.schema.json" &&
	for py in "$PYTHON" python3; do
		"$py" -c "import jsonschema" 2>/dev/null || continue
		"$py" -c "
import json, sys, jsonschema
s = json.load(open(sys.argv[1]))
v = jsonschema.Draft202012Validator(s)
v.check_schema(s)
for p in sys.argv[2:]:
    errs = [e.message for e in v.iter_errors(json.load(open(p)))]
    assert not errs, (p, errs)
bad = {\"channel_names\": {\"0\": \"CT\"}, \"labels\": {\"background\": 1}, \"numTraining\": 1, \"file_ending\": \"nii\"}
assert len(list(v.iter_errors(bad))) == 2
" "$T_REPO/schemas/dataset.schema.json" "$T_FIXTURES"/Dataset90*/dataset.json "$CLEAN/dataset.json"
		exit
	done
	echo "# no jsonschema module: only parsed the schema"
'

# ---- usage -------------------------------------------------------------------------
test_expect_success 'usage errors exit 2; a missing folder exits 1 with one error line' '
	t_code 2 nnp-verify && t_err_line nnp-verify DATASET &&
	t_code 2 nnp-verify --bogus "$CLEAN" && t_err_line nnp-verify --bogus &&
	t_code 2 nnp-verify --max-errors 0 "$CLEAN" && t_err_line nnp-verify --max-errors &&
	t_code 2 nnp-verify -j x "$CLEAN" && t_err_line nnp-verify threads &&
	t_code 2 nnp-verify "$CLEAN" extra && t_err_line nnp-verify extra &&
	t_code 1 nnp-verify "$RAW/nosuch/Dataset1" && t_err_line nnp-verify "nosuch/Dataset1" &&
	nnUNet_raw="$RAW" t_code 1 nnp-verify 777 && t_err_line nnp-verify 777
'
test_expect_success '--help lists the options and the exit status; --version' '
	t_code 0 nnp-verify --help && t_stderr_empty &&
	grep -q -- "--max-errors" stdout && grep -qi "exit status" stdout &&
	t_code 0 nnp-verify --version && grep -q "^nnp-verify " stdout
'
test_expect_success 'a closed or full stdout: exit 3, no crash' '
	test -w /dev/full || exit 0
	t_code 3 sh -c "nnp-verify \"$CLEAN\" >/dev/full" && t_err_line nnp-verify
'

done_testing
