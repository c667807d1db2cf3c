//! The reproduction as a Markdown document a person can read: the command, the machine and
//! the load, one section per experiment (settings, training, tables with intervals, the
//! paper's numbers and the differences), the list of differences over 2 points, what was not
//! run or not compared, and a hand-written analysis section that survives regeneration.
//!
//! ```text
//! | row            | clean             | 0.05              | …
//! | LPM (vanilla)  | 91.2 [89.3, 92.9] | 49.9 [46.8, 53.0] | …    ours: k/n, 95 % interval
//! | ↳ paper        | 90.8              | 31.8              | …
//! | ↳ Δ            | +0.4              | **+18.1**         | …    bold when |Δ| > 2 points
//! ```

use serde_json::Value;

use crate::reproduce::table::{ResultTable, Row, NOTABLE_DIFFERENCE};
use crate::reproduce::{status_word, ExperimentReport, Report, Status};
use nrpm::attacks::checks::{Check, Verdict};
use nrpm::report::markdown::Table;
use nrpm::report::stats::two_proportion_p_value;

/// Opens the hand-written analysis block.
pub const ANALYSIS_START: &str = "<!-- analysis:start (hand-written; kept when regenerated) -->";
/// Closes it.
pub const ANALYSIS_END: &str = "<!-- analysis:end -->";

/// The whole report as Markdown (with an empty analysis block).
pub fn markdown(report: &Report) -> String {
    let mut out = header(report);
    out += &summary(report);
    for e in &report.experiments {
        out += &experiment(e);
    }
    out += &training_alone(report);
    out += &differences(report);
    out += &not_run(report);
    out += &format!(
        "\n## Analysis of the differences (hand-written)\n\n{ANALYSIS_START}\n_No analysis \
         written yet: one paragraph per difference listed above — its cause, or \
         \"unexplained\"._\n{ANALYSIS_END}\n"
    );
    out
}

/// `generated` with its analysis block replaced by the one in `existing` (a previous version
/// of the same file), so hand-written analysis survives a rerun.
///
/// ```
/// use nrpm::reproduce::render::{keep_analysis, ANALYSIS_END, ANALYSIS_START};
/// let old = format!("old numbers\n{ANALYSIS_START}\nmy words\n{ANALYSIS_END}\n");
/// let new = format!("new numbers\n{ANALYSIS_START}\nplaceholder\n{ANALYSIS_END}\n");
/// let merged = keep_analysis(&new, Some(&old));
/// assert!(merged.starts_with("new numbers") && merged.contains("my words"));
/// assert!(!merged.contains("placeholder"));
/// ```
pub fn keep_analysis(generated: &str, existing: Option<&str>) -> String {
    let block = |s: &str| {
        let a = s.find(ANALYSIS_START)?;
        let b = s[a..].find(ANALYSIS_END)? + a + ANALYSIS_END.len();
        Some((a, b))
    };
    match (
        existing.and_then(|s| block(s).map(|r| (s, r))),
        block(generated),
    ) {
        (Some((old, (a0, b0))), Some((a, b))) => {
            format!("{}{}{}", &generated[..a], &old[a0..b0], &generated[b..])
        }
        _ => generated.to_string(),
    }
}

fn header(r: &Report) -> String {
    let minutes = r.seconds / 60.0;
    format!(
        "# Reproduction of the paper's experiments\n\n\
         Written by `nrpm reproduce` (nrpm {}); every number below comes from that run — rerun \
         the command rather than edit them. Only the last section, between the analysis \
         markers, is written by hand, and the command keeps it when it rewrites this file.\n\n\
         - **Command:** `{}`\n\
         - **Machine:** {} ({} rayon threads); started {}; wall time {:.1} min in all\n\
         - **Paper numbers:** `{}`, copied by hand from the digest `PAPER.md` (each table cites \
         its section)\n\
         - **Counting:** accuracy = images classified correctly before *and* after the attack, \
         over the first n test images (the authors' way); `[lo, hi]` is the 95 % Clopper–Pearson \
         interval; Δ = ours − paper in points, **bold** when |Δ| > {NOTABLE_DIFFERENCE}\n",
        r.nrpm_version, r.command, r.machine, r.threads, r.started, minutes, r.paper_source
    )
}

fn summary(r: &Report) -> String {
    let mut t = Table::new([
        "experiment",
        "what",
        "status",
        "wall time",
        "load (start → end)",
    ]);
    for e in &r.experiments {
        t.row([
            format!("[{}](#{})", e.name, anchor(e)),
            e.title.clone(),
            status_word(&e.status).into(),
            wall_time(e),
            load(e),
        ]);
    }
    format!("\n## Summary\n\n{}", t.render())
}

