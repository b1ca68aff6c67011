#!/bin/bash
# t1420-experiment.t — pipelines/experiment.mk end to end on a tiny synthetic dataset
# (nnp-make-example, 6 training + 2 test cases; a 4..16-feature planner variant;
# 2d, folds 0 and 1, a few iterations): the first run is SIGTERMed (its whole
# process group, like Ctrl-C) while fold 1 trains; the rerun keeps fold 0, resumes
# fold 1 from its checkpoint and finishes find-best, the test-set prediction and its
# evaluation; a third run does nothing.  Also nnp find-best's files, its --script, and
# its refusals.
. "$(dirname "$0")/lib.sh"
t_require_progs nnp nnp-train nnp-find-best nnp-ensemble nnp-determine-postprocessing nnp-apply-postprocessing \
	nnp-predict nnp-evaluate nnp-plan-and-preprocess
command -v parallel >/dev/null || test_skip_all "GNU parallel is not installed"
command -v setsid >/dev/null || test_skip_all "setsid is not installed"
[ -x "$NNP_TOOLS/nnp-make-example" ] || test_skip_all "nnp-make-example is not built"

export nnUNet_raw=$PWD/raw nnUNet_preprocessed=$PWD/pre nnUNet_results=$PWD/res
D=Dataset990_ExampleSpheres
PL=nnUNetPlans_f4x16
M=res/$D/nnUNetTrainer__${PL}__2d
EXPMK=$T_REPO/pipelines/experiment.mk
run_exp() {
	env -u NNP_QUIET make --no-print-directory -f "$EXPMK" DATASET=990 CONFIGS=2d FOLDS="0 1" PLANS=$PL \
		PLAN_ARGS="--base-features 4 --max-features 16" \
		TRAIN_ARGS="--epochs 20 --iters 10 --val-iters 1 --batch-size 4" EXP=$PWD/exp NNP="$NNP_BIN/nnp" "$@"
}

test_expect_success 'setup: a 6-case example dataset' '
	"$NNP_TOOLS/nnp-make-example" --cases 8 -o raw/$D >/dev/null &&
	rm raw/$D/imagesTr/ex_00[67]_000?.nii.gz raw/$D/labelsTr/ex_00[67].nii.gz &&
	sed -i "s/\"numTraining\": *8/\"numTraining\": 6/" raw/$D/dataset.json &&
	nnp verify raw/$D >/dev/null
'

test_expect_success 'first run, SIGTERMed (process group) while fold 1 trains: fold 0 done, fold 1 checkpointed' '
	{ setsid bash -c "$(declare -f run_exp); EXPMK=$EXPMK PL=$PL NNP_BIN=$NNP_BIN run_exp all" >run1.out 2>&1 & } &&
	L=$M/fold_1/training_log.tsv &&
	for _ in $(seq 6000); do [ -f $M/fold_1/checkpoint_latest.nnpm ] && [ -f $L ] && [ $(wc -l <$L) -ge 4 ] && break
		sleep 0.1; done &&
	test -f $M/fold_1/checkpoint_latest.nnpm &&
	pgid=$(ps -o pgid= -p $(pgrep -f "nnp-train -d $D -c 2d -f 1" | head -n1) | tr -d " ") &&
	kill -TERM -- -$pgid &&
	for _ in $(seq 240); do pgrep -f "experiment.mk DATASET=990" >/dev/null || break; sleep 0.25; done &&
	! pgrep -f "nnp-train -d $D" &&
	test -f $M/fold_0/validation/summary.json &&
	test ! -f $M/fold_1/validation/summary.json &&
	test -f $M/fold_1/checkpoint_latest.nnpm && test ! -f $M/fold_1/checkpoint_final.nnpm &&
	test ! -e exp/stamps/trained &&
	grep -q "stopped: checkpoint at epoch" exp/logs/train_2d_fold_1.log &&
	cp -p $M/fold_0/validation/summary.json fold0.summary
'

