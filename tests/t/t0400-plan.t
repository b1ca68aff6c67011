#!/bin/bash
# t0400-plan.t — nnp-plan writes the plans nnU-Net 2.8.1 writes: byte for
# byte on the fixture datasets (copies of tests/fixtures used as preprocessed
# folders), and identical to tests/tools/plan_reference.py (an independent
# numpy transcription of the planner) on generated fingerprints for every
# planner; the command line: -d, -o, --force, refusing to overwrite, missing
# fingerprint, bad --gpu-memory / --planner, the ResEnc presets.
. "$(dirname "$0")/lib.sh"
t_require_progs nnp-plan

REF="$T_PYTOOLS/plan_reference.py"
MKFP="$T_PYTOOLS/mkfingerprint.py"
PRE=$(t_tmpdir)
RAW=$(t_tmpdir)
unset nnUNet_raw nnUNet_preprocessed nnUNet_results

# fresh DATASET: a copy of the fixture folder in $PRE without its plans
fresh() {
	rm -rf "${PRE:?}/$1"
	cp -r "$T_FIXTURES/$1" "$PRE/$1"
	rm -f "$PRE/$1/nnUNetPlans.json"
}

# ref DIR [ARGS]: the reference planner's plans for the folder DIR
ref() {
	local d=$1
	shift
	"$PYTHON" "$REF" "$d/dataset.json" "$d/dataset_fingerprint.json" --dataset-name "$(basename "$d")" "$@"
}

# jget FILE PYTHON_EXPR: the value (p = the plans) as JSON, strings bare
jget() {
	"$PYTHON" -c 'import json,sys; p=json.load(open(sys.argv[1])); v=eval(sys.argv[2]); print(v if isinstance(v, str) else json.dumps(v))' "$1" "$2"
}

test_expect_success 'Dataset901: nnUNetPlans.json byte-identical to nnU-Net 2.8.1' '
	fresh Dataset901_Spheres &&
	t_code 0 nnp-plan "$PRE/Dataset901_Spheres" &&
	t_same_file "$T_FIXTURES/Dataset901_Spheres/nnUNetPlans.json" "$PRE/Dataset901_Spheres/nnUNetPlans.json" &&
	check_no_tmp "$PRE/Dataset901_Spheres"
'

test_expect_success 'Dataset903 (2 channels, cropped, ZScore with mask): byte-identical' '
	fresh Dataset903_MultiChannel &&
	t_code 0 nnp-plan "$PRE/Dataset903_MultiChannel" &&
	t_same_file "$T_FIXTURES/Dataset903_MultiChannel/nnUNetPlans.json" "$PRE/Dataset903_MultiChannel/nnUNetPlans.json" &&
	test "$(jget "$PRE/Dataset903_MultiChannel/nnUNetPlans.json" "p[\"configurations\"][\"3d_fullres\"][\"use_mask_for_norm\"]")" = "[true, true]"
'

test_expect_success 'the reference transcription also reproduces both fixtures' '
	for d in Dataset901_Spheres Dataset903_MultiChannel; do
		ref "$T_FIXTURES/$d" >ref.json &&
		t_same_file "$T_FIXTURES/$d/nnUNetPlans.json" ref.json || return 1
	done
'

test_expect_success '-d ID resolves $nnUNet_preprocessed; the nnp front end runs plan' '
	fresh Dataset901_Spheres &&
	nnUNet_preprocessed="$PRE" t_code 0 nnp-plan -d 901 &&
	t_same_file "$T_FIXTURES/Dataset901_Spheres/nnUNetPlans.json" "$PRE/Dataset901_Spheres/nnUNetPlans.json" &&
	if [ -x "$NNP_BIN/nnp" ]; then
		nnUNet_preprocessed="$PRE" t_code 0 nnp plan -d Dataset901_Spheres -o "$PWD/front.json" &&
		t_same_file "$T_FIXTURES/Dataset901_Spheres/nnUNetPlans.json" front.json
	fi
'

test_expect_code 2 'refuses to overwrite an existing plans file without --force' '
	fresh Dataset901_Spheres &&
	echo "{}" >"$PRE/Dataset901_Spheres/nnUNetPlans.json" &&
	nnp-plan "$PRE/Dataset901_Spheres" 2>stderr; rc=$?
	t_err_line nnp-plan nnUNetPlans.json --force &&
	test "$(cat "$PRE/Dataset901_Spheres/nnUNetPlans.json")" = "{}" &&
	exit $rc
'

