//! `report.md`: the page a person reads on GitHub — summary, the accuracy tables with their
//! intervals, an automatic reading of them against LPM, the plots, the reasons for the
//! settings, the settings, training histories, timings and the command.

use std::fmt::Write;

use crate::demo::certification;
use crate::demo::tables::{lambda_cell, markdown_accuracy, AttackKind};
use crate::demo::{DemoReport, Variant};
use nrpm::report::markdown::Table;
use nrpm::report::stats::Proportion;
use nrpm::train::EpochReport;

/// The whole page.
pub(crate) fn markdown(report: &DemoReport, command: &str) -> String {
    [
        summary(report),
        accuracy_sections(report),
        autoattack_section(report),
        reading(report),
        certification::markdown(&report.certification, &report.config),
        lambda_section(report),
        influence_section(report),
        rationale(report),
        settings(report),
        training(report),
        timings(report, command),
    ]
    .join("\n")
}

/// Title and the one-paragraph summary.
fn summary(r: &DemoReport) -> String {
    let c = &r.config;
    let lpm = &r.variants[0];
    format!(
        "# NRPM demo: robustness reprogramming of an MNIST MLP{quick}\n\n\
         A 784-256-64-10 MLP without activations (the authors' `mlp3`) was trained from scratch \
         with plain linear pattern matching (LPM) on the first {train} images of `{train_name}` \
         ({epochs} epochs, seed {seed}; clean test accuracy {clean}). It was then reprogrammed \
         with NRPM (L1, K = {k}, ε = {eps}) in all three layers: Paradigm 1 with a fixed λ ∈ \
         {{{grid}}}, and Paradigm 2 learning one λ = sigmoid(θ) per layer by {p2_epochs} epoch(s) \
         of FGSM (ε = {p2_eps}) adversarial training with every weight frozen. Every variant was \
         attacked with FGSM and PGD-{steps} (L∞) on the first {test} images of `{test_name}`, and \
         with the same PGD taking its gradients from the LPM layers (a BPDA-style check for \
         gradient masking). Accuracies are in %, with 95 % Clopper–Pearson intervals in brackets. \
         Machine: {machine}; {threads} threads; total wall time {total:.1} s.\n\n{headline}\n",
        quick = if c.quick { " (quick run)" } else { "" },
        train = r.train_data.1,
        train_name = r.train_data.0,
        epochs = c.scratch.epochs,
        seed = c.seed,
        clean = lpm.clean.display(),
        k = c.nrpm_k,
        eps = c.nrpm_eps,
        grid = join(&c.paradigm1_lambdas),
        p2_epochs = c.paradigm2.epochs,
        p2_eps = c.paradigm2_fgsm_eps,
        steps = c.pgd_steps,
        test = r.test_data.1,
        test_name = r.test_data.0,
        machine = r.machine.description,
        threads = r.machine.threads,
        total = r.seconds,
        headline = headline(r),
    )
}

/// One sentence on LPM against Paradigm 2 at the budget nearest 0.1, and what the
/// BPDA-style attack leaves of the difference.
fn headline(r: &DemoReport) -> String {
    let (lpm, Some(p2)) = (
        &r.variants[0],
        r.variants.iter().find(|v| v.paradigm == Some(2)),
    ) else {
        return String::new();
    };
    let eps = r
        .config
        .attacked_budgets()
        .into_iter()
        .min_by(|a, b| (a - 0.1).abs().total_cmp(&(b - 0.1).abs()));
    let Some(eps) = eps else { return String::new() };
    let at = |v: &Variant, a: AttackKind| {
        attack_at(v, a, eps)
            .map(|p| p.display())
            .unwrap_or_default()
    };
    let [white, bpda, base] = [
        (p2, AttackKind::Pgd),
        (p2, AttackKind::Bpda),
        (lpm, AttackKind::Pgd),
    ]
    .map(|(v, a)| attack_at(v, a, eps));
    let verdict = match (white, bpda, base) {
        (Some(w), Some(b), Some(l)) if b.lo <= l.hi => match w.lo > l.hi {
            true => {
                "none of the white-box gain is left: on this model it comes from gradient masking"
            }
            false => "neither attack finds a gain over LPM",
        },
        (Some(w), Some(b), _) if b.hi < w.lo => "part of the white-box gain is left",
        _ => "the gain survives gradients taken from the LPM layers",
    };
    format!(
        "**Headline (ε = {eps}).** LPM: {} under FGSM, {} under PGD-{steps}. Paradigm 2: {} under \
         FGSM, {} under PGD-{steps}, {} under PGD-{steps} with LPM gradients — {verdict}.\n",
        at(lpm, AttackKind::Fgsm),
        at(lpm, AttackKind::Pgd),
        at(p2, AttackKind::Fgsm),
        at(p2, AttackKind::Pgd),
        at(p2, AttackKind::Bpda),
        steps = r.config.pgd_steps,
    )
}

