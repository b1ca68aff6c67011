#!/usr/bin/env bash
# parallel-ssh.sh — the same nnp filters across machines with GNU parallel --sshloginfile.
#
#   examples/cluster/parallel-ssh.sh NODES_FILE DATASET [CONFIG...]
#
# NODES_FILE lists one machine per line in GNU parallel's sshlogin format, with its number
# of job slots first: "4/gpu-node-1" runs 4 jobs there (one per GPU); ":" is this machine.
# Every machine needs nnpipe on its PATH and the same $nnUNet_raw, $nnUNet_preprocessed and
# $nnUNet_results (a shared file system such as NFS); --env passes the variables on.
# Every step resumes: the joblogs record what finished and --resume-failed reruns the
# rest, nnp train --continue resumes a training from its last checkpoint, and the
# predict script skips finished cases (nnp predict --continue).
#
# Environment: FOLDS (default "0 1 2 3 4"), DEVICE=cpu to train on the CPU (default: slot k
# of a machine trains on cuda:k-1), TRAIN_ARGS (extra nnp train options, e.g. --epochs 100),
# PLANS (default nnUNetPlans), TEST_IMAGES (default: the raw dataset's imagesTs).
set -euo pipefail
usage="usage: parallel-ssh.sh NODES_FILE DATASET [CONFIG...]"
nodes=${1:?$usage}
ds=${2:?$usage}
shift 2
configs=("${@:-3d_fullres}")
read -r -a folds <<<"${FOLDS:-0 1 2 3 4}"
plans=${PLANS:-nnUNetPlans}
env=(--env nnUNet_raw --env nnUNet_preprocessed --env nnUNet_results --env PATH)
if [ "${DEVICE:-}" = cpu ]; then device="--device cpu"; else device='--device cuda:$(( {%} - 1 ))'; fi
mkdir -p joblogs

# 1. plan and preprocess here (all cores; cases appear atomically, a rerun skips them)
nnp plan-and-preprocess -d "$ds" -c "${configs[@]}" ${PLAN_ARGS:-}

# 2. training: each (configuration, fold) is one job; the job's slot on its machine,
#    {%} (1..slots), picks the GPU
parallel --sshloginfile "$nodes" "${env[@]}" --joblog joblogs/train.joblog --resume-failed \
	'nnp train -d '"$ds"' -c {1} -f {2} -p '"$plans"' --npz --continue '"$device ${TRAIN_ARGS:-}" \
	::: "${configs[@]}" ::: "${folds[@]}"

# 3. model selection here (cheap)
nnp find-best -d "$ds" -c "${configs[@]}" -p "$plans" -f "${folds[@]}"

# 4. the test set split over the machines: part k of N predicts cases k, k+N, k+2N, ...
#    (nnp predict --num-parts N --part-id k); ensembling and postprocessing run here after
images=${TEST_IMAGES:-$nnUNet_raw/$(basename "$(ls -d "$nnUNet_preprocessed"/Dataset*"$ds"* | head -n1)")/imagesTs}
nnp find-best -d "$ds" --script -i "$images" -o pred >joblogs/predict.sh
n=$(grep -c . "$nodes")
# each machine runs the predict lines for its part; the rest (ensemble, postprocessing) here
sed -n "s/^nnp predict .*/& --num-parts $n --part-id \$PART/p" joblogs/predict.sh >joblogs/predict_part.sh
seq 0 $((n - 1)) | parallel --sshloginfile "$nodes" "${env[@]}" --joblog joblogs/predict.joblog \
	--resume-failed --workdir "$PWD" 'PART={} bash joblogs/predict_part.sh'
grep -v '^nnp predict ' joblogs/predict.sh | bash