test_expect_success '--force replaces it and keeps configurations it does not regenerate' '
	fresh Dataset901_Spheres &&
	P="$PRE/Dataset901_Spheres/nnUNetPlans.json" &&
	"$PYTHON" -c "import json,sys; p=json.load(open(sys.argv[1])); p[\"configurations\"][\"3d_fullres\"][\"batch_size\"]=77; p[\"configurations\"][\"3d_mine\"]={\"inherits_from\": \"3d_fullres\", \"batch_size\": 3}; json.dump(p, open(sys.argv[2], \"w\"), indent=4)" \
		"$T_FIXTURES/Dataset901_Spheres/nnUNetPlans.json" "$P" &&
	t_code 0 nnp-plan --force "$PRE/Dataset901_Spheres" &&
	test "$(jget "$P" "list(p[\"configurations\"])")" = "[\"2d\", \"3d_fullres\", \"3d_mine\"]" &&
	test "$(jget "$P" "p[\"configurations\"][\"3d_fullres\"][\"batch_size\"]")" = 2 &&
	test "$(jget "$P" "p[\"configurations\"][\"3d_mine\"][\"batch_size\"]")" = 3 &&
	echo "{broken" >"$P" &&
	t_code 0 nnp-plan -f "$PRE/Dataset901_Spheres" &&
	t_same_file "$T_FIXTURES/Dataset901_Spheres/nnUNetPlans.json" "$P"
'

test_expect_success '-o FILE writes there (and nothing in the folder); -o - to stdout' '
	fresh Dataset901_Spheres &&
	t_code 0 nnp-plan -o "$PWD/out.json" "$PRE/Dataset901_Spheres" &&
	t_same_file "$T_FIXTURES/Dataset901_Spheres/nnUNetPlans.json" out.json &&
	t_no_file "$PRE/Dataset901_Spheres/nnUNetPlans.json" &&
	t_code 2 nnp-plan -o "$PWD/out.json" "$PRE/Dataset901_Spheres" &&
	t_code 0 nnp-plan -o "$PWD/out.json" --force "$PRE/Dataset901_Spheres" &&
	t_code 0 nnp-plan -o - "$PRE/Dataset901_Spheres" &&
	printf "\n" >nl && cat "$T_FIXTURES/Dataset901_Spheres/nnUNetPlans.json" nl >want &&
	t_same_file want stdout
'

test_expect_success 'dataset.json missing in the folder: read from $nnUNet_raw and copied' '
	fresh Dataset903_MultiChannel &&
	mkdir -p "$RAW/Dataset903_MultiChannel" &&
	mv "$PRE/Dataset903_MultiChannel/dataset.json" "$RAW/Dataset903_MultiChannel/" &&
	t_code 1 nnp-plan "$PRE/Dataset903_MultiChannel" &&
	t_err_line nnp-plan dataset.json nnUNet_raw &&
	nnUNet_raw="$RAW" t_code 0 nnp-plan "$PRE/Dataset903_MultiChannel" &&
	t_same_file "$T_FIXTURES/Dataset903_MultiChannel/nnUNetPlans.json" "$PRE/Dataset903_MultiChannel/nnUNetPlans.json" &&
	t_same_file "$RAW/Dataset903_MultiChannel/dataset.json" "$PRE/Dataset903_MultiChannel/dataset.json"
'

test_expect_code 1 'a missing fingerprint is a data error naming the file' '
	fresh Dataset901_Spheres &&
	rm "$PRE/Dataset901_Spheres/dataset_fingerprint.json" &&
	nnp-plan "$PRE/Dataset901_Spheres" 2>stderr; rc=$?
	t_err_line nnp-plan dataset_fingerprint.json fingerprint &&
	t_no_file "$PRE/Dataset901_Spheres/nnUNetPlans.json" &&
	exit $rc
'

test_expect_success 'broken fingerprints and dataset.json: exit 1, one message, no output' '
	fresh Dataset901_Spheres &&
	D="$PRE/Dataset901_Spheres" &&
	cp "$D/dataset_fingerprint.json" fp.orig &&
	echo "{\"spacings\": " >"$D/dataset_fingerprint.json" &&
	t_code 1 nnp-plan "$D" && t_err_line nnp-plan dataset_fingerprint.json &&
	"$PYTHON" -c "import json,sys; f=json.load(open(sys.argv[1])); f[\"spacings\"].pop(); json.dump(f, open(sys.argv[2], \"w\"))" fp.orig "$D/dataset_fingerprint.json" &&
	t_code 1 nnp-plan "$D" && t_err_line nnp-plan spacings shapes_after_crop &&
	"$PYTHON" -c "import json,sys; f=json.load(open(sys.argv[1])); f[\"spacings\"][3][1]=-0.8; json.dump(f, open(sys.argv[2], \"w\"))" fp.orig "$D/dataset_fingerprint.json" &&
	t_code 1 nnp-plan "$D" && t_err_line nnp-plan "spacings[3][1]" &&
	cp fp.orig "$D/dataset_fingerprint.json" &&
	echo "{\"labels\": {}}" >"$D/dataset.json" &&
	t_code 1 nnp-plan "$D" && t_err_line nnp-plan dataset.json &&
	t_no_file "$D/nnUNetPlans.json" && check_no_tmp "$D"
'

test_expect_success 'bad --gpu-memory, --planner, --plans-name and arguments are usage errors' '
	fresh Dataset901_Spheres &&
	D="$PRE/Dataset901_Spheres" &&
	for g in 0 -1 abc inf nan 1e9 ""; do
		t_code 2 nnp-plan --gpu-memory "$g" "$D" && t_err_line nnp-plan gpu-memory || return 1
	done &&
	t_code 2 nnp-plan --planner resenc-xxl "$D" && t_err_line nnp-plan planner resenc-xxl &&
	t_code 2 nnp-plan --plans-name a/b "$D" && t_err_line nnp-plan plans-name &&
	t_code 2 nnp-plan && t_err_line nnp-plan missing &&
	t_code 2 nnp-plan "$D" "$D" && t_err_line nnp-plan unexpected &&
	t_code 2 nnp-plan --bogus "$D" &&
	t_code 0 nnp-plan --help && grep -q -- --gpu-memory stdout &&
	t_no_file "$D/nnUNetPlans.json"
'

test_expect_success '--gpu-memory scales the VRAM target (same as the reference)' '
	D="$PRE/Dataset950_Huge" &&
	"$PYTHON" "$MKFP" huge 2 "$D" &&
	for g in 4 11 40.5; do
		t_code 0 nnp-plan --gpu-memory $g -o "$PWD/g$g.json" "$D" &&
		ref "$D" --gpu-memory $g >r.json && t_same_file r.json g$g.json || return 1
	done &&
	v4=$(jget g4.json "p[\"configurations\"][\"3d_fullres\"][\"patch_size\"][0]") &&
	v40=$(jget g40.5.json "p[\"configurations\"][\"3d_fullres\"][\"patch_size\"][0]") &&
	test "$v4" -lt "$v40"
'

# preset PLANNER FILE CLASS 2D_BS 3D_BS
preset() {
	fresh Dataset901_Spheres &&
	D="$PRE/Dataset901_Spheres" &&
	t_code 0 nnp-plan --planner "$1" "$D" &&
	t_same_file "$D/$2.json" <(ref "$D" --planner "$1") &&
	P="$D/$2.json" &&
	test "$(jget "$P" "p[\"plans_name\"]")" = "$2" &&
	test "$(jget "$P" "p[\"experiment_planner_used\"]")" = "$3" &&
	test "$(jget "$P" "p[\"configurations\"][\"3d_fullres\"][\"architecture\"][\"network_class_name\"]")" = \
		dynamic_network_architectures.architectures.unet.ResidualEncoderUNet &&
	test "$(jget "$P" "p[\"configurations\"][\"3d_fullres\"][\"architecture\"][\"arch_kwargs\"][\"n_blocks_per_stage\"]")" = "[1, 3, 4, 6, 6]" &&
	test "$(jget "$P" "p[\"configurations\"][\"3d_fullres\"][\"architecture\"][\"arch_kwargs\"][\"n_conv_per_stage_decoder\"]")" = "[1, 1, 1, 1]" &&
	test "$(jget "$P" "p[\"configurations\"][\"3d_fullres\"][\"data_identifier\"]")" = nnUNetPlans_3d_fullres &&
	test "$(jget "$P" "p[\"configurations\"][\"2d\"][\"batch_size\"]")" = "$4" &&
	test "$(jget "$P" "p[\"configurations\"][\"3d_fullres\"][\"batch_size\"]")" = "$5" &&
	t_no_file "$D/nnUNetPlans.json"
}

test_expect_success '--planner resenc-m: nnUNetResEncUNetMPlans.json, 8 GB target' '
	preset resenc-m nnUNetResEncUNetMPlans nnUNetPlannerResEncM 235 5 && t_stderr_empty
'
test_expect_success '--planner resenc-l: nnUNetResEncUNetLPlans.json, 24 GB, whole-dataset cap' '
	preset resenc-l nnUNetResEncUNetLPlans nnUNetPlannerResEncL 517 11
'
test_expect_success '--planner resenc-xl: nnUNetResEncUNetXLPlans.json, 40 GB' '
	preset resenc-xl nnUNetResEncUNetXLPlans nnUNetPlannerResEncXL 517 11
'
test_expect_success 'presets warn about a non-standard --gpu-memory, like nnU-Net' '
	fresh Dataset901_Spheres &&
	NNP_QUIET= t_code 0 nnp-plan --planner resenc-l --gpu-memory 8 -o "$PWD/l8.json" "$PRE/Dataset901_Spheres" &&
	grep -q "expects --gpu-memory 24" stderr &&
	t_same_file l8.json <(ref "$PRE/Dataset901_Spheres" --planner resenc-l --gpu-memory 8) &&
	test "$(jget l8.json "p[\"configurations\"][\"3d_fullres\"][\"batch_size\"]")" -lt 11
'

test_expect_success '--plans-name: file name, plans_name and data identifiers' '
	fresh Dataset901_Spheres &&
	t_code 0 nnp-plan --plans-name myPlans "$PRE/Dataset901_Spheres" &&
	P="$PRE/Dataset901_Spheres/myPlans.json" &&
	test "$(jget "$P" "p[\"plans_name\"]")" = myPlans &&
	test "$(jget "$P" "p[\"configurations\"][\"2d\"][\"data_identifier\"]")" = myPlans_2d &&
	t_same_file "$P" <(ref "$PRE/Dataset901_Spheres" --plans-name myPlans) &&
	t_code 0 nnp-plan --planner resenc-m --plans-name r "$PRE/Dataset901_Spheres" &&
	test "$(jget "$PRE/Dataset901_Spheres/r.json" "p[\"configurations\"][\"2d\"][\"data_identifier\"]")" = nnUNetPlans_2d
'

KINDS="iso aniso ct twoch tiny huge labels105 twod tie ignore random"
# gen_cmp SEEDS PLANNERS: every kind x seed x planner, nnp-plan == reference
gen_cmp() {
	local kind seed pl d n=0 out=$(t_tmpdir) args=()
	: >"$out/list"
	for kind in $KINDS; do
		for seed in $1; do
			d="$PRE/Dataset9${seed}0_$kind"
			rm -rf "$d"
			args+=("$kind" "$seed" "$d")
		done
	done
	"$PYTHON" "$MKFP" "${args[@]}" || return 1
	for kind in $KINDS; do
		for seed in $1; do
			d="$PRE/Dataset9${seed}0_$kind"
			for pl in $2; do
				nnp-plan -q --planner "$pl" -o "$out/$kind.$seed.$pl.c" "$d" ||
					{ echo "nnp-plan failed: $kind $seed $pl"; return 1; }
				echo "$d $pl $out/$kind.$seed.$pl.r" >>"$out/list"
			done
		done
	done
	"$PYTHON" "$REF" --batch "$out/list" || return 1
	for f in "$out"/*.c; do
		cmp -s "$f" "${f%.c}.r" || { echo "differs: $f"; diff "$f" "${f%.c}.r" | head -20; return 1; }
		n=$((n + 1))
	done
	echo "$n plans identical"
	test "$n" -gt 0
}

test_expect_success 'generated fingerprints, default planner: identical to the reference' '
	gen_cmp "1 2 3 4 5 6 7 8" default
'
test_expect_success 'generated fingerprints, ResEnc planners: identical to the reference' '
	gen_cmp "11 12 13" "resenc resenc-m resenc-l resenc-xl"
'

test_expect_success 'kinds of generated datasets exercise the rules they are meant to' '
	D="$PRE/Dataset910_huge" && nnp-plan -q -o h.json "$D" &&
	test "$(jget h.json "list(p[\"configurations\"])")" = "[\"2d\", \"3d_lowres\", \"3d_fullres\", \"3d_cascade_fullres\"]" &&
	test "$(jget h.json "p[\"configurations\"][\"3d_fullres\"][\"batch_dice\"]")" = true &&
	test "$(jget h.json "p[\"configurations\"][\"3d_lowres\"][\"next_stage\"]")" = 3d_cascade_fullres &&
	test "$(jget h.json "type(p[\"configurations\"][\"3d_lowres\"][\"median_image_size_in_voxels\"][0]).__name__")" = int &&
	D="$PRE/Dataset910_twod" && nnp-plan -q -o t.json "$D" &&
	test "$(jget t.json "list(p[\"configurations\"])")" = "[\"2d\"]" &&
	test "$(jget t.json "p[\"image_reader_writer\"]")" = NaturalImage2DIO &&
	D="$PRE/Dataset910_aniso" && nnp-plan -q -o a.json "$D" &&
	test "$(jget a.json "p[\"image_reader_writer\"]")" = NibabelIO &&
	test "$(jget a.json "p[\"configurations\"][\"3d_fullres\"][\"spacing\"][0] < p[\"original_median_spacing_after_transp\"][0]")" = true &&
	D="$PRE/Dataset910_ignore" && nnp-plan -q -o i.json "$D" &&
	test "$(jget i.json "p[\"configurations\"][\"2d\"][\"normalization_schemes\"]")" = "[\"ZScoreNormalization\", \"ZScoreNormalization\", \"ZScoreNormalization\", \"NoNormalization\"]" &&
	test "$(jget i.json "p[\"configurations\"][\"2d\"][\"use_mask_for_norm\"]")" = "[true, true, true, false]" &&
	D="$PRE/Dataset910_labels105" && nnp-plan -q -o l.json "$D" &&
	test "$(jget l.json "p[\"configurations\"][\"3d_fullres\"][\"patch_size\"]")" != "" &&
	check_no_tmp "$PRE"
'

test_expect_success 'transposed dataset: the coarse axis moves first' '
	D="$PRE/Dataset977_Trans" && mkdir -p "$D" &&
	cp "$T_FIXTURES/Dataset901_Spheres/dataset.json" "$D/" &&
	"$PYTHON" -c "import json,sys; f=json.load(open(sys.argv[1])); f[\"spacings\"]=[s[::-1] for s in f[\"spacings\"]]; f[\"shapes_after_crop\"]=[s[::-1] for s in f[\"shapes_after_crop\"]]; json.dump(f, open(sys.argv[2], \"w\"), indent=4, sort_keys=True)" \
		"$T_FIXTURES/Dataset901_Spheres/dataset_fingerprint.json" "$D/dataset_fingerprint.json" &&
	t_code 0 nnp-plan "$D" &&
	t_same_file "$D/nnUNetPlans.json" <(ref "$D") &&
	test "$(jget "$D/nnUNetPlans.json" "p[\"transpose_forward\"]")" = "[2, 0, 1]" &&
	test "$(jget "$D/nnUNetPlans.json" "p[\"transpose_backward\"]")" = "[1, 2, 0]" &&
	test "$(jget "$D/nnUNetPlans.json" "p[\"configurations\"][\"3d_fullres\"][\"patch_size\"]")" = "[48, 112, 128]"
'

# a Python with jsonschema (Debian's may lack it)
SCHEMA_PY=
for py in "$PYTHON" python3; do
	if "$py" -c "import jsonschema" 2>/dev/null; then SCHEMA_PY=$py; break; fi
done
validate() { # SCHEMA FILE...
	"$SCHEMA_PY" - "$@" <<-\EOF
	import json, sys, jsonschema
	schema = json.load(open(sys.argv[1]))
	jsonschema.Draft202012Validator.check_schema(schema)
	v = jsonschema.Draft202012Validator(schema)
	bad = 0
	for f in sys.argv[2:]:
	    for e in v.iter_errors(json.load(open(f))):
	        print(f, list(e.absolute_path), e.message[:200]); bad = 1
	sys.exit(bad)
	EOF
}
if [ -n "$SCHEMA_PY" ]; then
	test_expect_success 'schemas: fixture and generated plans and fingerprints validate' '
		validate "$T_REPO/schemas/fingerprint.schema.json" "$T_FIXTURES"/Dataset90[13]_*/dataset_fingerprint.json \
			"$PRE"/Dataset9*/dataset_fingerprint.json &&
		validate "$T_REPO/schemas/plans.schema.json" "$T_FIXTURES"/Dataset90[13]_*/nnUNetPlans.json \
			"$PRE"/Dataset9*/*Plans*.json "$PRE"/Dataset901_Spheres/r.json h.json t.json a.json i.json l.json g4.json l8.json &&
		"$PYTHON" -c "import json,sys; p=json.load(open(sys.argv[1])); del p[\"configurations\"][\"2d\"][\"batch_size\"]; p[\"transpose_forward\"]=[0,0,1]; json.dump(p, open(sys.argv[2], \"w\"))" h.json broken.json &&
		! validate "$T_REPO/schemas/plans.schema.json" broken.json >out &&
		grep -q batch_size out && grep -q transpose_forward out
	'
else
	test_skip 'schemas: fixture and generated plans and fingerprints validate' 'no Python with jsonschema'
fi

done_testing
