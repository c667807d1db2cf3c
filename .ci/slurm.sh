#!/usr/bin/env bash
# CI: a real Slurm run of deploy/slurm/'s own scripts. A single-node cluster
# (deploy/slurm/local-cluster.sh) runs an array of 4 `nrpm eval` shards and the merge job
# (--dependency=afterok); the merged report must equal the unsharded run's, figure for figure.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge) \
      >/dev/null
  else
    echo "error: Slurm (slurmctld slurmd slurm-client munge) is not installed and cannot be" >&2
    exit 1
  fi
fi

nrpm="$PWD/target/release/nrpm"
work=$(mktemp -d /tmp/nrpm-slurm-ci.XXXXXX)
cluster="$work/cluster"
trap 'deploy/slurm/local-cluster.sh stop "$cluster" >/dev/null 2>&1 || true' EXIT
eval "$(deploy/slurm/local-cluster.sh start "$cluster")"
export SLURM_CONF

# A small model trained from scratch on the shipped subset (a second), then a PGD evaluation
# of its NRPM reprogramming: once unsharded, once as a Slurm array of 4 plus the merge job.
"$nrpm" train --model mlp1 --paradigm scratch --epochs 2 --lr 0.05 --eval-n 50 \
  --out "$work/model" >/dev/null
args=(eval --weights "$work/model/model.safetensors" --norm l1 --k 1 --lambda 0.5
  --attack pgd-linf --eps 0,0.05,0.1 --steps 20 --n 400 --seed 5)
"$nrpm" "${args[@]}" --out "$work/whole" >/dev/null

read -r array merge < <(cd "$work" && NRPM="$nrpm" "$OLDPWD/deploy/slurm/submit.sh" 4 \
  "$work/shards" "${args[@]}")
echo "slurm: array job $array (4 tasks), merge job $merge"
if ! timeout 120 bash -c "while squeue -h -j $array,$merge 2>/dev/null | grep -q .; do sleep 1; done"; then
  echo "error: the Slurm jobs did not finish in 120 s" >&2
  squeue >&2 || true
  exit 1
fi
for f in "$work"/*.out; do echo "== $f"; cat "$f"; done
python3 - "$work/whole/report.json" "$work/shards/report/report.json" <<'PY'
import json, sys

def figures(path):
    def strip(v):
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if "seconds" not in k}
        if isinstance(v, list):
            return [strip(x) for x in v]
        return v
    with open(path) as f:
        return strip(json.load(f))

whole, merged = figures(sys.argv[1]), figures(sys.argv[2])
if whole != merged:
    sys.exit(f"error: the Slurm-merged report differs from the unsharded run's")
robust = [r["robust_correct"] for r in merged["results"]]
print(f"slurm: merged report of 4 shards equals the unsharded run (robust correct {robust})")
PY