/// The variant's accuracy under `attack` at budget `eps`.
fn attack_at(v: &Variant, attack: AttackKind, eps: f64) -> Option<Proportion> {
    attack
        .points(v)
        .iter()
        .find(|p| p.eps == eps)
        .map(|p| p.accuracy)
}

/// What each attack is, under its section title.
fn about(attack: AttackKind, steps: usize) -> String {
    match attack {
        AttackKind::Fgsm => "One step x' = clip₀₁(x + ε·sign(∇ₓ CE)), the attack of the paper's Table 1.".into(),
        AttackKind::Pgd => format!(
            "{steps} steps of size α = 2.5·ε/steps from a uniform random start in the ε-ball, each projected \
             on the ball and on [0, 1]; gradients through the unrolled IRLS steps (white box)."
        ),
        AttackKind::Bpda => format!(
            "The same PGD-{steps}, but every gradient is computed on the same weights with every layer \
             LPM, while the reprogrammed model is still the one classified (BPDA-style: the linear \
             layers stand in for the NRPM layers in the backward pass). Robustness that appears \
             under the white-box gradients but not here is gradient masking, not robustness."
        ),
    }
}

/// One table and one chart per attack.
fn accuracy_sections(r: &DemoReport) -> String {
    let mut out = String::new();
    for attack in AttackKind::ALL {
        let label = attack.label(&r.config);
        let _ = write!(
            out,
            "## Accuracy under {label} (L∞)\n\n{}\n\n{}\n![{label} accuracy vs ε]({})\n\n",
            about(attack, r.config.pgd_steps),
            markdown_accuracy(r, attack),
            attack.chart_file()
        );
    }
    out
}

/// AutoAttack's table: every variant on the first `autoattack_n` images.
fn autoattack_section(r: &DemoReport) -> String {
    let c = &r.config;
    let mut headers = vec![
        "variant".to_string(),
        "λ".to_string(),
        format!("clean (first {})", c.autoattack_n),
    ];
    headers.extend(c.autoattack_budgets.iter().map(|e| e.to_string()));
    let mut table = Table::new(headers);
    for v in &r.variants {
        let mut row = vec![v.name.clone(), lambda_cell(v)];
        row.extend(v.autoattack.iter().map(|p| p.accuracy.display()));
        table.row(row);
    }
    format!(
        "## Accuracy under AutoAttack (L∞)\n\nAutoAttack's standard suite (Croce & Hein 2020; \
         `nrpm eval --attack autoattack`): APGD-CE, then APGD-T (9 target classes), FAB-T and \
         the gradient-free Square attack (5000 queries), each on the images the earlier ones \
         left robust; an image counts only if no attack broke it. On the first {n} test images \
         (fewer than above: the suite is costly), so compare a variant with its own clean \
         column. Where AutoAttack ends below PGD at the same ε, PGD overstated the robustness.\n\n\
         {table}",
        n = c.autoattack_n,
        table = table.render()
    )
}

/// How a variant compares with LPM under one attack, budget by budget (ε > 0).
#[derive(Debug, Default, PartialEq)]
struct Comparison {
    /// Budgets where the variant's interval lies wholly above LPM's.
    above: usize,
    /// Budgets where the intervals overlap.
    overlap: usize,
    /// Budgets where it lies wholly below.
    below: usize,
    /// `(ε, points)` of the largest difference variant − LPM.
    best: Option<(f64, f64)>,
}

