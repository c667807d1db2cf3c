#!/usr/bin/env bash
# Wall times behind docs/PERFORMANCE.md ("Strong attacks" and "Randomized smoothing"): each
# strong attack against one plain PGD-20 run of the same model in the same run, and the
# smoothing target. Run on an idle machine from the repository root after
# `cargo build --release`; every line prints the load average first and its wall time after.
#
#   scripts/time_strong.sh attacks N     # PGD-20, APGD-CE, AutoAttack on the first N images
#   scripts/time_strong.sh target        # AutoAttack, NRPM MLP (K = 1), 200 images, ε = 0.1
#   scripts/time_strong.sh smoothing N   # CERTIFY n = 100 000 on N images, NRPM MLP (K = 1)
set -euo pipefail
BIN=${NRPM_BIN:-target/release/nrpm}
W=${NRPM_MODELS:-../shared/models}
D=${NRPM_MNIST:-../shared/data/mnist}
NRPM="--norm l1 --k 1 --eps-irls 5e-5 --lambda 0.6"   # Paradigm 1, the authors' MLP operator

timed() {
    echo "load $(cut -d' ' -f1-3 /proc/loadavg) :: $*"
    local start end
    start=$(date +%s.%N)
    "$@" 2>/dev/null | tail -6
    end=$(date +%s.%N)
    printf 'wall %.1f s\n\n' "$(echo "$end - $start" | bc)"
}

attacks() {
    local n=$1
    local m="--model mlp3 --weights $W/mlp3_mnist.safetensors --data $D --n $n --eps 0.1"
    for op in "" "$NRPM"; do
        # shellcheck disable=SC2086
        timed "$BIN" eval $m $op --attack pgd-linf --steps 20
        # shellcheck disable=SC2086
        timed "$BIN" eval $m $op --attack apgd-ce
        # shellcheck disable=SC2086
        timed "$BIN" eval $m $op --attack autoattack
    done
}

case "${1:-}" in
    attacks) attacks "${2:-1000}" ;;
    target) attacks 200 ;;
    smoothing)
        # shellcheck disable=SC2086
        timed "$BIN" certify --method smoothing --weights "$W/mlp3_mnist.safetensors" \
            --data "$D" --n "${2:-100}" $NRPM --sigma 0.25 --n0 100 --samples 100000 \
            --alpha 0.001 --batch 1000
        ;;
    *) sed -n '2,9p' "$0"; exit 2 ;;
esac
