#!/bin/bash
# Submit an array of SHARDS nrpm tasks and the merge job that waits for all of them.
#
#   deploy/slurm/submit.sh SHARDS OUT_DIR NRPM_ARGS…
#   e.g. deploy/slurm/submit.sh 8 runs/smooth certify --method smoothing --sigma 0.25 \
#            --model mlp3 --weights mlp3.safetensors --data mnist/ --samples 100000
#
# Prints "ARRAY_JOB_ID MERGE_JOB_ID". The merge runs only if every task succeeded
# (--dependency=afterok); with DependencyParameters=kill_invalid_depend in slurm.conf a failed
# task cancels it instead of leaving it pending forever.
set -euo pipefail
shards=${1:?usage: submit.sh SHARDS OUT_DIR NRPM_ARGS…}
out=${2:?usage: submit.sh SHARDS OUT_DIR NRPM_ARGS…}
shift 2
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
array=$(sbatch --parsable --array=0-$((shards - 1)) --chdir="$PWD" "$here/array.sbatch" "$out" "$@")
merge=$(sbatch --parsable --dependency=afterok:"$array" --chdir="$PWD" "$here/merge.sbatch" "$out")
echo "$array $merge"