fn compare(v: &Variant, lpm: &Variant, attack: AttackKind) -> Comparison {
    let mut c = Comparison::default();
    for (p, q) in attack
        .points(v)
        .iter()
        .zip(attack.points(lpm))
        .filter(|(p, _)| p.eps > 0.0)
    {
        let (a, b) = (&p.accuracy, &q.accuracy);
        match (a.lo > b.hi, a.hi < b.lo) {
            (true, _) => c.above += 1,
            (_, true) => c.below += 1,
            _ => c.overlap += 1,
        }
        let diff = a.percent - b.percent;
        if c.best.is_none_or(|(_, d)| diff > d) {
            c.best = Some((p.eps, diff));
        }
    }
    c
}

/// One bullet per reprogrammed variant, computed from the figures.
fn reading(r: &DemoReport) -> String {
    let lpm = &r.variants[0];
    let mut out = String::from(
        "## Reading (computed from the tables)\n\n\
         \"Above\"/\"below\" means the 95 % intervals do not overlap; this ignores that all \
         variants are tested on the same images, so it is conservative.\n\n",
    );
    for v in &r.variants[1..] {
        let _ = write!(
            out,
            "- **{}**: clean {} (LPM {})",
            v.name,
            pct(v.clean.percent),
            pct(lpm.clean.percent)
        );
        for attack in AttackKind::ALL {
            let c = compare(v, lpm, attack);
            let _ = write!(
                out,
                "; {}: above/overlapping/below LPM at {}/{}/{} budgets",
                attack.label(&r.config),
                c.above,
                c.overlap,
                c.below
            );
            if let Some((eps, d)) = c.best {
                let _ = write!(out, ", largest difference {d:+.1} points at ε = {eps}");
            }
        }
        out += ".\n";
    }
    out
}

/// λ before and after Paradigm 2: table and chart.
fn lambda_section(r: &DemoReport) -> String {
    let t = &r.paradigm2_training;
    let mut table = Table::new(["layer", "λ before", "λ after Paradigm 2"]);
    for ((k, b), (_, a)) in t.before.lambdas.iter().zip(&t.after.lambdas) {
        table.row([k.clone(), format!("{b:.4}"), format!("{a:.4}")]);
    }
    format!(
        "## λ per layer (Paradigm 2)\n\nλ = 1 is LPM, λ = 0 pure NRPM. The paper's Paradigm 2 \
         on the full MNIST training set learned (0.459, 0.033, 0.131) (Fig. 2).\n\n{}\n\
         ![λ per layer before and after Paradigm 2](lambdas.svg)\n",
        table.render()
    )
}

/// The influence curves: what was moved, and each estimator's largest output change.
fn influence_section(r: &DemoReport) -> String {
    let c = &r.influence;
    let mut table = Table::new(["estimator", "max |output change| over the grid"]);
    for curve in &c.curves {
        table.row([
            curve.name.clone(),
            format!("{:.4}", curve.gross_error_sensitivity),
        ]);
    }
    let (lo, hi) = c.curves[0]
        .points
        .first()
        .zip(c.curves[0].points.last())
        .map_or((0.0, 0.0), |(a, b)| (a.value, b.value));
    format!(
        "## Influence of one term on one neuron\n\n\
         Neuron {o} of `{layer}` of the trained LPM model, on test image {i} (label {label}): its \
         D = {d} terms t_d = x_d·W[o, d]. Term j = {j} (pixel value {px:.3}, weight {w:.4}, \
         t_j = {t:.4}), the largest in magnitude, is moved over [{lo:.3}, {hi:.3}] while the \
         others stay; the plot shows each estimator's output (bias left out). LPM follows the \
         term one for one (unbounded influence); NRPM damps it; LAD (the K → ∞ limit) is \
         bounded — here it does not move at all, since {zeros} of the {d} terms are 0 \
         (background pixels) and hold the median at 0. This is the robustness the paper's \
         theory is about: one term moved far. An L∞ attack moves every term a little, which \
         bounded influence does not rule out (the tables above measure that).\n\n{table}\n\
         ![influence curve of LPM vs NRPM](influence.svg)\n",
        o = c.neuron,
        layer = c.layer,
        i = c.image,
        label = c.label,
        d = c.terms,
        j = c.term,
        px = c.pixel,
        w = c.weight,
        t = c.value,
        zeros = c.zero_terms,
        table = table.render(),
    )
}

