#!/bin/bash
# bench/run.sh — nnpipe benchmarks, side by side in one run (make bench).
# Writes docs/benchmarks.md. Figures are ratios against the reference
# measured in the same run (cat for raw I/O), best of $REPS runs.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${NNP_BIN:-$ROOT/bin}
TOOLS=${NNP_TOOLS:-$ROOT/build/tools}
OUT=${BENCH_OUT:-$ROOT/bench/out}
REPS=${REPS:-5}
REPORT=${BENCH_REPORT:-$ROOT/docs/benchmarks.md}
mkdir -p "$OUT"

now() { date +%s.%N; }
# best wall time of REPS runs of a shell command
best() {
	local cmd=$1 b= t0 t1 t
	for _ in $(seq "$REPS"); do
		rm -f "$OUT"/g.nii "$OUT"/g.nii.gz
		sync
		t0=$(now); bash -c "$cmd"; t1=$(now)
		t=$(echo "$t1 - $t0" | bc -l)
		if [ -z "$b" ] || [ "$(echo "$t < $b" | bc -l)" = 1 ]; then b=$t; fi
	done
	echo "$b"
}
# peak RSS (KiB) of the LAST command in a pipeline, via /usr/bin/time
rss() { /usr/bin/time -f %M -o "$OUT/rss" bash -c "$1" >/dev/null 2>&1 || true; cat "$OUT/rss"; }