/// The GitHub anchor of an experiment's heading.
fn anchor(e: &ExperimentReport) -> String {
    heading(e)
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn heading(e: &ExperimentReport) -> String {
    format!("{} — {}", e.name, e.title)
}

/// This run's wall time, plus the epochs of trainings resumed from an earlier run's
/// checkpoints (`--reuse-checkpoints`).
fn wall_time(e: &ExperimentReport) -> String {
    let earlier: f64 = e
        .body
        .training
        .iter()
        .filter(|t| !t["resumed_from_checkpoint"].is_null())
        .map(|t| t["seconds_all_epochs"].as_f64().unwrap_or(0.0))
        .sum();
    match earlier > 0.0 {
        true => format!(
            "{} (+ {} of training epochs, checkpoints reused)",
            duration(e.seconds),
            duration(earlier)
        ),
        false => duration(e.seconds),
    }
}

fn duration(s: f64) -> String {
    match s < 120.0 {
        true => format!("{s:.1} s"),
        false => format!("{:.1} min", s / 60.0),
    }
}

/// 1-minute load average at the start and the end.
fn load(e: &ExperimentReport) -> String {
    match e.load {
        [Some(a), Some(b)] => format!("{:.1} → {:.1}", a[0], b[0]),
        _ => "unknown".into(),
    }
}

fn experiment(e: &ExperimentReport) -> String {
    let mut out = format!("\n## {}\n\n", heading(e));
    match &e.status {
        Status::NotRun { reason } => return out + &format!("**Not run:** {reason}.\n"),
        Status::Failed { error } => return out + &format!("**Failed:** `{error}`.\n"),
        Status::Ran => {}
    }
    out += &format!(
        "Wall time {}; load average (1 min) {}.\n\n**Settings:** {}\n",
        wall_time(e),
        load(e),
        flatten(&e.body.settings)
    );
    for note in &e.body.notes {
        out += &format!("\n{note}\n");
    }
    for t in &e.body.training {
        out += &training(t);
    }
    for t in &e.body.tables {
        out += &table(t);
    }
    out
}

/// `a.b = 1; c = x` from a JSON object (arrays and scalars printed as JSON).
fn flatten(v: &Value) -> String {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => m.iter().for_each(|(k, v)| {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                walk(&key, v, out)
            }),
            Value::Null => {}
            Value::String(s) => out.push(format!("{prefix} = {s}")),
            other => out.push(format!("{prefix} = {other}")),
        }
    }
    let mut parts = Vec::new();
    walk("", v, &mut parts);
    format!("`{}`", parts.join("; "))
}

/// `81.4 %`, or `not measured` for a missing number.
fn pct(v: &Value) -> String {
    v.as_f64()
        .filter(|x| x.is_finite())
        .map_or("not measured".into(), |x| format!("{x:.1} %"))
}

