#!/bin/bash
# t0210-doctor.t — nnp-doctor: missing nnU-Net folders FAIL with the fix,
# a configured machine passes (warnings allowed), --json parses.
. "$(dirname "$0")/lib.sh"
[ -x "$NNP_BIN/nnp-doctor" ] || bail_out "$NNP_BIN/nnp-doctor is not built (run make)"

unset nnUNet_raw nnUNet_preprocessed nnUNet_results
ROOT=$(t_tmpdir)
mkdir -p "$ROOT/raw" "$ROOT/pre" "$ROOT/res"
JSON='import json, sys
d = json.load(sys.stdin)
assert isinstance(d["checks"], list) and d["checks"], d
for c in d["checks"]:
	assert c["status"] in ("ok", "warn", "FAIL"), c
	assert c["check"] and isinstance(c["detail"], str), c
	assert (c["fix"] is None) == (c["status"] == "ok"), c
assert d["ok"] == (d["failures"] == 0), d
'

test_plan 9

test_expect_success 'nnUNet_* unset: exit 1, FAIL line and export fix' '
	t_code 1 nnp-doctor &&
	grep -q "^FAIL  nnUNet_raw: not set" stdout &&
	grep -q "fix: .*export nnUNet_raw=" stdout &&
	grep -q "^FAIL  nnUNet_preprocessed:" stdout &&
	grep -q "^FAIL  nnUNet_results:" stdout
'

test_expect_success 'all three set to folders: exit 0' '
	nnUNet_raw="$ROOT/raw" nnUNet_preprocessed="$ROOT/pre" nnUNet_results="$ROOT/res" \
		t_code 0 nnp-doctor &&
	grep -q "^ok    nnUNet_raw: " stdout &&
	! grep -q "^FAIL" stdout
'

test_expect_success 'every line is a check or a fix' '
	t_code 1 nnp-doctor &&
	! grep -Ev "^(ok  |warn|FAIL)  [^:]+: |^      fix: |^[0-9]+ failures?, [0-9]+ warnings?$" stdout
'

test_expect_success 'a missing folder FAILs with mkdir -p' '
	nnUNet_raw="$ROOT/raw" nnUNet_preprocessed="$ROOT/nope" nnUNet_results="$ROOT/res" \
		t_code 1 nnp-doctor &&
	grep -q "^FAIL  nnUNet_preprocessed: .*does not exist" stdout &&
	grep -q "fix: mkdir -p $ROOT/nope" stdout
'

test_expect_success 'a file instead of a folder FAILs' '
	: >"$ROOT/file" &&
	nnUNet_raw="$ROOT/raw" nnUNet_preprocessed="$ROOT/pre" nnUNet_results="$ROOT/file" \
		t_code 1 nnp-doctor &&
	grep -q "^FAIL  nnUNet_results: .*not a folder" stdout
'

test_expect_success 'reports library versions' '
	t_code 1 nnp-doctor &&
	grep -q "^ok    zlib: " stdout && grep -q "^ok    jansson: " stdout &&
	grep -q "^ok    msgpack: " stdout && grep -q "^ok    nifticlib: " stdout &&
	grep -q "^ok    cores: " stdout
'

test_expect_success '--json parses, unset and set' '
	t_code 1 nnp-doctor --json && "$PYTHON" -c "$JSON" <stdout &&
	"$PYTHON" -c "import json,sys; d=json.load(sys.stdin); assert not d[\"ok\"]" <stdout &&
	nnUNet_raw="$ROOT/raw" nnUNet_preprocessed="$ROOT/pre" nnUNet_results="$ROOT/res" \
		t_code 0 nnp-doctor --json && "$PYTHON" -c "$JSON" <stdout &&
	"$PYTHON" -c "import json,sys; d=json.load(sys.stdin); assert d[\"ok\"]" <stdout
'

test_expect_success '--gpu-selftest without a GPU only warns' '
	nnUNet_raw="$ROOT/raw" nnUNet_preprocessed="$ROOT/pre" nnUNet_results="$ROOT/res" \
		nnp-doctor --gpu-selftest >out || rc=$? &&
	grep -q "gpu self-test: " out &&
	if ! grep -q "^ok    gpu 0:" out; then test "${rc:-0}" -eq 0; fi
'

test_expect_success '--help and --version exit 0, bad options exit 2' '
	t_code 0 nnp-doctor --help && grep -q "nnp doctor" stdout &&
	t_code 0 nnp-doctor --version && grep -q "nnp-doctor" stdout &&
	t_code 2 nnp-doctor --bogus && t_err_line nnp-doctor "--bogus" &&
	t_code 2 nnp-doctor extra && t_err_line nnp-doctor extra
'

done_testing