/// Why each setting is what it is.
fn rationale(r: &DemoReport) -> String {
    let c = &r.config;
    let steps = c.paradigm2.epochs * r.train_data.1.div_ceil(c.paradigm2.batch_size);
    format!(
        "## Why these settings\n\n\
         - **Model**: the authors' MLP has no activation between its layers, so the LPM model is \
         an affine classifier; trained on the shipped subset only, so the demo needs nothing \
         outside the repository (the paper's 90.8 % clean accuracy used all 60 000 images).\n\
         - **NRPM: L1, K = {k}, ε = {eps}**: the defaults of the authors' `mnist_mlp.py`. On the \
         authors' checkpoint (docs/RESULTS.md) this setting keeps part of its FGSM gain under \
         PGD-20, while K = 3, ε = 1e-3 loses it (PGD-20 at ε = 0.1: 18.8 % vs 5.5 %, LPM 5.1 %).\n\
         - **Paradigm 1 grid** {{{grid}}}: the range where Table 1 trades a little clean accuracy \
         for robustness; it includes Paradigm 2's starting λ = {l0}, so the effect of learning λ \
         can be read off the tables.\n\
         - **Paradigm 2**: λ = sigmoid(θ), the authors' learnable path; FGSM ε = {p2eps} with \
         clean + adversarial loss, momentum {mom}, batch {batch}, as in `mnist_mlp.py`. The \
         authors' lr 0.001 is tuned for 10 epochs × 938 steps on 60 000 images; this run has \
         {steps} steps, so lr = {lr} is used (with 0.001, λ of fc2 and fc3 hardly move in so \
         few steps: docs/RESULTS.md, section \"nrpm demo\").\n\
         - **Attacks**: FGSM is the attack of the paper's Table 1; PGD-{pgd} (α = 2.5·ε/steps, uniform \
         random start) is added because one-step FGSM overstates NRPM's robustness, and PGD-{pgd} \
         with gradients from the LPM layers because NRPM's weights 1/(r + ε) with a small ε can \
         make input gradients uninformative (gradient masking; docs/RESULTS.md, \"Adaptive \
         check\"). Robust accuracy is counted as the authors count it: an image counts only if \
         it is classified correctly before and after the attack.\n",
        k = c.nrpm_k,
        eps = c.nrpm_eps,
        grid = join(&c.paradigm1_lambdas),
        l0 = c.paradigm2_lambda0,
        p2eps = c.paradigm2_fgsm_eps,
        mom = c.paradigm2.momentum,
        batch = c.paradigm2.batch_size,
        lr = c.paradigm2.lr,
        pgd = c.pgd_steps,
    )
}

/// Every setting as a two-column table.
fn settings(r: &DemoReport) -> String {
    let c = &r.config;
    let run = |s: &crate::demo::SgdRun| {
        format!(
            "{} epochs, batch {}, SGD lr {}, momentum {}, no weight decay",
            s.epochs, s.batch_size, s.lr, s.momentum
        )
    };
    let rows = [
        ("seed", c.seed.to_string()),
        (
            "training images",
            format!("{} ({})", r.train_data.1, r.train_data.0),
        ),
        (
            "test images",
            format!("{} ({})", r.test_data.1, r.test_data.0),
        ),
        (
            "LPM training",
            format!("{}, clean cross-entropy", run(&c.scratch)),
        ),
        (
            "NRPM",
            format!(
                "L1, K = {}, ε = {}, layers fc1, fc2, fc3",
                c.nrpm_k, c.nrpm_eps
            ),
        ),
        ("Paradigm 1 λ", join(&c.paradigm1_lambdas)),
        (
            "Paradigm 2",
            format!(
                "λ₀ = {}, {}, FGSM ε = {}, clean + adversarial loss",
                c.paradigm2_lambda0,
                run(&c.paradigm2),
                c.paradigm2_fgsm_eps
            ),
        ),
        ("budgets ε (L∞)", join(&c.budgets)),
        (
            "PGD",
            format!("{} steps, α = 2.5·ε/steps, random start", c.pgd_steps),
        ),
        ("evaluation batch", c.eval_batch.to_string()),
    ];
    let mut table = Table::new(["setting", "value"]);
    for (k, v) in rows {
        table.row([k.to_string(), v]);
    }
    format!("## Settings\n\n{}", table.render())
}