/// A training record: time, λ and accuracy before → after, and the per-epoch history.
fn training(t: &Value) -> String {
    let lambdas = |s: &Value| {
        s["lambdas"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|p| {
                        format!(
                            "{} {:.4}",
                            p[0].as_str().unwrap_or(""),
                            p[1].as_f64().unwrap_or(f64::NAN)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let mut out = format!(
        "\n**Training:** paradigm {}, {} epochs; wall time of the epochs {} (this run: {}{}). \
         Clean accuracy {} → {}; under the training attack {} → {}. \
         λ before: {}; after: {}.\n\n",
        t["paradigm"].as_str().unwrap_or("?"),
        t["epochs"],
        duration(f(&t["seconds_all_epochs"])),
        duration(f(&t["seconds_this_run"])),
        if t["resumed_from_checkpoint"].is_null() {
            ""
        } else {
            ", resumed from a checkpoint"
        },
        pct(&t["before"]["clean"]),
        pct(&t["after"]["clean"]),
        pct(&t["before"]["robust"]),
        pct(&t["after"]["robust"]),
        lambdas(&t["before"]),
        lambdas(&t["after"]),
    );
    let mut h = Table::new(["epoch", "loss", "train acc %", "test acc %", "λ", "seconds"]);
    for e in t["history"].as_array().into_iter().flatten() {
        h.row([
            e["epoch"].to_string(),
            format!("{:.4}", f(&e["loss"])),
            format!("{:.2}", f(&e["train_acc"])),
            format!("{:.2}", f(&e["test_acc"])),
            lambdas(e),
            format!("{:.1}", f(&e["seconds"])),
        ]);
    }
    out += &h.render();
    out
}

/// One result table: ours with intervals, the paper's row and Δ under each compared row.
fn table(t: &ResultTable) -> String {
    let mut out = format!("\n### {}\n\nAttack: {}", t.title, t.attack);
    if let Some((id, cite)) = &t.paper_table {
        out += &format!("; compared with paper table `{id}` ({cite})");
    }
    out += ".\n\n";
    let with_checks = t.rows.iter().any(|r| !r.checks.is_empty());
    let headers = std::iter::once(format!("row \\ {}", t.budget_label))
        .chain(t.budget_names.iter().cloned())
        .chain(with_checks.then(|| "masking checks".to_string()));
    let mut md = Table::new(headers);
    for r in &t.rows {
        md.row(
            std::iter::once(r.label.clone())
                .chain(r.cells.iter().map(|c| c.accuracy.display()))
                .chain(with_checks.then(|| verdicts(&r.checks))),
        );
        paper_lines(&mut md, r);
    }
    if let Some((label, values)) = &t.reference {
        md.row(
            std::iter::once(format!("↳ reference: {label}"))
                .chain(values.iter().map(|&v| paper_number(v))),
        );
    }
    out += &md.render();
    for r in t.rows.iter().filter(|r| lambda_differs(r)) {
        out += &lambda_line(r);
    }
    for note in &t.notes {
        out += &format!("\n{note}\n");
    }
    out
}

/// A row's gradient-masking checks in one cell: `7/7 pass`, or the count and every warning
/// with the figure behind it.
fn verdicts(checks: &[Check]) -> String {
    let warned: Vec<String> = checks
        .iter()
        .filter(|c| c.verdict == Verdict::Warn)
        .map(|c| format!("**warn** {}: {}", c.name, c.figure))
        .collect();
    let passed = checks.len() - warned.len();
    match warned.is_empty() {
        true => format!("{passed}/{} pass", checks.len()),
        false => format!("{passed}/{} pass; {}", checks.len(), warned.join("; ")),
    }
}

/// The paper's row and Δ under a compared row.
fn paper_lines(md: &mut Table, r: &Row) {
    let Some(name) = &r.paper_row else { return };
    let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or(String::new(), f);
    md.row(
        std::iter::once(format!("↳ paper ({name})"))
            .chain(r.cells.iter().map(|c| opt(c.paper, &paper_number))),
    );
    md.row(
        std::iter::once("↳ Δ ours − paper".to_string()).chain(r.cells.iter().map(|c| {
            opt(c.difference, &|d| match d.abs() > NOTABLE_DIFFERENCE {
                true => format!("**{d:+.1}**"),
                false => format!("{d:+.1}"),
            })
        })),
    );
}

/// A paper number as printed there: one decimal, or two where it has two (`49.0`, `41.46`).
fn paper_number(v: f64) -> String {
    match ((v * 10.0).round() - v * 10.0).abs() < 1e-6 {
        true => format!("{v:.1}"),
        false => format!("{v:.2}"),
    }
}

/// Whether a compared row's λ differs from the paper's beyond f32 resolution (learned λ; fixed
/// ones agree). An all-LPM model has no λ (it is 1 everywhere) and is not listed.
fn lambda_differs(r: &Row) -> bool {
    let Some(paper) = &r.paper_lambda else {
        return false;
    };
    !r.lambdas.is_empty()
        && (paper.len() != r.lambdas.len()
            || paper
                .iter()
                .zip(&r.lambdas)
                .any(|(p, (_, l))| (p - l).abs() > LAMBDA_RESOLUTION))
}

/// λ values closer than this are equal: λ is stored in f32 (0.9 reads back as 0.89999998).
const LAMBDA_RESOLUTION: f64 = 1e-6;

/// `λ (fc1, fc2, fc3): ours 0.4586, 0.0334, 0.1406; paper 0.459, 0.033, 0.131`.
fn lambda_line(r: &Row) -> String {
    let keys: Vec<&str> = r.lambdas.iter().map(|(k, _)| k.as_str()).collect();
    let ours: Vec<String> = r.lambdas.iter().map(|(_, l)| format!("{l:.4}")).collect();
    let paper: Vec<String> = r
        .paper_lambda
        .iter()
        .flatten()
        .map(|l| format!("{l}"))
        .collect();
    format!(
        "\n{}: λ ({}) ours {}; paper {}.\n",
        r.label,
        keys.join(", "),
        ours.join(", "),
        paper.join(", ")
    )
}

fn differences(r: &Report) -> String {
    let mut out = format!(
        "\n## Differences larger than {NOTABLE_DIFFERENCE} points (generated)\n\n{} cells differ \
         from the paper by more than {NOTABLE_DIFFERENCE} points; the analysis section below \
         explains them.\n\n",
        r.differences.len()
    );
    if r.differences.is_empty() {
        return out;
    }
    let mut t = Table::new([
        "experiment",
        "our row",
        "paper row",
        "budget",
        "ours",
        "paper",
        "Δ",
    ]);
    for d in &r.differences {
        t.row([
            d.experiment.clone(),
            d.row.clone(),
            d.paper_row.clone(),
            d.budget.clone(),
            format!("{:.1}", d.ours),
            format!("{}", d.paper),
            format!("{:+.1}", d.difference),
        ]);
    }
    out += &t.render();
    out
}

/// Paradigm 3 beside the LPM model fine-tuned with its exact recipe (`mlp-lpm-at`): each
/// attack and budget both measured, the difference in points, and a two-sided two-proportion
/// test (conservative for the paired images). Empty unless both experiments ran.
fn training_alone(r: &Report) -> String {
    let ran = |name: &str| {
        r.experiments
            .iter()
            .find(|e| e.name == name && e.status == Status::Ran)
    };
    let (Some(p3), Some(at)) = (ran("mlp-p3"), ran("mlp-lpm-at")) else {
        return String::new();
    };
    let mut md = Table::new([
        "attack",
        "budget",
        "Paradigm 3",
        "LPM + same training",
        "Δ",
        "p",
    ]);
    let (mut significant, mut cells) = (0, 0);
    for (t3, ta) in p3.body.tables.iter().zip(&at.body.tables) {
        let (Some(r3), Some(ra)) = (t3.rows.first(), ta.rows.first()) else {
            continue;
        };
        for ((c3, ca), name) in r3.cells.iter().zip(&ra.cells).zip(&t3.budget_names) {
            let p = two_proportion_p_value(&c3.accuracy, &ca.accuracy).unwrap_or(f64::NAN);
            let delta = c3.accuracy.percent - ca.accuracy.percent;
            cells += 1;
            let star = if p < 0.05 {
                significant += 1;
                " *"
            } else {
                ""
            };
            md.row([
                t3.title.clone(),
                name.clone(),
                c3.accuracy.display(),
                ca.accuracy.display(),
                format!("{delta:+.1}{star}"),
                format!("{p:.2e}"),
            ]);
        }
    }
    format!(
        "\n## What NRPM adds beyond adversarial training (generated)\n\nParadigm 3 \
         (`mlp-p3`) against the same weights fine-tuned with its exact recipe but every layer \
         LPM (`mlp-lpm-at`). Δ = Paradigm 3 − LPM, in points; p is the two-sided pooled \
         two-proportion test (the images are the same for both, so it is conservative); * marks \
         p < 0.05. {significant} of {cells} differences are significant at that level.\n\n{}",
        md.render()
    )
}

fn not_run(r: &Report) -> String {
    let mut out = "\n## Not run, and why\n\n".to_string();
    for e in &r.experiments {
        if let Status::NotRun { reason } = &e.status {
            out += &format!("- `{}` ({}): {reason}.\n", e.name, e.title);
        }
    }
    for item in &r.not_run {
        out += &format!("- {}: {}\n", item.what, item.why);
    }
    out += "\n## Not compared: the digest lacks the paper's numbers\n\n";
    for m in &r.not_compared {
        out += &format!("- {} ({})\n", m.what, m.cite);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn row(lambdas: &[f64], paper: &[f64]) -> Row {
        let mut r = Row::new("r", Value::Null, &[], Vec::new());
        r.lambdas = lambdas
            .iter()
            .enumerate()
            .map(|(i, &l)| (format!("fc{}", i + 1), l))
            .collect();
        r.paper_lambda = Some(paper.to_vec());
        r
    }

    #[test]
    fn only_learned_lambdas_that_differ_are_listed() {
        let f32_09 = f64::from(0.9f32);
        assert!(!lambda_differs(&row(&[f32_09; 3], &[0.9; 3])));
        assert!(!lambda_differs(&row(&[], &[1.0; 3])), "LPM has no λ");
        assert!(lambda_differs(&row(
            &[0.4591, 0.0331, 0.1398],
            &[0.459, 0.033, 0.131]
        )));
        assert!(lambda_differs(&row(&[0.5, 0.5], &[0.5; 3])));
        let line = lambda_line(&row(&[0.25], &[0.5]));
        assert!(line.contains("λ (fc1) ours 0.2500; paper 0.5"), "{line}");
    }
}
