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
set -euo pipefail
usage="usage: parallel-ssh.sh NODES_FILE DATASET [CONFIG...]"
nodes=${1:?$usage}
ds=${2:?$usage}
shift 2
configs=("${@:-3d_fullres}")
env=(--env nnUNet_raw --env nnUNet_preprocessed --env nnUNet_results --env PATH)
mkdir -p joblogs

# 1. plan and preprocess here (all cores; cases appear atomically, a rerun skips them)
nnp plan-and-preprocess -d "$ds" -c "${configs[@]}"

# 2. training: each (configuration, fold) is one job; the job's slot on its machine,
#    {%} (1..slots), picks the GPU
parallel --sshloginfile "$nodes" "${env[@]}" --joblog joblogs/train.joblog --resume-failed \
	'nnp train -d '"$ds"' -c {1} -f {2} --npz --continue --device cuda:$(( {%} - 1 ))' \
	::: "${configs[@]}" ::: 0 1 2 3 4

# 3. model selection here (cheap)
nnp find-best -d "$ds" -c "${configs[@]}"

# 4. the test set split over the machines: part k of N predicts cases k, k+N, k+2N, ...
#    (nnp predict --num-parts N --part-id k); ensembling and postprocessing run here after
images=$(ls -d "$nnUNet_raw"/Dataset*/imagesTs | grep -F "$(basename "$(ls -d "$nnUNet_preprocessed"/*"$ds"* | head -n1)")")
nnp find-best -d "$ds" --script -i "$images" -o pred >joblogs/predict.sh
n=$(grep -c . "$nodes")
grep '^nnp predict ' joblogs/predict.sh >joblogs/predict_parts.txt
parallel --sshloginfile "$nodes" "${env[@]}" --joblog joblogs/predict.joblog --resume-failed \
	--workdir "$PWD" '{1} --num-parts '"$n"' --part-id {2}' \
	:::: joblogs/predict_parts.txt ::: $(seq 0 $((n - 1)))
grep -v '^nnp predict ' joblogs/predict.sh | bash