test_expect_success 'rerun: trains only fold 1 (resumed), then find-best, predict, evaluate' '
	run_exp all >run2.out 2>&1 &&
	grep -q "training 1 fold(s) on 1 slot(s): 2d 1" run2.out &&
	grep -q "resuming from .*fold_1/checkpoint_latest.nnpm" exp/logs/train_2d_fold_1.log &&
	cmp fold0.summary $M/fold_0/validation/summary.json &&
	test $(stat -c %Y fold0.summary) = $(stat -c %Y $M/fold_0/validation/summary.json) &&
	test $(($(wc -l <$M/fold_1/training_log.tsv) - 1)) = 20 &&
	test -e exp/stamps/trained && test -e exp/stamps/predicted &&
	for f in exp/test_summary.json res/$D/inference_information.json \
		res/$D/inference_instructions.txt $M/crossval_results_folds_0_1/summary.json \
		$M/crossval_results_folds_0_1/postprocessing.json exp/predictions/ex_008.nii.gz \
		exp/predictions/ex_009.nii.gz; do test -s $f || { echo "missing $f"; exit 1; }; done
'

test_expect_success 'a third run does nothing' '
	find exp res pre -type f -printf "%p %T@\n" | sort >before &&
	run_exp all >run3.out 2>&1 &&
	grep -q "Nothing to be done" run3.out &&
	! grep -q "nnp " run3.out &&
	find exp res pre -type f -printf "%p %T@\n" | sort >after &&
	cmp before after
'

test_expect_success 'find-best: the cross-validation holds both folds, inference_information.json names the winner' '
	ls $M/crossval_results_folds_0_1/ | grep -c "^ex_00[0-5].nii.gz$" >n && test $(cat n) = 3 &&
	"$PYTHON" - $M res/$D <<-\EOF
	import json, sys
	m, r = sys.argv[1], sys.argv[2]
	info = json.load(open(r + "/inference_information.json"))
	cv = json.load(open(m + "/crossval_results_folds_0_1/summary.json"))
	key = "nnUNetTrainer__nnUNetPlans_f4x16__2d"
	assert info["folds"] == [0, 1], info["folds"]
	assert info["all_results"] == {key: cv["foreground_mean"]["Dice"]}, info["all_results"]
	b = info["best_model_or_ensemble"]
	assert b["selected_model_or_models"] == [{"configuration": "2d", "trainer": "nnUNetTrainer",
	                                          "plans_identifier": "nnUNetPlans_f4x16"}], b
	assert b["result_on_crossval_pre_pp"] == cv["foreground_mean"]["Dice"]
	pp = json.load(open(m + "/crossval_results_folds_0_1/postprocessed/summary.json"))
	assert b["result_on_crossval_post_pp"] == pp["foreground_mean"]["Dice"]
	assert b["postprocessing_file"].endswith("crossval_results_folds_0_1/postprocessing.json")
	assert info["considered_models"] == [{"plans": "nnUNetPlans_f4x16", "configuration": "2d",
	                                      "trainer": "nnUNetTrainer"}]
	EOF
	grep -q "^nnp predict -d $D -i INPUT_FOLDER -o OUTPUT_FOLDER -f 0 1 -tr nnUNetTrainer -c 2d -p nnUNetPlans_f4x16$" \
		res/$D/inference_instructions.txt &&
	grep -q "^nnp apply-postprocessing -i OUTPUT_FOLDER -o OUTPUT_FOLDER_PP --rules .*postprocessing.json$" \
		res/$D/inference_instructions.txt
'

test_expect_success 'the test-set predictions are the postprocessed predictions of the winner' '
	nnp predict -d 990 -c 2d -p $PL -f 0 1 -i raw/$D/imagesTs -o direct -q &&
	nnp apply-postprocessing -i direct -o direct_pp --rules $M/crossval_results_folds_0_1/postprocessing.json -q &&
	for c in ex_008 ex_009; do niicmp direct_pp/$c.nii.gz exp/predictions/$c.nii.gz; done
'

test_expect_success 'find-best with a second model ensembles the pair (--npz probabilities)' '
	cp -r $M res/$D/nnUNetTrainer__${PL}__2dcopy &&
	"$PYTHON" -c "
