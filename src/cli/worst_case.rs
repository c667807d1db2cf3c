//! `nrpm merge --worst-case DIR…`: the per-image worst case over `nrpm eval` runs of one model
//! on the same images and budgets, each under another attack (each DIR holds one run's
//! records, sharded or not).

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::cli::sharded::parse_records;
use crate::cli::write_json;
use nrpm::attacks::{worst_case, ImageOutcome, ImageWorstCase};
use nrpm::error::{Error, Result};
use nrpm::records::{self, Header};
use nrpm::report::markdown::Table;
use nrpm::report::write_file;

/// One attack's run: its folder, header and per-image outcomes.
struct Run {
    dir: PathBuf,
    header: Header,
    outcomes: Vec<ImageOutcome>,
}

/// Reads every run, checks they are one model on the same images and budgets, writes
/// `out/report.json` and `out/report.md`.
///
/// # Errors
/// The refusals of [`records::merge`] for each folder; runs that are not `nrpm eval`, or that
/// differ in model, checkpoint, data or budgets; I/O errors.
pub fn run(dirs: &[PathBuf], out: &Path) -> Result<()> {
    let runs = dirs
        .iter()
        .map(|d| read_run(d))
        .collect::<Result<Vec<_>>>()?;
    for r in &runs[1..] {
        check_comparable(&runs[0], r)?;
    }
    let outcomes: Vec<Vec<ImageOutcome>> = runs.iter().map(|r| r.outcomes.clone()).collect();
    let worst = worst_case(&outcomes)?;
    let budgets = runs[0].header.settings["attack"]["budgets"].clone();
    let names: Vec<String> = runs.iter().map(attack_name).collect();
    let per_attack: Vec<Vec<usize>> = runs.iter().map(|r| robust_counts(&r.outcomes)).collect();
    let robust = robust_counts_worst(&worst);
    let n = worst.len();
    let report = json!({
        "command": "merge --worst-case",
        "nrpm_version": env!("CARGO_PKG_VERSION"),
        "model": runs[0].header.settings["model"],
        "data": runs[0].header.settings["data"],
        "budgets": budgets,
        "images": n,
        "clean_correct": worst.iter().filter(|w| w.clean_correct).count(),
        "attacks": runs.iter().zip(&per_attack).map(|(r, c)| json!({
            "dir": r.dir, "attack": r.header.settings["attack"], "robust_correct": c,
        })).collect::<Vec<_>>(),
        "worst_case": { "robust_correct": robust, "broken_by": broken_counts(&worst, runs.len()) },
        "per_image": worst,
    });
    write_json(&out.join("report.json"), &report)?;
    write_file(
        &out.join("report.md"),
        &markdown(&report, &names, &per_attack, &robust, n),
    )?;
    println!(
        "worst case of {} attack(s) on {n} image(s): {}",
        runs.len(),
        out.join("report.md").display()
    );
    Ok(())
}

/// One folder's whole run.
fn read_run(dir: &Path) -> Result<Run> {
    let (header, records, notes) = records::merge(&[dir.to_path_buf()])?;
    for note in notes {
        eprintln!("note: {note}");
    }
    if header.command != "eval" {
        return Err(refusal(
            dir,
            &format!("holds `nrpm {}` records, not `nrpm eval`'s", header.command),
        ));
    }
    let outcomes = parse_records("eval", &records)?;
    Ok(Run {
        dir: dir.to_path_buf(),
        header,
        outcomes,
    })
}

/// Refuses `b` unless it evaluated the model of `a` on the same data at the same budgets.
fn check_comparable(a: &Run, b: &Run) -> Result<()> {
    let (x, y) = (&a.header, &b.header);
    let checks = [
        ("nrpm version", json!(x.nrpm_version), json!(y.nrpm_version)),
        (
            "checkpoint",
            json!(x.checkpoint_sha256),
            json!(y.checkpoint_sha256),
        ),
        ("data", json!(x.data_sha256), json!(y.data_sha256)),
        (
            "model",
            x.settings["model"].clone(),
            y.settings["model"].clone(),
        ),
        (
            "budgets",
            x.settings["attack"]["budgets"].clone(),
            y.settings["attack"]["budgets"].clone(),
        ),
    ];
    match checks.iter().find(|(_, p, q)| p != q) {
        Some((what, p, q)) => Err(refusal(
            &b.dir,
            &format!(
                "differs from {} in its {what} ({q} against {p})",
                a.dir.display()
            ),
        )),
        None => Ok(()),
    }
}

fn refusal(dir: &Path, problem: &str) -> Error {
    Error::Records {
        what: format!("merge --worst-case {}", dir.display()),
        problem: problem.into(),
    }
}

/// The attack of a run, with its source of gradients when not the model.
fn attack_name(r: &Run) -> String {
    let a = &r.header.settings["attack"];
    let name = a["name"].as_str().unwrap_or("attack").to_string();
    match a["gradients_from"].as_str() {
        Some("lpm") => format!("{name} (LPM gradients)"),
        _ => name,
    }
}

/// Images robust at each budget under one attack.
fn robust_counts(outcomes: &[ImageOutcome]) -> Vec<usize> {
    let budgets = outcomes.first().map_or(0, |o| o.robust_correct.len());
    (0..budgets)
        .map(|b| outcomes.iter().filter(|o| o.robust_correct[b]).count())
        .collect()
}

/// Images robust at each budget under every attack.
fn robust_counts_worst(worst: &[ImageWorstCase]) -> Vec<usize> {
    let budgets = worst.first().map_or(0, |w| w.robust_correct.len());
    (0..budgets)
        .map(|b| worst.iter().filter(|w| w.robust_correct[b]).count())
        .collect()
}

/// `[budget][attack]`: images each attack broke first.
fn broken_counts(worst: &[ImageWorstCase], attacks: usize) -> Vec<Vec<usize>> {
    let budgets = worst.first().map_or(0, |w| w.broken_by.len());
    (0..budgets)
        .map(|b| {
            (0..attacks)
                .map(|a| worst.iter().filter(|w| w.broken_by[b] == Some(a)).count())
                .collect()
        })
        .collect()
}

/// The report as Markdown: robust accuracy per attack and in the worst case, per budget.
fn markdown(
    report: &Value,
    names: &[String],
    per_attack: &[Vec<usize>],
    robust: &[usize],
    n: usize,
) -> String {
    let pct = |k: usize| format!("{:.1} ({k})", 100.0 * k as f64 / n as f64);
    let mut t = Table::new(
        std::iter::once("budget".to_string())
            .chain(names.iter().cloned())
            .chain(std::iter::once("worst case".to_string())),
    );
    let budgets = report["budgets"].as_array().cloned().unwrap_or_default();
    for (b, budget) in budgets.iter().enumerate() {
        t.row(
            std::iter::once(budget.to_string())
                .chain(per_attack.iter().map(|c| pct(c[b])))
                .chain(std::iter::once(pct(robust[b]))),
        );
    }
    format!(
        "# nrpm merge --worst-case\n\n{} on {n} images of {}; robust accuracy in % (images). \
         An image counts in the worst case only when every attack left it correct; report.json \
         names, per image and budget, the first attack that broke it.\n\n{}",
        report["model"]["name"].as_str().unwrap_or("model"),
        report["data"]["record"]["name"].as_str().unwrap_or("data"),
        t.render()
    )
}
