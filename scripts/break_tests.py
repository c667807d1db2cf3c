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
    ("B4", "src/nrpm/lad.rs",
     "        (below + mid) / T::of(2.0)",
     "        mid",
     "prop_robust", "lad_sensitivity_is_bounded_and_lpm_is_not",
     "even-count median takes the upper middle value instead of the midpoint"),
    ("B5", "tests/prop_robust.rs",
     "let want = (delta - mu).signum() * 2.0 * s;",
     "let want = (mu - delta).signum() * 2.0 * s;",
     "prop_robust", "influence_functions_match_corrected_statement",
     "the test holds the median's IF to the sign the uncorrected equation of proof 06 gives"),
    ("B6", "tests/prop_robust.rs",
     "prop_assert!(if_near.abs() >= 0.5 * grows,",
     "prop_assert!(if_near.abs() <= (1.0 + 1e-9) / ew0,",
     "prop_robust", "influence_functions_match_corrected_statement",
     "the test holds the ε = 0 one-step IF to the old claim: absolute value ≤ 1/E[w]"),
    ("B7", "src/nrpm/fused.rs",
     "T::irls_sums(xg, wg, zs[k] / dgt, &wf)",
     "T::irls_sums(xg, wg, zs[0] / dgt, &wf)",
     "golden_gradients", "linear_forward_and_gradients_match_the_authors_autograd",
     "every IRLS step reweights around z⁰ instead of zᵏ (fused), against the golden gradients"),
    ("B8", "src/nrpm/kernels.rs",
     "        -T::one()\n    } else {\n        T::zero()",
     "        -T::one()\n    } else {\n        T::one()",
     "golden_gradients", "linear_forward_and_gradients_match_the_authors_autograd",
     "sign(0) = 1 instead of PyTorch's 0 at ties t_d = z/D"),
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