import json, sys
for f in sys.argv[1:]:
    p = json.load(open(f)); p[\"configurations\"][\"2dcopy\"] = {\"inherits_from\": \"2d\"}
    json.dump(p, open(f, \"w\"), indent=4)" pre/$D/$PL.json res/$D/nnUNetTrainer__${PL}__2dcopy/plans.json &&
	nnp find-best -q -d 990 -c 2d 2dcopy -p $PL -f 0 1 >fb.out &&
	E=res/$D/ensembles/ensemble___nnUNetTrainer__${PL}__2d___nnUNetTrainer__${PL}__2dcopy___0_1 &&
	test -s $E/summary.json &&
	for c in $(cd $M/crossval_results_folds_0_1 && ls ex_00?.nii.gz); do niicmp $M/crossval_results_folds_0_1/$c $E/$c; done &&
	grep -q "^\*Best\*: nnUNetTrainer__${PL}__2d: " fb.out
'

test_expect_success '--script: a runnable script from inference_information.json' '
	nnp find-best -d 990 --script -i "raw/$D/imagesTs" -o "out dir" >s.sh &&
	head -1 s.sh | grep -q "^#!/bin/bash" &&
	grep -q "^nnp predict -d 990 -i raw/$D/imagesTs -o '\''out dir.raw'\'' -f 0 1 .* --continue$" s.sh &&
	bash s.sh 2>/dev/null &&
	for c in ex_008 ex_009; do niicmp "out dir/$c.nii.gz" exp/predictions/$c.nii.gz; done
'

test_expect_success '--script when an ensemble won: both members with probabilities, nnp ensemble, postprocessing' '
	cp res/$D/inference_information.json info.saved &&
	"$PYTHON" - res/$D/inference_information.json <<-\EOF &&
	import json, sys
	info = json.load(open(sys.argv[1]))
	sel = info["best_model_or_ensemble"]["selected_model_or_models"]
	sel.append(dict(sel[0], configuration="2dcopy"))
	json.dump(info, open(sys.argv[1], "w"), indent=4)
	EOF
	nnp find-best -d 990 --script -i raw/$D/imagesTs -o ens >e.sh &&
	grep -q "^nnp predict .* -o ens.model_1 .* -c 2d .*--save-probabilities --continue$" e.sh &&
	grep -q "^nnp predict .* -o ens.model_2 .* -c 2dcopy .*--save-probabilities --continue$" e.sh &&
	grep -q "^nnp ensemble -i ens.model_1 ens.model_2 -o ens.raw --continue$" e.sh &&
	bash e.sh 2>/dev/null &&
	for c in ex_008 ex_009; do
		test -s ens.model_1/${c}_probabilities.nii.gz && test -s ens.model_2/${c}_probabilities.nii.gz &&
		cmp ens.model_1/${c}_probabilities.nii.gz ens.model_2/${c}_probabilities.nii.gz &&
		niicmp "out dir/$c.nii.gz" ens/$c.nii.gz || exit 1
	done &&
	cp info.saved res/$D/inference_information.json
'

test_expect_success 'find-best refusals: untrained model, a model without --npz, missing fold; a failed run leaves no stale result' '
	t_code 1 nnp find-best -d 990 -c 3d_fullres -p $PL -f 0 1 &&
	grep -q "model nnUNetTrainer__${PL}__3d_fullres has no output folder" stderr &&
	rm res/$D/nnUNetTrainer__${PL}__2dcopy/fold_1/validation/*_probabilities.nii.gz &&
	t_code 1 nnp find-best -d 990 -c 2d 2dcopy -p $PL -f 0 1 &&
	grep -q "has no validation probabilities for .*--npz" stderr &&
	t_code 1 nnp find-best -d 990 -c 2d -p $PL -f 0 1 2 &&
	grep -q "fold 2 of model nnUNetTrainer__${PL}__2d is missing" stderr &&
	t_code 2 nnp find-best -c 2d && grep -q "\-d DATASET is required" stderr &&
	t_code 2 nnp find-best -d 990 --script -i x &&
	test ! -e res/$D/inference_information.json &&
	mkdir -p empty/$D && nnUNet_results=$PWD/empty t_code 1 nnp find-best -d 990 --script -i x -o y &&
	grep -q "inference_information.json. is missing: run nnp find-best first" stderr
'

done_testing