/// The per-epoch histories of both trainings.
fn training(r: &DemoReport) -> String {
    format!(
        "## Training\n\nLPM from scratch:\n\n{}\nParadigm 2 (λ only; train accuracy is on the FGSM examples):\n\n{}",
        epochs_table(&r.lpm_training.history),
        epochs_table(&r.paradigm2_training.history)
    )
}

fn epochs_table(history: &[EpochReport]) -> String {
    let mut table = Table::new([
        "epoch",
        "lr",
        "loss",
        "train acc (%)",
        "test acc (%)",
        "λ",
        "seconds",
    ]);
    for e in history {
        let lambdas: Vec<String> = e
            .lambdas
            .iter()
            .map(|(k, l)| format!("{k} {l:.3}"))
            .collect();
        table.row([
            e.epoch.to_string(),
            e.lr.to_string(),
            format!("{:.4}", e.loss),
            format!("{:.2}", e.train_acc),
            format!("{:.2}", e.test_acc),
            lambdas.join(", "),
            format!("{:.1}", e.seconds),
        ]);
    }
    table.render()
}

/// Wall time per stage, the machine, and the command.
fn timings(r: &DemoReport, command: &str) -> String {
    let mut table = Table::new(["stage", "seconds"]);
    for s in &r.timings {
        table.row([s.stage.clone(), format!("{:.1}", s.seconds)]);
    }
    table.row(["total".to_string(), format!("{:.1}", r.seconds)]);
    let load = |l: Option<[f64; 3]>| {
        l.map_or("unknown".to_string(), |l| {
            format!("{:.2} {:.2} {:.2}", l[0], l[1], l[2])
        })
    };
    format!(
        "## Timings\n\n{}\nMachine: {}, {} threads; load average (1, 5, 15 min) {} at the start, {} at the end \
         (other work on the machine slows the stages down).\n\n## Command\n\n```sh\n{command}\n```\n\n\
         `cargo run --release` with no arguments runs `nrpm demo` with its defaults (`--out report --seed 0`).\n",
        table.render(),
        r.machine.description,
        r.machine.threads,
        load(r.machine.load_before),
        load(r.machine.load_after),
    )
}

fn join(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn pct(v: f64) -> String {
    format!("{v:.1} %")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::tables::tests::{sample_report, variant};

    #[test]
    fn comparison_counts_disjoint_intervals() {
        let lpm = variant("LPM", None, 1.0, &[9, 5, 0]);
        let better = variant("P1", Some(1), 0.7, &[9, 5, 10]);
        let c = compare(&better, &lpm, AttackKind::Pgd);
        assert_eq!((c.above, c.overlap, c.below), (1, 1, 0));
        assert_eq!(c.best, Some((0.3, 100.0)));
        let worse = compare(&lpm, &better, AttackKind::Fgsm);
        assert_eq!((worse.above, worse.below), (0, 1));
    }

    #[test]
    fn page_has_every_section_and_image() {
        let md = markdown(&sample_report(), "nrpm demo --quick");
        for needle in [
            "# NRPM demo",
            "## Accuracy under FGSM",
            "## Accuracy under PGD-3",
            "![FGSM accuracy vs ε](robust_fgsm.svg)",
            "(robust_pgd.svg)",
            "(lambdas.svg)",
            "(influence.svg)",
            "## Why these settings",
            "## Accuracy under AutoAttack",
            "## Certification: lower bounds beside attacks",
            "(certified_smoothing.svg)",
            "| LPM | crown | 0.01 | 60.0 [26.2, 87.8] | 70.0 [34.8, 93.3] |",
            "## Timings",
            "nrpm demo --quick",
            "50.0 [18.7, 81.3]",
        ] {
            assert!(md.contains(needle), "missing {needle}");
        }
    }
}