# ---- export (nnU-Net anchor: 41 s, 6.7 GB; goal <= 1 s, <= 1 GB) ----
# 33 classes, float16 logits 200x256x256 -> original 200x320x320 (in-plane
# 256 -> 320, z unchanged), seg only.  'bench/run.sh export' runs only this.
bench_export() {
	local L=$OUT/logits33.nnp r
	[ -f "$L" ] || "${PYTHON:-/usr/bin/python3}" "$ROOT/tests/tools/mklogits.py" --synthetic 33,200,256,256 \
		--mid 200,320,320 --spacing 1,0.8,0.8 --dtype f2 -o "$L"
	cat "$L" > /dev/null
	t_export=$(best "'$BIN/nnp-export' '$L' > /dev/null")
	t_export16=$(best "'$BIN/nnp-export' --fp16-compat '$L' > /dev/null")
	r=$(rss "'$BIN/nnp-export' '$L'")
	r_export=$(echo "scale=1; $r / 1024" | bc -l)
	export_rows="| 33 classes, float16 logits 200×256×256 → 200×320×320, seg (float32 rounding) | $t_export | $r_export MiB | 41 s, 6.7 GB | $(echo "scale=0; 41 / $t_export" | bc -l)x |
| same with \`--fp16-compat\` (bit-identical to nnU-Net) | $t_export16 | — | 41 s, 6.7 GB | $(echo "scale=0; 41 / $t_export16" | bc -l)x |"
}
export_md() {
	cat <<MD
## Export (\`nnp export\`, logits → segmentation in the original geometry)

| task | nnpipe wall [s] | peak RSS | nnU-Net 2.8.1 | ratio |
|---|---:|---|---|---:|
$export_rows

Goal: <= 1 s and <= 1 GB on 2 cores. The input (865 MB) is streamed: two input
slices, the row buffers and the uint8 output volume (20 MB) are held.
MD
}
# ---- augment (goal >= 6 samples/s per core) ----
# 901's 3d_fullres final patch 48x128x112: the sampler's enlarged patch by the
# §7.3 rule (+-30 deg, /0.85) is 124x196x142; 1 channel, 16 samples through
# the default pipeline on 1 and 2 threads.  'bench/run.sh augment' runs only this.
bench_augment() {
	local S=$OUT/samples901.nnp N=16
	[ -f "$S" ] || "${PYTHON:-/usr/bin/python3}" "$ROOT/tests/tools/mksamples.py" -n $N --shape 124,196,142 \
		--final 48,128,112 --seed 1 -o "$S"
	cat "$S" > /dev/null
	t_aug1=$(best "'$BIN/nnp-augment' --seed 1 -j 1 '$S' > /dev/null")
	t_aug2=$(best "'$BIN/nnp-augment' --seed 1 -j 2 '$S' > /dev/null")
	t_augsp=$(best "'$BIN/nnp-augment' --seed 1 -j 1 --only rotation,scaling '$S' > /dev/null")
	t_augnone=$(best "'$BIN/nnp-augment' -j 1 --none '$S' > /dev/null")
	sps() { echo "scale=1; $N / $1" | bc -l; }
	t_aug1=$(printf %.2f "$t_aug1") t_aug2=$(printf %.2f "$t_aug2")
	t_augsp=$(printf %.2f "$t_augsp") t_augnone=$(printf %.2f "$t_augnone")
	augment_rows="| default pipeline, 1 thread | $t_aug1 | $(sps "$t_aug1") |
| default pipeline, 2 threads | $t_aug2 | $(sps "$t_aug2") |
| rotation + scaling on every sample (worst case), 1 thread | $t_augsp | $(sps "$t_augsp") |
| \`--none\` (read, centre crop, write), 1 thread | $t_augnone | $(sps "$t_augnone") |"
}
augment_md() {
	cat <<MD
## Augmentation (\`nnp augment\`, 16 samples 124×196×142 → 48×128×112, 1 channel)

| run | wall [s] | samples/s |
|---|---:|---:|
$augment_rows

Goal: >= 6 samples/s per core. Reading the 16 enlarged samples (331 MB of frames)
is included.
MD
}
# ---- inference (nnU-Net anchors: ../shared/nnunet-timings.md, full-size networks, 2 threads) ----
# One forward pass of the full-size 3d_fullres networks (random He weights: the
# time does not depend on them), nnp predict of sph_101 end to end with a
# full-size random 901 model, and the memory of a 117-class 182x217x182 case.
# 'bench/run.sh inference' runs only this.
PY=${PYTHON:-/usr/bin/python3}
fwd() { # PLANS CHANNELS CLASSES [extra] -> best seconds
	"$TOOLS/nnp-forward" "$1" 3d_fullres --channels "$2" --classes "$3" --reps 3 ${4:-} |
		sed -n 's/.*best \([0-9.]*\) s.*/\1/p'
}
ratio() { echo "scale=2; $1 / $2" | bc -l; }
bench_inference() {
	local P901=$ROOT/tests/fixtures/Dataset901_Spheres P903=$ROOT/tests/fixtures/Dataset903_MultiChannel
	local M=$OUT/model901/nnUNetTrainer__nnUNetPlans__3d_fullres I=$OUT/in901 B=$OUT/b117 r1 r2
	t_f901=$(fwd "$P901/nnUNetPlans.json" 1 3)
	t_f901b=$(fwd "$P901/nnUNetPlans.json" 1 3 --bf16)
	t_f903=$(fwd "$P903/nnUNetPlans.json" 2 3)
	t_f903b=$(fwd "$P903/nnUNetPlans.json" 2 3 --bf16)
	[ -f "$M/fold_0/checkpoint_final.pth" ] || "$PY" "$ROOT/tests/tools/mkmodel.py" --plans "$P901/nnUNetPlans.json" \
		--config 3d_fullres --dataset-json "$P901/dataset.json" --out "$M" --folds 0
	mkdir -p "$I" && cp "$ROOT/tests/fixtures/raw/Dataset901_Spheres/imagesTs/sph_101_0000.nii.gz" "$I/"
	t_e2e=$(REPS=1 best "rm -rf '$OUT/p'; '$BIN/nnp-predict' -q -i '$I' -o '$OUT/p' -m '$M' -f 0 --disable-tta")
	t_e2e_m=$(REPS=1 best "rm -rf '$OUT/p'; '$BIN/nnp-predict' -q -i '$I' -o '$OUT/p' -m '$M' -f 0")
	t_e2e_mb=$(REPS=1 best "rm -rf '$OUT/p'; '$BIN/nnp-predict' -q -i '$I' -o '$OUT/p' -m '$M' -f 0 --precision bf16")
	# 117 classes, 1 mm 182x217x182 (a brain-atlas shape): plans from a synthetic fingerprint
	if [ ! -f "$B/model/fold_0/checkpoint_final.pth" ]; then
		mkdir -p "$B/pre" "$B/in"
		"$PY" - "$B/pre" <<-\PYEOF
		import json, sys
		d = sys.argv[1]
		labels = {"background": 0}
		labels.update({"l%03d" % i: i for i in range(1, 117)})
		json.dump({"channel_names": {"0": "T1"}, "labels": labels, "numTraining": 20, "file_ending": ".nii.gz"},
		          open(d + "/dataset.json", "w"), indent=1)
		ip = {"max": 1000.0, "mean": 300.0, "median": 280.0, "min": 0.0, "percentile_00_5": 10.0,
		      "percentile_99_5": 900.0, "std": 150.0}
		json.dump({"foreground_intensity_properties_per_channel": {"0": ip}, "median_relative_size_after_cropping": 1.0,
		           "shapes_after_crop": [[182, 217, 182]] * 20, "spacings": [[1.0, 1.0, 1.0]] * 20},
		          open(d + "/dataset_fingerprint.json", "w"), indent=4, sort_keys=True)
		PYEOF
		"$BIN/nnp-plan" -q "$B/pre" -o "$B/plans.json"
		"$PY" "$ROOT/tests/tools/mkmodel.py" --plans "$B/plans.json" --config 3d_fullres \
			--dataset-json "$B/pre/dataset.json" --out "$B/model" --folds 0
		"$TOOLS/nnp-mkvol" -o "$B/in/brain_0000.nii.gz" --shape 182,217,182 --dtype int16 --spacing 1,1,1
	fi
	"$BIN/nnp-read" "$B/in/brain_0000.nii.gz" | "$BIN/nnp-preprocess" -p "$B/plans.json" -c 3d_fullres --no-mask >"$B/pre.nnp"
	/usr/bin/time -f %M -o "$OUT/rss1" "$BIN/nnp-infer" -m "$B/model" -f 0 --disable-tta --step-size 1 "$B/pre.nnp" |
		/usr/bin/time -f %M -o "$OUT/rss2" "$BIN/nnp-export" -p "$B/plans.json" -c 3d_fullres \
			--dataset-json "$B/pre/dataset.json" >/dev/null
	r1=$(cat "$OUT/rss1"); r2=$(cat "$OUT/rss2")
	r_117=$(echo "scale=0; ($r1 + $r2) / 1024" | bc -l); r_117i=$(echo "scale=0; $r1 / 1024" | bc -l)
	r_117e=$(echo "scale=0; $r2 / 1024" | bc -l)
	cpu_info=$("$TOOLS/nnp-forward" "$P903/nnUNetPlans.json" 3d_fullres --channels 2 --reps 1 --patch 16,16,16 |
		sed -n 's/.*estimate); \(.*\)$/\1/p')
}
inference_md() {
	cat <<MD
## Inference (full-size networks, 2 threads, $cpu_info)

| task | nnpipe [s] | nnU-Net 2.8.1 (torch 1.13 CPU) [s] | ratio |
|---|---:|---:|---:|
| one forward, 901 3d_fullres (32→320, 48×128×112), fp32 | $t_f901 | 4.16 | $(ratio 4.16 "$t_f901")x |
| same, bf16 (AMX) | $t_f901b | 4.16 | $(ratio 4.16 "$t_f901b")x |
| one forward, 903 3d_fullres (2 channels, 56×64×56), fp32 | $t_f903 | 0.85 | $(ratio 0.85 "$t_f903")x |
| same, bf16 (AMX) | $t_f903b | 0.85 | $(ratio 0.85 "$t_f903b")x |
| \`nnp predict\` sph_101 (1 tile), no mirroring, fp32, end to end | $(printf %.2f "$t_e2e") | 3.54 (preprocess + sliding window + export) | $(ratio 3.54 "$t_e2e")x |
| same with mirroring (8 forwards) | $(printf %.2f "$t_e2e_m") | 25.80 (e2e) | $(ratio 25.80 "$t_e2e_m")x |
| same with mirroring, bf16 | $(printf %.2f "$t_e2e_mb") | 25.80 | $(ratio 25.80 "$t_e2e_mb")x |

117 classes, 182×217×182 at 1 mm (patch from \`nnp plan\`; random full-size model,
\`--step-size 1\`: the same window and buffers as 0.5, fewer tiles): \`nnp infer | nnp
export\` peak RSS $r_117 MiB in all (infer $r_117i MiB, export $r_117e MiB). Goal: <= 2 GB.
nnU-Net's export of such logits alone took 33 s and 11.6 GB.
MD
}
# ---- sampling (nnp sample: the training data loader, 1 process) ----
# 901's four fixture cases preprocessed for 3d_fullres (plans from nnp plan),
# fold all, train split (enlarged initial patch), seed 0, output to /dev/null.
# 'bench/run.sh sample' runs only this.
bench_sample() {
	local S=$OUT/sample901 n=${SAMPLE_ITERS:-200} t b
	if [ ! -d "$S/pre/Dataset901_Spheres/nnUNetPlans_3d_fullres" ]; then
		mkdir -p "$S/raw" "$S/pre" && cp -r "$ROOT/tests/fixtures/raw/Dataset901_Spheres" "$S/raw/"
		nnUNet_raw=$S/raw nnUNet_preprocessed=$S/pre NNP_QUIET=1 "$BIN/nnp-plan-and-preprocess" -d 901 \
			-c 3d_fullres >/dev/null
	fi
	b=$(/usr/bin/python3 -c "import json; print(json.load(open('$S/pre/Dataset901_Spheres/nnUNetPlans.json'))['configurations']['3d_fullres']['batch_size'])")
	cat "$S"/pre/Dataset901_Spheres/nnUNetPlans_3d_fullres/*.nnp >/dev/null
	t=$(best "'$BIN/nnp-sample' --preprocessed '$S/pre/Dataset901_Spheres' -c 3d_fullres --fold all -n $n > /dev/null")
	sample_patch=$("$BIN/nnp-sample" --preprocessed "$S/pre/Dataset901_Spheres" -c 3d_fullres --fold all -n 1 |
		"$BIN/nnp-info" -H | sed -n '2s/.*x) //p' | sed 's/, .*//')
	t_sample=$t
	sample_rate=$(echo "scale=0; $n * $b / $t" | bc -l)
	sample_n=$((n * b))
	# the whole training stream, 1 and 2 processes side by side (fan-in of workers)
	local P=$S/pre/Dataset901_Spheres k=20
	pipe() { "$BIN/nnp-sample" --preprocessed "$P" -c 3d_fullres --fold all -n $k --seed "$1" |
		NNP_THREADS=1 "$BIN/nnp-augment" -j 1 --seed "$1" > /dev/null; }
	t_stream1=$(REPS=1 best "$(declare -f pipe); BIN='$BIN' P='$P' k=$k pipe 1")
	t_stream2=$(REPS=1 best "$(declare -f pipe); BIN='$BIN' P='$P' k=$k; pipe 1 & pipe 2 & wait")
	stream1=$(echo "scale=1; $k * $b / $t_stream1" | bc -l)
	stream2=$(echo "scale=1; 2 * $k * $b / $t_stream2" | bc -l)
	stream_n1=$((k * b)) stream_n2=$((2 * k * b))
}
sample_md() {
	cat <<MD
## Sampling (\`nnp sample\`, nnU-Net's training data loader, 1 process)

| task | samples | wall [s] | samples/s |
|---|---:|---:|---:|
| 901 3d_fullres train patches ($sample_patch float32 + int16 label), fold all | $sample_n | $(printf %.2f "$t_sample") | $sample_rate |
| \`nnp sample \| nnp augment -j 1\` (full pipeline, final 48×128×112), 1 process pair | $stream_n1 | $(printf %.2f "$t_stream1") | $stream1 |
| same, 2 process pairs in parallel (2 cores) | $stream_n2 | $(printf %.2f "$t_stream2") | $stream2 |

Goal (issue #6): >= 6 samples/s per core with the full pipeline.
Each sample reads only its box from the case file (casefile.h) and writes two frames.
MD
}
# ---- training (one step of the full-size 901 3d_fullres network, 2 threads) ----
# forward with deep supervision + backward to every parameter gradient, the
# loss gradient fixed (tests/tools/nnp-trainstep.c), against the same network
# in PyTorch (bench/torch_trainstep.py: Debian's python3-torch, same shapes,
# same threads), and the 2d small plans training of t1200 end to end.
# 'bench/run.sh train' runs only this.
bench_train() {
	local P901=$ROOT/tests/fixtures/Dataset901_Spheres/nnUNetPlans.json line
	line=$(OMP_NUM_THREADS=2 "$TOOLS/nnp-trainstep" "$P901" 3d_fullres --batch 2 --reps 2)
	t_tr=$(echo "$line" | sed -n 's/.*step best \([0-9.]*\) s.*/\1/p')
	tr_shape=$(echo "$line" | sed -n 's/^3d_fullres patch \([0-9x]*\) batch \([0-9]*\).*/\1, batch \2/p')
	tr_gmac=$(echo "$line" | sed -n 's/.*: \([0-9.]*\) GMAC forward.*/\1/p')
	if "$PY" -c 'import torch' 2>/dev/null; then
		t_trt=$("$PY" "$ROOT/bench/torch_trainstep.py" "$P901" 3d_fullres --batch 2 --reps 2 --threads 2 | cut -d" " -f1)
		torch_v=$("$PY" -c 'import torch; print(torch.__version__)')
	else
		t_trt=; torch_v="not installed"
	fi
}
train_md() {
	cat <<MD
## Training (one step, full-size 901 3d_fullres network, CPU, 2 threads)

| task | nnpipe [s] | PyTorch $torch_v (same network and shapes) [s] | ratio |
|---|---:|---:|---:|
| forward (deep supervision) + backward to all gradients, patch $tr_shape ($tr_gmac GMAC forward), fp32 | $t_tr | ${t_trt:-—} | $( [ -n "$t_trt" ] && ratio "$t_trt" "$t_tr" || echo —)x |

The optimizer step and the loss are O(voxels + parameters) and left out on both sides
(the loss gradient is a fixed tensor). End to end, t1200-train.t trains the 2d small
plans variant (64x64, batch 8, 16-128 features) 1000 iterations with sampling,
augmentation, validation and checkpoints in about 100 s on 2 cores.
MD
}
if [ "${1:-}" = train ]; then
	bench_train
	train_md
	exit 0
fi
if [ "${1:-}" = sample ]; then
	bench_sample
	sample_md
	exit 0
fi
if [ "${1:-}" = inference ]; then
	bench_inference
	inference_md
	exit 0
fi
if [ "${1:-}" = augment ]; then
	bench_augment
	augment_md
	exit 0
fi
if [ "${1:-}" = export ]; then
	bench_export
	export_md
	exit 0
fi

F=$OUT/ct512.nii
[ -f "$F" ] || "$TOOLS/nnp-mkvol" -o "$F" --shape 512,512,300 --dtype int16 --spacing 0.7,0.7,1.0
FZ=$OUT/ct512.nii.gz
[ -f "$FZ" ] || "$BIN/nnp-read" "$F" | "$BIN/nnp-write" -o "$FZ" --gzip-level 1 --force
MB=$(echo "$(stat -c %s "$F") / 1048576" | bc -l)
cat "$F" > /dev/null   # warm the page cache

t_cat=$(best "cat '$F' > '$OUT/g.nii'")
t_nnp=$(best "'$BIN/nnp-read' '$F' | '$BIN/nnp-write' -o '$OUT/g.nii'")
cmp -s "$F" "$OUT/g.nii" || { rm -f "$OUT/g.nii"; "$BIN/nnp-read" "$F" | "$BIN/nnp-write" -o "$OUT/g.nii"; cmp "$F" "$OUT/g.nii"; }
t_buf=$(best "NNP_ZERO_COPY=0 '$BIN/nnp-read' '$F' | NNP_ZERO_COPY=0 '$BIN/nnp-write' -o '$OUT/g.nii'")
t_info=$(best "'$BIN/nnp-read' '$F' | '$BIN/nnp-info' > /dev/null")
t_zcat=$(best "gzip -dc '$FZ' > '$OUT/g.nii'")
t_gz=$(best "'$BIN/nnp-read' '$FZ' | '$BIN/nnp-write' -o '$OUT/g.nii'")

r_read=$(rss "'$BIN/nnp-read' '$F' > /dev/null")
r_read_buf=$(rss "NNP_ZERO_COPY=0 '$BIN/nnp-read' '$F' > /dev/null")
"$BIN/nnp-read" "$F" > "$OUT/ct512.nnp"
r_write=$(rss "'$BIN/nnp-write' -f -o '$OUT/g.nii' < '$OUT/ct512.nnp'")
r_write_buf=$(rss "cat '$OUT/ct512.nnp' | NNP_ZERO_COPY=0 '$BIN/nnp-write' -f -o '$OUT/g.nii'")
r_info=$(rss "'$BIN/nnp-info' '$OUT/ct512.nnp'")
chunk_mib=$("$BIN/nnp-info" --json -H "$OUT/ct512.nnp" | /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.2f" % (d["nbytes"]/d["nchunks"]/1048576))' 2>/dev/null || echo 8)

# ---- fingerprint (nnU-Net anchor: ../shared/nnunet-timings.md) ----
EX=$OUT/Dataset990_ExampleSpheres
[ -f "$EX/dataset.json" ] || "$TOOLS/nnp-make-example" -o "$EX" --cases 8 --force >/dev/null
fp_time() { # DATASET -> "seconds peakMB"
	/usr/bin/time -f "%e %M" -o "$OUT/fp.time" "$BIN/nnp-fingerprint" -q -f -o "$OUT/fp.json" "$1" >/dev/null
	awk '{printf "%s %.0f\n", $1, $2/1024}' "$OUT/fp.time"
}
read -r fp_ex_s fp_ex_mb < <(fp_time "$EX")
fp_rows="| example dataset (8 cases, 2 channels, generated) | 8 | $fp_ex_s | $(echo "scale=2; $fp_ex_s / 8" | bc -l) | $fp_ex_mb | — | — |"
SHARED=${NNP_SHARED:-$ROOT/../shared}
declare -A NNU_T=([Dataset901_Spheres]=7.34 [Dataset903_MultiChannel]=14.05)
declare -A NNU_M=([Dataset901_Spheres]=1541 [Dataset903_MultiChannel]=2625)
for ds in Dataset901_Spheres Dataset903_MultiChannel; do
	[ -d "$SHARED/fixtures/raw/$ds" ] || continue
	n=$(ls "$SHARED/fixtures/raw/$ds/labelsTr" | wc -l)
	read -r s mb < <(fp_time "$SHARED/fixtures/raw/$ds")
	fp_rows="$fp_rows
| $ds (nnU-Net fixture) | $n | $s | $(echo "scale=2; $s / $n" | bc -l) | $mb | ${NNU_T[$ds]} s / ${NNU_M[$ds]} MB | $(echo "scale=1; ${NNU_T[$ds]} / $s" | bc -l)x faster, $(echo "scale=0; ${NNU_M[$ds]} / $mb" | bc -l)x less memory |"
done

# ---- preprocessing (issue #4 goals: CT <= 1 s and <= 0.8 GB; 117-label resample <= 0.2 s) ----
P901=$ROOT/tests/fixtures/Dataset901_Spheres/nnUNetPlans.json
CT=$OUT/ct512x200.nii
[ -f "$CT" ] || "$TOOLS/nnp-mkvol" -o "$CT" --shape 512,512,200 --dtype int16 --spacing 0.7,0.7,2.5
SEG=$OUT/seg117.nii.gz
[ -f "$SEG" ] || "$TOOLS/nnp-mkvol" -o "$SEG" --shape 181,217,181 --dtype uint8 --labels 117
t_pre=$(best "'$BIN/nnp-read' '$CT' | '$BIN/nnp-crop' | '$BIN/nnp-normalize' -p '$P901' -c 3d_fullres | '$BIN/nnp-resample' -p '$P901' -c 3d_fullres > /dev/null")
t_fused=$(best "'$BIN/nnp-read' '$CT' | '$BIN/nnp-preprocess' --no-mask -p '$P901' -c 3d_fullres > /dev/null")
"$BIN/nnp-read" "$CT" > "$OUT/s0.nnp"
t_fused_file=$(best "'$BIN/nnp-preprocess' --no-mask -p '$P901' -c 3d_fullres '$OUT/s0.nnp' > /dev/null")
r_fused=$(rss "'$BIN/nnp-preprocess' --no-mask -p '$P901' -c 3d_fullres '$OUT/s0.nnp'")
"$BIN/nnp-crop" "$OUT/s0.nnp" > "$OUT/s1.nnp"
"$BIN/nnp-normalize" -p "$P901" -c 3d_fullres "$OUT/s1.nnp" > "$OUT/s2.nnp"
r_crop=$(rss "'$BIN/nnp-crop' '$OUT/s0.nnp'")
r_norm=$(rss "'$BIN/nnp-normalize' -p '$P901' -c 3d_fullres '$OUT/s1.nnp'")
r_res=$(rss "'$BIN/nnp-resample' -p '$P901' -c 3d_fullres '$OUT/s2.nnp'")
r_pipe=$(( r_crop + r_norm + r_res ))
if [ "$(echo "$t_fused <= 1.0" | bc -l)" = 1 ] && [ "$r_fused" -le 819200 ]; then
	goal_fused="<= 1 s and <= 0.8 GB: met"
else
	goal_fused="<= 1 s and <= 0.8 GB: not met in this run"
fi
"$BIN/nnp-read" --role label "$SEG" > "$OUT/seg117.nnp"
t_seg=$(best "'$BIN/nnp-resample' --spacing 1.5,1.5,1.5 '$OUT/seg117.nnp' > /dev/null")
r_seg=$(rss "'$BIN/nnp-resample' --spacing 1.5,1.5,1.5 '$OUT/seg117.nnp'")
rm -f "$OUT"/s[0-2].nnp

bench_export
bench_inference
bench_sample
bench_augment
bench_train

mbs() { echo "scale=0; $MB / $1" | bc -l; }
pct() { echo "scale=0; 100 * $1 / $2" | bc -l; }
mib() { echo "scale=1; $1 / 1024" | bc -l; }

cat > "$REPORT" <<MD
# Benchmarks

Made by \`make bench\` (bench/run.sh) on $(date -u +%Y-%m-%d), $(nproc) cores,
$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); best of $REPS runs, page cache warm.
Input: 512×512×300 int16 NIfTI ($(printf '%.0f' "$MB") MiB), synthetic (tests/tools/nnp-mkvol).

## Throughput: \`nnp read f.nii | nnp write -o g.nii\` against \`cat f.nii > g.nii\`

| pipeline | wall [s] | MiB/s | vs reference |
|---|---:|---:|---:|
| \`cat f.nii > g.nii\` (reference; coreutils uses copy_file_range) | $t_cat | $(mbs "$t_cat") | 100 % |
| \`nnp read f.nii \\| nnp write -o g.nii\` (sendfile + splice) | $t_nnp | $(mbs "$t_nnp") | $(pct "$t_cat" "$t_nnp") % |
| same with \`NNP_ZERO_COPY=0\` (read/write through one chunk buffer) | $t_buf | $(mbs "$t_buf") | $(pct "$t_cat" "$t_buf") % |
| \`nnp read f.nii \\| nnp info\` (per-channel min/max/mean) | $t_info | $(mbs "$t_info") | $(pct "$t_cat" "$t_info") % |
| \`gzip -dc f.nii.gz > g.nii\` (reference for compressed input) | $t_zcat | $(mbs "$t_zcat") | 100 % |
| \`nnp read f.nii.gz \\| nnp write -o g.nii\` | $t_gz | $(mbs "$t_gz") | $(pct "$t_zcat" "$t_gz") % |

"vs reference" is reference time / nnpipe time (throughput ratio). The output of the
zero-copy pipeline is checked byte-identical to the input (\`cmp\`).

## Resident memory (peak RSS, /usr/bin/time)

Chunk size of this stream: $chunk_mib MiB (default target 8 MiB).

| program | peak RSS [MiB] | chunks |
|---|---:|---:|
| \`nnp read f.nii > /dev/null\` (zero-copy) | $(mib "$r_read") | $(echo "scale=2; $r_read / 1024 / $chunk_mib" | bc -l) |
| \`nnp read f.nii > /dev/null\` (\`NNP_ZERO_COPY=0\`) | $(mib "$r_read_buf") | $(echo "scale=2; $r_read_buf / 1024 / $chunk_mib" | bc -l) |
| \`nnp write -o g.nii < f.nnp\` (zero-copy) | $(mib "$r_write") | $(echo "scale=2; $r_write / 1024 / $chunk_mib" | bc -l) |
| \`cat f.nnp \\| nnp write -o g.nii\` (\`NNP_ZERO_COPY=0\`) | $(mib "$r_write_buf") | $(echo "scale=2; $r_write_buf / 1024 / $chunk_mib" | bc -l) |
| \`nnp info f.nnp\` | $(mib "$r_info") | $(echo "scale=2; $r_info / 1024 / $chunk_mib" | bc -l) |

## Fingerprint (\`nnp fingerprint\`, default 1e8 samples per channel, all cores)

| dataset | cases | wall [s] | per case [s] | peak RSS [MB] | nnU-Net 2.8.1 (nnunet-timings.md, same machine type) | ratio |
|---|---:|---:|---:|---:|---|---|
$fp_rows

The output is byte-identical to nnU-Net's dataset_fingerprint.json on both fixture datasets.

## Preprocessing (\`read | crop | normalize | resample\`, 901's 3d_fullres plans)

| task | nnpipe wall [s] | nnpipe memory | nnU-Net 2.8.1 (nnunet-timings.md) | ratio | issue #4 goal |
|---|---:|---|---|---:|---|
| 512×512×200 int16 CT (0.7×0.7×2.5 mm) → 3d_fullres [168,447,447] | $t_pre | $(mib "$r_pipe") MiB summed over the stages (crop $(mib "$r_crop"), normalize $(mib "$r_norm"), resample $(mib "$r_res")) | 15.55 s, 3462 MB | $(echo "scale=1; 15.55 / $t_pre" | bc -l)x | <= 1 s, <= 0.8 GB: not as a 4-process pipe |
| same, \`nnp read ct.nii \| nnp preprocess --no-mask\` (fused run_case, inference path) | $t_fused | $(mib "$r_fused") MiB (one process) | 15.55 s, 3462 MB | $(echo "scale=1; 15.55 / $t_fused" | bc -l)x | $goal_fused |
| same, \`nnp preprocess --no-mask\` from a saved stream (no NIfTI decode) | $t_fused_file | $(mib "$r_fused") MiB | — | $(echo "scale=1; 15.55 / $t_fused_file" | bc -l)x | |
| 117-label segmentation 181×217×181, 1 → 1.5 mm (order 1) | $t_seg | $(mib "$r_seg") MiB | 9.65 s, 490 MB | $(echo "scale=0; 9.65 / $t_seg" | bc -l)x | <= 0.2 s: met |

The filters each hold one case, so a 4-stage pipe holds four copies at once; \`nnp
preprocess\` runs the same steps in one process (each step frees its input), with
byte-identical output (tests/t/t0710).

A pass-through filter holds one chunk plus a ~2-3 MiB process baseline, so it stays
under two chunks whatever the volume size (the volume here is $(printf '%.0f' "$MB") MiB).

$(export_md)

$(inference_md)

$(sample_md)
$(augment_md)

$(train_md)
MD
cat "$REPORT"
