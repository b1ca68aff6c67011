#!/bin/bash
# t1200-train.t — nnp train on the 901 fixture with a small plans variant
# (tests/tools/mksmallplans.py: the fixture's 2d spacing, normalisation and
# data, a 64x64 patch, batch 8 and a PlainConvUNet with 16..128 features) so
# that it runs in about two minutes on two cores.  The main run is killed
# with SIGKILL a third of the way and resumed with --continue: it must finish
# with the full log and a final validation Dice >= 0.90 for organ and lesion
# on the held-out case (sph_000; its dark lesions and sph_007's bright one
# both occur in training).  Short runs then check that a run resumed after
# kill -9 or SIGTERM ends with bit-identical weights, the plumbing form, and
# the refusals.
. "$(dirname "$0")/lib.sh"
t_require_progs nnp nnp-train nnp-sample nnp-augment nnp-plan-and-preprocess nnp-evaluate nnp-infer nnp-select
command -v parallel >/dev/null || { test_skip_all "GNU parallel is not installed"; }

P=$PWD/pre/Dataset901_Spheres
EPOCHS=${NNP_TEST_TRAIN_EPOCHS:-40}
train() { env -u NNP_QUIET nnp-train --preprocessed "$P" -p nnUNetPlans_small -c 2d_small -f 0 --iters 25 --val-iters 4 "$@"; }
# a checkpoint's weights sha256 and next epoch
wsha() { "$PYTHON" -c "
import json, msgpack, sys
u = msgpack.Unpacker(open(sys.argv[1], 'rb'), raw=False, max_buffer_size=1 << 30)
h = json.loads(next(u)['header'])
print(h['folds'][0]['sha256'], h['training']['epoch'])" "$1"; }
# wait until FILE is a checkpoint of epoch >= N (at most 10 minutes)
wait_ckpt() {
	for _ in $(seq 1200); do
		[ -f "$1" ] && [ "$(wsha "$1" 2>/dev/null | cut -d" " -f2)" -ge "$2" ] 2>/dev/null && return 0
		sleep 0.5
	done
	return 1
}

test_expect_success 'setup: 901 preprocessed (2d), small plans, 3 training cases and 1 validation case' '
	mkdir -p raw pre && cp -r "$T_FIXTURES/raw/Dataset901_Spheres" raw/ &&
	nnUNet_raw=$PWD/raw nnUNet_preprocessed=$PWD/pre nnp plan-and-preprocess -d 901 -j 2 -c 2d &&
	"$PYTHON" "$T_PYTOOLS/mksmallplans.py" "$P" --source 2d --config 2d_small --patch 64,64 \
		--features 16,32,64,128 --batch 8 >/dev/null &&
	printf "%s" "[{\"train\": [\"sph_004\", \"sph_005\", \"sph_007\"], \"val\": [\"sph_000\"]}]" >$P/splits_final.json
'
test_expect_success 'kill -9 a third of the way, --continue: full log, loss falls, Dice >= 0.90 for organ and lesion' '
	F=res/fold_0 &&
	{ train -o $F --epochs $EPOCHS 2>err1 & echo $! >pid; } &&
	wait_ckpt $F/checkpoint_latest.nnpm $((EPOCHS / 3)) &&
	pkill -9 -f "nnp-train .*-o $F" && sleep 1 &&
	test -f $F/checkpoint_latest.nnpm && test ! -f $F/checkpoint_final.nnpm &&
	train -o $F --epochs $EPOCHS --continue 2>err &&
	grep -q "resuming from .*checkpoint_latest.nnpm at epoch" err &&
	for f in checkpoint_final.nnpm checkpoint_best.nnpm training_log.tsv progress.png validation/summary.json \
		validation/sph_000.nii.gz; do test -s $F/$f || { echo "missing $f"; exit 1; }; done &&
	test ! -e $F/checkpoint_latest.nnpm &&
	test -s res/plans.json && test -s res/dataset.json &&
	test $(($(wc -l <$F/training_log.tsv) - 1)) = $EPOCHS &&
	head -1 $F/training_log.tsv | grep -q "dice_organ	dice_lesion" &&
	grep -q "Mean Validation Dice" err &&
	"$PYTHON" - $F <<-\EOF
	import json, sys
	f = sys.argv[1]
	rows = [l.rstrip("\n").split("\t") for l in open(f + "/training_log.tsv")]
	h, rows = rows[0], rows[1:]
	assert [int(r[0]) for r in rows] == list(range(len(rows)))
	tl = [float(r[h.index("train_loss")]) for r in rows]
	lr = [float(r[h.index("lr")]) for r in rows]
	print("train loss", ["%.3f" % x for x in tl])
	assert sum(tl[-5:]) / 5 < sum(tl[:3]) / 3 - 0.5, "the training loss does not fall"
	assert lr[0] == 0.01 and all(a > b for a, b in zip(lr, lr[1:])), lr
	s = json.load(open(f + "/validation/summary.json"))
	d = {k: v["Dice"] for k, v in s["mean"].items()}
	print("final validation Dice", d, "foreground mean", s["foreground_mean"]["Dice"])
	assert d["1"] >= 0.90 and d["2"] >= 0.90, d
	EOF
'
test_expect_success 'progress.png is a 1200x1800 PNG' '
	"$PYTHON" -c "
import struct, sys
b = open(sys.argv[1], \"rb\").read(24)
assert b[:8] == b\"\\x89PNG\\r\\n\\x1a\\n\", b[:8]
assert struct.unpack(\">II\", b[16:24]) == (1200, 1800)" res/fold_0/progress.png
'
test_expect_success 'the trained fold predicts through nnp infer (results folder and model file)' '
	nnp select --role image "$P/nnUNetPlans_2d/sph_000.nnp" >img.nnp &&
	nnp infer -q -m res -f 0 --disable-tta img.nnp >a.nnp &&
	nnp infer -q -m res/fold_0/checkpoint_final.nnpm --disable-tta img.nnp | cmp - a.nnp
'
test_expect_success 'short runs: kill -9 or SIGTERM and --continue end with bit-identical weights' '
	short() { train --epochs 6 --iters 8 --val-iters 2 --no-final-val "$@"; } &&
	short -o ref/fold_0 2>/dev/null &&
	{ short -o kill/fold_0 2>/dev/null & echo $! >pid; } &&
	wait_ckpt kill/fold_0/checkpoint_latest.nnpm 2 && pkill -9 -f "nnp-train .*-o kill/fold_0" && sleep 1 &&
	short -o kill/fold_0 --continue 2>/dev/null &&
	test $(($(wc -l <kill/fold_0/training_log.tsv) - 1)) = 6 &&
	test "$(wsha kill/fold_0/checkpoint_final.nnpm)" = "$(wsha ref/fold_0/checkpoint_final.nnpm)" &&
	{ short -o term/fold_0 2>err & pid=$!; } &&
	wait_ckpt term/fold_0/checkpoint_best.nnpm 2 && pkill -TERM -f "nnp-train .*-o term/fold_0" &&
	st=0 && { wait $pid || st=$?; } &&
	test $st = 143 && grep -q "stopped: checkpoint at epoch .*, iteration" err &&
	test -f term/fold_0/checkpoint_latest.nnpm &&
	short -o term/fold_0 --continue 2>/dev/null &&
	test "$(wsha term/fold_0/checkpoint_final.nnpm)" = "$(wsha ref/fold_0/checkpoint_final.nnpm)"
'
test_expect_success '--val reruns only the final validation; --continue on a finished fold too' '
	rm -rf res/fold_0/validation &&
	train -o res/fold_0 --epochs $EPOCHS --val 2>err && test -s res/fold_0/validation/summary.json &&
	grep -q "Mean Validation Dice" err
'
test_expect_success 'plumbing form: a sample stream on stdin' '
	nnp sample --preprocessed "$P" -p nnUNetPlans_small -c 2d_small --fold 0 -n 3 --seed 5 | nnp augment --seed 5 |
		nnp train --preprocessed "$P" -p nnUNetPlans_small -c 2d_small -f 0 -o pipe/fold_0 --stream - \
			--epochs 1 --iters 3 --val-iters 0 --no-final-val &&
	test -s pipe/fold_0/checkpoint_final.nnpm &&
	test $(($(wc -l <pipe/fold_0/training_log.tsv) - 1)) = 1
'
test_expect_success '-d DATASET: $nnUNet_preprocessed in, $nnUNet_results/<dataset>/TRAINER__PLANS__CONFIG/fold_F out' '
	nnUNet_preprocessed=$PWD/pre nnUNet_results=$PWD/results nnp train -d 901 -p nnUNetPlans_small -c 2d_small -f 0 \
		--epochs 1 --iters 2 --val-iters 1 --no-final-val &&
	test -s results/Dataset901_Spheres/nnUNetTrainer__nnUNetPlans_small__2d_small/fold_0/checkpoint_final.nnpm &&
	test -s results/Dataset901_Spheres/nnUNetTrainer__nnUNetPlans_small__2d_small/plans.json &&
	t_code 2 env -u nnUNet_results nnp train --preprocessed "$P" -p nnUNetPlans_small -c 2d_small -f 0 &&
	grep -q "set .nnUNet_results" stderr
'
test_expect_success 'refusals: existing training, --val without a final checkpoint, bad input' '
	t_code 2 train -o res/fold_0 --epochs 2 && grep -q "already holds a training: --continue resumes it" stderr &&
	t_code 1 train -o none/fold_0 --epochs 2 --val && grep -q "checkpoint_final.nnpm. does not exist" stderr &&
	t_code 2 nnp train --preprocessed "$P" -c 2d_small -f x -o x &&
	t_code 1 nnp train --preprocessed "$P" -p nope -c 2d_small -f 0 -o x/fold_0 && grep -q "nope.json" stderr &&
	t_code 1 nnp train --preprocessed "$P" -p nnUNetPlans_small -c 2d_nope -f 0 -o x/fold_0 &&
	t_code 2 nnp train --preprocessed "$P" -p nnUNetPlans_small -c 2d_small -f 0 -o x/fold_0 --device cuda:0 &&
	mkdir -p trunc/fold_0 && head -c 200000 res/fold_0/checkpoint_best.nnpm >trunc/fold_0/checkpoint_latest.nnpm &&
	t_code 1 train -o trunc/fold_0 --epochs 2 --continue && grep -q "checkpoint_latest.nnpm.*truncated" stderr &&
	"$PYTHON" -c "
import sys
b = bytearray(open(sys.argv[1], \"rb\").read()); b[-100] ^= 1
open(sys.argv[2], \"wb\").write(b)" res/fold_0/checkpoint_best.nnpm trunc/fold_0/checkpoint_latest.nnpm &&
	t_code 1 train -o trunc/fold_0 --epochs 2 --continue && grep -q "sha256 mismatch" stderr
'
test_expect_success 'a batch that does not fit in memory is refused with the batch size that fits' '
	t_code 4 train -o big/fold_0 --epochs 2 --batch-size 60000 &&
	grep -q "training needs about .* GiB for batch size 60000.*--batch-size [0-9]* fits" stderr &&
	test ! -e big/fold_0/checkpoint_best.nnpm
'
done_testing
