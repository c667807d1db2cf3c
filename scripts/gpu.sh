#!/usr/bin/env bash
# The CUDA checks and benchmarks on a lent GPU machine, which has no cargo (docs/CUDA.md).
#
#   scripts/gpu.sh build              here: build the CUDA test and bench binaries (release,
#                                     feature cuda, no BLAS), strip them into .gpu/ (~8 MB,
#                                     ignored through .git/info/exclude); carry ".gpu".
#   scripts/gpu.sh run [tests|bench|all] [quick]
#                                     on the GPU machine, from the repository root: find the
#                                     driver, NVRTC and cuBLAS, run, keep logs under $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
build)
  grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >>.git/info/exclude
  rm -rf .gpu && mkdir -p .gpu
  {
    cargo test --release --features cuda --no-run --message-format=json \
      --test cuda_linear --test cuda_compile --test kernel_math
    cargo bench --features cuda --bench nrpm_cuda --no-run --message-format=json
  } | python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        print(m["target"]["name"], m["executable"])
' | while read -r name exe; do
    strip -o ".gpu/$name" "$exe"
  done
  ls -l .gpu
  ;;
run)
  what="${2:-all}"
  out="${OUT:-/tmp/nrpm-gpu}"
  mkdir -p "$out"
  # The driver is on the loader path; NVRTC and cuBLAS may sit in the toolkit or in the
  # Python wheels (nvidia/cu13/lib).
  site="$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' 2>/dev/null || true)"
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib "$site/nvidia/cu13/lib"; do
    if [ -d "$d" ]; then LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; fi
  done
  export LD_LIBRARY_PATH
  {
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv ||
      echo "nvidia-smi failed"
    ldconfig -p | grep -E 'libcuda\.so|libnvrtc\.so|libcublas\.so' || true
    echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    command -v g++ || echo "no g++: the bit-for-bit check against the host harness will skip"
  } 2>&1 | tee "$out/device.txt"
  status=0
  if [ "$what" = tests ] || [ "$what" = all ]; then
    for t in cuda_compile kernel_math cuda_linear; do
      echo "== $t"
      ".gpu/$t" --nocapture 2>&1 | tee "$out/$t.log" || status=1
    done
  fi
  if [ "$what" = bench ] || [ "$what" = all ]; then
    echo "== nrpm_cuda"
    if [ "${3:-}" = quick ]; then export NRPM_BENCH_QUICK=1; fi
    CRITERION_HOME=/tmp/nrpm-criterion .gpu/nrpm_cuda --bench 2>&1 | tee "$out/bench.log" || status=1
  fi
  exit $status
  ;;
*)
  sed -n '2,9p' "$0"
  exit 2
  ;;
esac
