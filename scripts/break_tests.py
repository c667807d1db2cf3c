#!/usr/bin/env python3
"""Break the code once per test: every entry of MUTATIONS is one deliberate bug (an exact
replacement that must match once) and the test that must catch it. For each entry the script
applies the bug in the work tree, runs that one test (`cargo test --release --test TARGET
NAME -- --exact`), restores the file (also on Ctrl-C), and prints a Markdown row: the test must
FAIL. The table in docs/VERIFICATION.md ("Each test can fail") is this script's output.

Usage: python3 scripts/break_tests.py [ID ...]      (no ID: every entry)
Needs a clean work tree for the files it touches (it refuses otherwise).
"""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (id, file, exact old text, replacement, test target, test name, what the bug is)
MUTATIONS = [
    ("B1", "src/nrpm/norm.rs",
     "                if v < self.eps {\n                    self.eps\n                } else {\n                    v\n                }",
     "                if v < self.eps {\n                    self.p\n                } else {\n                    v\n                }",
     "prop_breakdown", "operator_stays_in_breakdown_envelope",
     "MCP floor 1/γ instead of ε (far terms keep weight 1/γ)"),
    ("B2", "src/nrpm/mod.rs",
     "iterates.lpm() * lambda + iterates.last() * (T::one() - lambda)",
     "iterates.last() * lambda + iterates.last() * (T::one() - lambda)",
     "prop_breakdown", "operator_sensitivity_grows_with_an_lpm_share",
     "the mix drops the LPM share (λ·zᴷ instead of λ·z⁰)"),
    ("B3", "src/nrpm/fused.rs",
     "T::irls_sums(xg, wg, zs[k] / dgt, &wf)",
     "T::irls_sums(xg, wg, zs[0] / dgt, &wf)",
     "prop_breakdown", "operator_sensitivity_is_bounded_once_converged_and_grows_at_finite_k",
     "every IRLS step reweights around z⁰ instead of zᵏ (fused)"),
]


def run_one(entry):
    mid, rel, old, new, target, name, what = entry
    path = ROOT / rel
    text = path.read_text()
    if text.count(old) != 1:
        return f"| {mid} | {what} | `{rel}` | pattern found {text.count(old)} times | — |"
    status = subprocess.run(["git", "diff", "--quiet", "--", rel], cwd=ROOT)
    if status.returncode != 0:
        sys.exit(f"{rel} has uncommitted changes; commit or stash them first")
    path.write_text(text.replace(old, new))
    try:
        out = subprocess.run(
            ["cargo", "test", "--release", "-q", "--test", target, name, "--", "--exact"],
            cwd=ROOT, capture_output=True, text=True)
    finally:
        path.write_text(text)
    failed = out.returncode != 0 and "test result: FAILED" in out.stdout
    built = "error[" not in out.stderr
    verdict = "caught (test failed)" if failed else ("DID NOT BUILD" if not built else "NOT CAUGHT")
    return f"| {mid} | {what} | `{rel}` | `{target}::{name}` | {verdict} |"


def main():
    wanted = set(sys.argv[1:])
    print("| # | bug | file | test | result |")
    print("|---|---|---|---|---|")
    for entry in MUTATIONS:
        if not wanted or entry[0] in wanted:
            print(run_one(entry), flush=True)


if __name__ == "__main__":
    main()
