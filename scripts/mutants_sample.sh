#!/bin/bash
# A sampled (or whole) cargo-mutants run: shards of a round-robin split of every mutant that
# .cargo/mutants.toml selects (src/nrpm/, src/robust/) into N parts (default 40), one after
# another, with the `mutants` profile (release semantics at opt-level 0, incremental: about
# 10 s a mutant on 2 cores). Mutant i belongs to shard i mod N, so each shard is a
# systematic sample of the whole list. Then a summary of all shards run so far: counts and
# every missed mutant.
#
#   scripts/mutants_sample.sh 0 1 2 3        # shards 0..3 of 40, results in mutants.sample/
#   N=80 scripts/mutants_sample.sh 5         # shard 5 of 80
#   scripts/mutants_sample.sh                # only the summary
#
# With CLAIM=1 a shard is run only if this run is the first to claim it (mkdir OUT/claim-K),
# so that two clones can share one list: a build leaves a third of 2 cores idle, and two
# runners keep both busy.
#
#   cd clone1 && OUT=/abs/out CLAIM=1 scripts/mutants_sample.sh $(seq 0 39) &
#   cd clone2 && OUT=/abs/out CLAIM=1 scripts/mutants_sample.sh $(seq 0 39) &
#
# It mutates the files of this checkout in place (cargo mutants --in-place) and restores
# each one after its mutant; run it in a clean clone, not in a tree with work in progress.
# Record the summary in docs/VERIFICATION.md, and the shards' lists in docs/mutants/. Check
# every "unviable" mutant's log for a real type error (error[E...]): the incremental build can
# fail at the link (rust-lld "undefined hidden symbol"), which cargo-mutants also reports as
# unviable; `cargo clean --profile mutants` clears that state.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-40}
OUT=${OUT:-mutants.sample}
mkdir -p "$OUT"
for k in "$@"; do
    if [ -n "${CLAIM:-}" ] && ! mkdir "$OUT/claim-$k" 2>/dev/null; then continue; fi
    cargo mutants --in-place --shard "$k/$N" --sharding round-robin --baseline skip \
        --timeout 300 --build-timeout 900 -o "$OUT/shard-$k-of-$N" \
        > "$OUT/shard-$k-of-$N.log" 2>&1 || true # a missed mutant makes it exit non-zero
done
shopt -s nullglob
dirs=("$OUT"/shard-*/mutants.out)
[ ${#dirs[@]} -eq 0 ] && { echo "no shard has run yet"; exit 0; }
count() { cat "${dirs[@]/%//$1}" 2>/dev/null | grep -c . || true; }
caught=$(count caught.txt); missed=$(count missed.txt)
unviable=$(count unviable.txt); timeout=$(count timeout.txt)
echo "shards: ${#dirs[@]} of $N (${dirs[*]})"
echo "caught $caught, missed $missed, timeout $timeout, unviable $unviable"
echo "score (caught + timeout) / (caught + missed + timeout): " \
    "$(( 1000 * (caught + timeout) / (caught + missed + timeout) ))‰"
echo "missed:"
cat "${dirs[@]/%//missed.txt}" | sort
# An "unviable" mutant must stop at a type error of its own; one that stops elsewhere (a link
# fault of the incremental build) was not judged and has to be run again.
python3 - "${dirs[@]}" <<'PY'
import json, os, sys
odd = 0
for d in sys.argv[1:]:
    for o in json.load(open(os.path.join(d, "outcomes.json")))["outcomes"]:
        if o["summary"] == "Unviable":
            log = open(os.path.join(d, o["log_path"]), errors="replace").read()
            if "error[E" not in log:
                odd += 1
                print("unviable without a type error:", d, o["log_path"])
print(f"unviable mutants without a type error in their log: {odd}")
PY
