#!/bin/bash
# t0120-info.t — nnp-info: per-frame summaries (text and --json) checked
# against numpy statistics of the source NIfTI files, and a golden .ok file.
. "$(dirname "$0")/lib.sh"
t_require_progs nnp-read nnp-info

# json_check JSONL I NII...: frame I of nnp-info --json output matches the
# NIfTI file(s) (channels): case, role, dtype, shape, spacing, and per-channel
# min/max/mean of the scaled values over finite voxels (mean within 1e-9 of
# the exactly rounded math.fsum mean; JC_NO_MEAN=1 skips it), nonfinite counts.
json_check() {
	"$PYTHON" - "$@" <<-'EOF'
	import json, math, os, sys
	import numpy as np
	import nibabel as nib
	lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
	i = int(sys.argv[2])
	role = sys.argv[3]
	files = sys.argv[4:]
	j = lines[i]
	def fail(m):
	    sys.exit("frame %d: %s\n%s" % (i, m, json.dumps(j)))
	chans = []
	for f in files:
	    img = nib.load(f)
	    a = np.asarray(img.dataobj.get_unscaled())
	    s, t = float(img.dataobj.slope), float(img.dataobj.inter)
	    if a.ndim == 3:
	        a = a[..., None]
	    for c in range(a.shape[3]):
	        chans.append((a[..., c], s, t))
	img = nib.load(files[0])
	a0 = chans[0][0]
	want_shape = [len(chans), a0.shape[2], a0.shape[1], a0.shape[0]]
	if j.get("shape") != want_shape:
	    fail("shape %r, want %r" % (j.get("shape"), want_shape))
	if j.get("role") != role:
	    fail("role %r, want %r" % (j.get("role"), role))
	if j.get("dtype") != np.dtype(a0.dtype).newbyteorder("=").name:
	    fail("dtype %r, want %r" % (j.get("dtype"), a0.dtype.name))
	z = [abs(float(v)) for v in img.header["pixdim"][1:4]]
	if j.get("spacing") != [z[2], z[1], z[0]]:
	    fail("spacing %r" % (j.get("spacing"),))
	if len(j.get("channels", [])) != len(chans):
	    fail("%d channel entries" % len(j.get("channels", [])))
	for c, (a, s, t) in enumerate(chans):
	    v = a.astype(np.float64) * s + t
	    fin = v[np.isfinite(v)]
	    got = j["channels"][c]
	    if got.get("nonfinite", 0) != int(v.size - fin.size):
	        fail("channel %d nonfinite %r, want %d" % (c, got.get("nonfinite"), v.size - fin.size))
	    if got["min"] != fin.min() or got["max"] != fin.max():
	        fail("channel %d min/max %r %r, want %r %r" % (c, got["min"], got["max"], fin.min(), fin.max()))
	    mean = math.fsum(fin) / fin.size
	    if os.environ.get("JC_NO_MEAN"):
	        continue
	    if not math.isclose(got["mean"], mean, rel_tol=1e-9, abs_tol=1e-9):
	        fail("channel %d mean %r, want %r" % (c, got["mean"], mean))
	EOF
}

test_expect_success 'setup' '
	mknii --dtype i16 --shape 7,6,5,2 --slope 0.5 --inter 1 --seed 1 sc.nii.gz &&
	mknii --dtype f32 --no-specials --seed 2 --geom-seed 2 fl_0000.nii.gz &&
	mknii --dtype f64 --no-specials --seed 3 --geom-seed 2 fl_0001.nii.gz &&
	mknii --dtype u8 --values labels:5 --seed 4 --geom-seed 2 fllab.nii.gz &&
	mknii --dtype f32 --seed 5 sp.nii.gz &&
	mknii --dtype u64 --seed 6 big.nii.gz &&
	nnp-read sc.nii.gz >sc.nnp &&
	nnp-read fl_0000.nii.gz --label fllab.nii.gz >fl.nnp &&
	nnp-read sp.nii.gz >sp.nnp &&
	nnp-read big.nii.gz >big.nnp
'
test_expect_success '--json: one object per frame' '
	nnp-info --json fl.nnp >fl.json &&
	test "$(wc -l <fl.json)" -eq 2
'
test_expect_success '--json matches numpy: image frame' '
	json_check fl.json 0 image fl_0000.nii.gz
'
test_expect_success '--json matches numpy: label frame' '
	json_check fl.json 1 label fllab.nii.gz
'
test_expect_success '--json: case ids' '
	"$PYTHON" -c "import json, sys
c = [json.loads(l)[\"case\"] for l in open(\"fl.json\")]
sys.exit(c != [\"fl\", \"fl\"])"
'
test_expect_success '--json: scl_slope/scl_inter applied to the statistics' '
	nnp-info --json sc.nnp >sc.json &&
	json_check sc.json 0 image sc.nii.gz
'
test_expect_success '--json: NaN and inf counted as nonfinite, not in min/max' '
	nnp-info --json sp.nnp >sp.json &&
	JC_NO_MEAN=1 json_check sp.json 0 image sp.nii.gz
'
test_expect_success '--json: mean stays accurate with +-FLT_MAX among the values' '
	json_check sp.json 0 image sp.nii.gz
'
test_expect_success '--json: uint64 extremes' '
	nnp-info --json big.nnp >big.json &&
	json_check big.json 0 image big.nii.gz
'
test_expect_success '--json: two channels of different source dtypes' '
	nnp-read fl_0000.nii.gz fl_0001.nii.gz >two.nnp 2>two.err || { cat two.err; exit 1; }
	nnp-info --json two.nnp >two.json &&
	"$PYTHON" -c "import json, sys; j = json.loads(open(\"two.json\").readline()); sys.exit(j[\"shape\"][0] != 2)"
'
test_expect_success 'text summary names case, role, dtype, shape and spacing' '
	nnp-info sc.nnp >sc.txt &&
	grep -q "case .sc." sc.txt &&
	grep -q "role image" sc.txt &&
	grep -q "int16" sc.txt &&
	grep -q "2 x 5 x 6 x 7" sc.txt &&
	grep -q "2.5 1.25 0.75" sc.txt &&
	test "$(grep -c "channel [01]:.*min.*max.*mean" sc.txt)" -eq 2
'
test_expect_success 'stdin, "-" and several files' '
	nnp-info --json <fl.nnp >in1.json &&
	nnp-info --json - <fl.nnp >in2.json &&
	nnp-info --json fl.nnp sc.nnp fl.nnp >in3.json &&
	t_same_file fl.json in1.json &&
	t_same_file fl.json in2.json &&
	test "$(wc -l <in3.json)" -eq 5
'
test_expect_success 'a concatenation of streams is a stream' '
	cat fl.nnp sc.nnp >cat.nnp &&
	nnp-info --json cat.nnp >cat.json &&
	test "$(wc -l <cat.json)" -eq 3 &&
	json_check cat.json 2 image sc.nii.gz
'
test_expect_success '--header-only prints no statistics' '
	nnp-info -H fl.nnp >h.txt &&
	grep -q "role label" h.txt &&
	! grep -q "mean" h.txt
'
test_expect_success 'an empty stream: exit 0, nothing printed' '
	: >empty.nnp &&
	t_code 0 nnp-info empty.nnp &&
	t_stderr_empty &&
	test ! -s stdout
'
test_expect_success 'a stream from a stock msgpack encoder' '
	frame_encode fl_0000.nii.gz --label fllab.nii.gz --chunk 2 -o py.nnp &&
	nnp-info --json py.nnp >py.json &&
	json_check py.json 0 image fl_0000.nii.gz &&
	json_check py.json 1 label fllab.nii.gz
'
test_expect_success 'big-endian payload from a stock encoder' '
	frame_encode --big-endian sc.nii.gz -o pybe.nnp &&
	nnp-info --json pybe.nnp >pybe.json &&
	"$PYTHON" -c "import json, sys
a = json.loads(open(\"pybe.json\").readline()); b = json.loads(open(\"sc.json\").readline())
# the stock encoder carries no scale: compare unscaled statistics by undoing 0.5, 1
for ca, cb in zip(a[\"channels\"], b[\"channels\"]):
    if ca[\"min\"] * 0.5 + 1 != cb[\"min\"] or ca[\"max\"] * 0.5 + 1 != cb[\"max\"]:
        sys.exit(\"%r vs %r\" % (ca, cb))"
'
test_expect_success 'text output equals tests/fixtures/t0120-info.ok' '
	mknii --dtype i16 --shape 6,5,4,2 --values ramp --seed 120 --form both --slope 2 --inter -3 gold_0000.nii.gz &&
	mknii --dtype u8 --shape 6,5,4 --values labels:3 --seed 121 --geom-seed 120 gold.nii.gz &&
	nnp-read --case gold gold_0000.nii.gz --label gold.nii.gz | nnp-info >gold.txt &&
	diff -u "$T_FIXTURES/t0120-info.ok" gold.txt
'

done_testing
