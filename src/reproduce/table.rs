//! Result tables: accuracies with 95 % Clopper–Pearson intervals, each beside the paper's
//! number where it has one, and the function that measures one row.
//!
//! ```text
//! cell j of a row:  k_j of n images correct (clean, or correct before AND after the attack)
//!                   accuracy = 100·k_j/n,  95 % interval [lo, hi] (Clopper–Pearson)
//!                   Δ_j      = accuracy − paper_j            (points; only where the paper has one)
//! budget 0          = the clean accuracy (no attack runs)
//! ```

use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::reproduce::paper::PaperTable;
use nrpm::attacks::checks::{self, Check};
use nrpm::attacks::{self, Attack, EvalOptions, PgdSettings, StepSize};
use nrpm::data::Dataset;
use nrpm::error::Result;
use nrpm::models::Model;
use nrpm::progress::Progress;
use nrpm::report::stats::Proportion;

/// A difference from the paper larger than this (points) is listed and must be explained.
pub const NOTABLE_DIFFERENCE: f64 = 2.0;

/// One measured accuracy, and the paper's number where it has one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// The budget (ε; pixels for L0; 0 = clean).
    pub budget: f64,
    /// k of n correct, in %, with the 95 % interval.
    pub accuracy: Proportion,
    /// The paper's accuracy (%) at this budget.
    pub paper: Option<f64>,
    /// `accuracy − paper` (points).
    pub difference: Option<f64>,
    /// Whether the paper's number lies in our 95 % interval.
    pub paper_in_interval: Option<bool>,
}

/// One model (one setting) measured at every budget of a table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// What was measured (e.g. `Paradigm 1, λ = 0.7`).
    pub label: String,
    /// The paper row it is compared with (`Table 1: Vanilla (LPM)`), if any.
    pub paper_row: Option<String>,
    /// The model's setting: K, ε_irls, λ, layers, checkpoint.
    pub settings: Value,
    /// `(layer, λ)` of every NRPM layer, as evaluated.
    pub lambdas: Vec<(String, f64)>,
    /// The paper's λ per layer for this row.
    pub paper_lambda: Option<Vec<f64>>,
    /// One cell per budget.
    pub cells: Vec<Cell>,
    /// Wall time of this row's evaluation.
    pub seconds: f64,
    /// The gradient-masking checks of this row's AutoAttack run (tables whose plan asks for
    /// them; empty otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<Check>,
}

/// A table of rows measured under one attack at the same budgets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResultTable {
    /// Heading.
    pub title: String,
    /// The attack, in words (`FGSM L∞`, `PGD-20 L∞, α = ε/4, random start`).
    pub attack: String,
    /// Header of the budget columns (`ε`, `ε·255`, `pixels`).
    pub budget_label: String,
    /// The budgets (0 = clean).
    pub budgets: Vec<f64>,
    /// Budgets as printed in the header (`0.05`, `8/255`).
    pub budget_names: Vec<String>,
    /// The paper table compared with: its id and citation.
    pub paper_table: Option<(String, String)>,
    /// The rows.
    pub rows: Vec<Row>,
    /// A paper row shown for reference only (its settings differ), `(label, values)`.
    pub reference: Option<(String, Vec<f64>)>,
    /// Remarks printed under the table.
    pub notes: Vec<String>,
}

/// How the attacks of a table are made: a name for [`Attack::from_name`], PGD's step count
/// and step size rule.
#[derive(Clone, Debug, PartialEq)]
pub struct AttackSpec {
    /// `fgsm`, `pgd-linf`, `l2`, `l1`, `l0`.
    pub name: &'static str,
    /// PGD steps (ignored by one-step attacks).
    pub steps: usize,
    /// PGD step size at each budget.
    pub alpha: StepSize,
}

impl AttackSpec {
    /// A one-step attack (FGSM, the authors' L2/L1/L0).
    pub fn one_step(name: &'static str) -> Self {
        Self {
            name,
            steps: 1,
            alpha: StepSize::Madry,
        }
    }

    /// The attack in words, for a table header.
    pub fn describe(&self) -> String {
        match self.name {
            "fgsm" => "FGSM L∞ (one step ε·sign(∇))".into(),
            "pgd-linf" => {
                let alpha = match self.alpha {
                    StepSize::Absolute(a) => format!("{:.0}/255", a * 255.0),
                    rule => rule.to_string(),
                };
                format!("PGD-{} L∞, α = {alpha}, uniform random start", self.steps)
            }
            "l2" | "l1" => format!(
                "the authors' one-step {} attack (‖δ‖ = ε)",
                self.name.to_uppercase()
            ),
            "l0" => "the authors' L0 attack (k pixels with the largest gradient × 6)".into(),
            "autoattack" => "AutoAttack, standard version, L∞ (APGD-CE → APGD-T → FAB-T → Square; \
                100 steps, 9 target classes, 5000 queries, 1 restart; each attack only on the \
                images the earlier ones left robust)"
                .into(),
            other => other.into(),
        }
    }

    /// The attacks at the non-zero budgets (a zero-budget FGSM when there are none, so the
    /// clean accuracy is still measured).
    fn attacks(&self, budgets: &[f64]) -> Result<Vec<Attack>> {
        let positive: Vec<f64> = budgets.iter().copied().filter(|b| *b > 0.0).collect();
        if positive.is_empty() {
            return Ok(vec![Attack::Fgsm { eps: 0.0 }]);
        }
        positive
            .iter()
            .map(|&b| {
                let pgd = PgdSettings {
                    steps: self.steps,
                    step_size: self.alpha,
                    random_start: true,
                };
                Attack::from_name(self.name, b, pgd)
            })
            .collect()
    }
}

/// What a table measures: one attack at a list of budgets (0 = clean), with the model's own
/// gradients (white box) or with those of the same weights with every layer LPM (BPDA-style:
/// the attacker differentiates the linear layers instead of the IRLS steps).
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The attack.
    pub spec: AttackSpec,
    /// The budgets.
    pub budgets: Vec<f64>,
    /// Take the attack's gradients from the LPM version of the model.
    pub lpm_gradients: bool,
    /// Only the first this many of the run's test images (all when `None`).
    pub images: Option<usize>,
    /// Run the gradient-masking checks ([`checks::all`]) on the AutoAttack run at this budget.
    pub masking_checks: Option<f64>,
}

impl Plan {
    /// `spec` at `budgets`, white box.
    pub fn new(spec: AttackSpec, budgets: &[f64]) -> Self {
        Self {
            spec,
            budgets: budgets.to_vec(),
            lpm_gradients: false,
            images: None,
            masking_checks: None,
        }
    }

    /// The same plan on the first `n` test images only.
    pub fn on_first(mut self, n: usize) -> Self {
        self.images = Some(n);
        self
    }

    /// The same plan (AutoAttack) with the gradient-masking checks at `budget`.
    pub fn with_masking_checks(mut self, budget: f64) -> Self {
        self.masking_checks = Some(budget);
        self
    }

    /// The same plan with gradients from the LPM layers.
    pub fn with_lpm_gradients(mut self) -> Self {
        self.lpm_gradients = true;
        self
    }

    /// The attack in words.
    pub fn describe(&self) -> String {
        let mut text = self.spec.describe();
        if self.lpm_gradients {
            text += "; gradients from the same weights with every layer LPM (BPDA-style), the \
                reprogrammed model classifies";
        }
        if let Some(n) = self.images {
            text += &format!("; on the first {n} test images");
        }
        if let Some(b) = self.masking_checks {
            text += &format!(
                "; gradient-masking checks (`nrpm eval --masking-checks`) on the run at ε = {b}"
            );
        }
        text
    }
}

/// What [`measure`] found for one model under one plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Measured {
    /// One proportion per budget (`0` = clean).
    pub accuracy: Vec<Proportion>,
    /// Wall time, checks included.
    pub seconds: f64,
    /// The gradient-masking checks, when the plan asks for them.
    pub checks: Vec<Check>,
}

/// Accuracy at each budget of `plan` (`0` = clean) of `model` on `data` (its first
/// `plan.images`), and the gradient-masking checks where the plan asks for them.
///
/// # Errors
/// Attack and model errors (see [`attacks::evaluate_attacks`]); [`nrpm::Error::Config`] for
/// checks on a plan that is not AutoAttack or at a budget it does not have.
pub fn measure(
    model: &Model<f32>,
    data: &Dataset,
    plan: &Plan,
    options: &EvalOptions,
    progress: &mut dyn Progress,
) -> Result<Measured> {
    let clock = Instant::now();
    let subset;
    let data = match plan.images {
        Some(k) if k < data.len() => {
            subset = data.first(k);
            &subset
        }
        _ => data,
    };
    let budgets = &plan.budgets;
    let attacks = plan.spec.attacks(budgets)?;
    let mut checks = Vec::new();
    let results = match (plan.lpm_gradients, plan.masking_checks) {
        (false, None) => attacks::evaluate_attacks(model, data, &attacks, options, progress)?,
        (true, None) => {
            let source = model.lpm_twin();
            attacks::evaluate_transfer(model, &source, data, &attacks, options, progress)?
        }
        (_, Some(at)) => {
            let runs = attacks::evaluate_autoattack(model, data, &attacks, options, progress)?;
            let run = runs
                .iter()
                .find(|r| r.result.attack.budget() == at)
                .ok_or_else(|| {
                    nrpm::Error::config("masking-check budget", at, "is not measured")
                })?;
            let surrogate = model.lpm_twin();
            checks = checks::all(model, &surrogate, data, run, options, progress)?;
            runs.into_iter().map(|r| r.result).collect()
        }
    };
    let n = data.len();
    let accuracy = match budgets.iter().any(|&b| b > 0.0) {
        true => attacks::correct_by_budget(budgets, &results)?,
        // Only clean columns: `attacks` is one zero-budget FGSM run for its clean pass.
        false => vec![(results[0].clean_correct, results[0].clean_seconds); budgets.len()],
    }
    .into_iter()
    .map(|(k, _)| Proportion::new(k, n))
    .collect::<Result<Vec<_>>>()?;
    Ok(Measured {
        accuracy,
        seconds: clock.elapsed().as_secs_f64(),
        checks,
    })
}

impl Row {
    /// A row of measured accuracies (no paper numbers yet).
    pub fn new(
        label: impl Into<String>,
        settings: Value,
        budgets: &[f64],
        acc: Vec<Proportion>,
    ) -> Self {
        let cells = budgets
            .iter()
            .zip(acc)
            .map(|(&budget, accuracy)| Cell {
                budget,
                accuracy,
                paper: None,
                difference: None,
                paper_in_interval: None,
            })
            .collect();
        Self {
            label: label.into(),
            paper_row: None,
            settings,
            lambdas: Vec::new(),
            paper_lambda: None,
            cells,
            seconds: 0.0,
            checks: Vec::new(),
        }
    }

    /// Attaches row `key` of `table`: the paper's value, the difference and whether it lies
    /// in our interval, at every budget the paper has.
    pub fn compare(mut self, table: &PaperTable, key: &str) -> Self {
        let Some(row) = table.rows.iter().find(|r| r.key == key) else {
            return self;
        };
        for cell in &mut self.cells {
            if let Some(p) = table.value(key, cell.budget) {
                cell.paper = Some(p);
                cell.difference = Some(cell.accuracy.percent - p);
                // The paper prints one decimal (two for CIFAR): round our interval likewise.
                let (lo, hi) = (cell.accuracy.lo - 0.05, cell.accuracy.hi + 0.05);
                cell.paper_in_interval = Some(lo <= p && p <= hi);
            }
        }
        self.paper_row = Some(format!("{}: {}", table.id, row.label));
        self.paper_lambda = row.lambda.clone();
        self
    }

    /// The cells whose difference from the paper exceeds [`NOTABLE_DIFFERENCE`].
    pub fn notable(&self) -> impl Iterator<Item = &Cell> {
        self.cells
            .iter()
            .filter(|c| c.difference.is_some_and(|d| d.abs() > NOTABLE_DIFFERENCE))
    }
}

impl ResultTable {
    /// An empty table of `plan`, with budget names `fmt(budget)`.
    pub fn new(
        title: impl Into<String>,
        plan: &Plan,
        budget_label: &str,
        fmt: impl Fn(f64) -> String,
    ) -> Self {
        Self {
            title: title.into(),
            attack: plan.describe(),
            budget_label: budget_label.into(),
            budgets: plan.budgets.clone(),
            budget_names: plan.budgets.iter().map(|&b| fmt(b)).collect(),
            paper_table: None,
            rows: Vec::new(),
            reference: None,
            notes: Vec::new(),
        }
    }

    /// The same table, compared with `paper`.
    pub fn with_paper(mut self, paper: &PaperTable) -> Self {
        self.paper_table = Some((paper.id.clone(), paper.cite.clone()));
        self
    }
}

/// Tables being filled together: each with the plan that measures its rows and the paper
/// table its rows are compared with, if any.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sheet {
    /// The tables, in order.
    pub tables: Vec<ResultTable>,
    /// Per table: its plan and paper table.
    pub(crate) plans: Vec<(Plan, Option<PaperTable>)>,
}

impl Sheet {
    /// Adds an empty table measured by `plan` (titled `title`, budgets printed by `fmt`),
    /// compared with `paper` when given; returns it for notes.
    pub fn add(
        &mut self,
        title: impl Into<String>,
        plan: Plan,
        fmt: fn(f64) -> String,
        paper: Option<&PaperTable>,
    ) -> &mut ResultTable {
        let label = if plan.spec.name == "l0" {
            "pixels"
        } else {
            "ε"
        };
        let mut table = ResultTable::new(title, &plan, label, fmt);
        if let Some(p) = paper {
            table = table.with_paper(p);
        }
        self.tables.push(table);
        self.plans.push((plan, paper.cloned()));
        self.tables.last_mut().expect("just pushed")
    }
}

/// `0.05` → `"0.05"`, `0` → `"clean"`.
pub fn plain_budget(b: f64) -> String {
    if b == 0.0 {
        "clean".into()
    } else {
        format!("{b}")
    }
}

/// `8/255` → `"8/255"`, `0` → `"clean"`.
pub fn per_255_budget(b: f64) -> String {
    if b == 0.0 {
        "clean".into()
    } else {
        format!("{}/255", (b * 255.0).round())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reproduce::paper::PaperData;

    #[test]
    fn compare_attaches_paper_numbers_and_differences() {
        let paper = PaperData::builtin();
        let t1 = paper.table("table1").unwrap();
        let budgets = t1.epsilons();
        let acc = [912, 499, 74, 3, 0, 0, 0]
            .iter()
            .map(|&k| Proportion::new(k, 1000).unwrap())
            .collect();
        let row = Row::new("LPM", Value::Null, &budgets, acc).compare(t1, "vanilla");
        assert_eq!(row.cells[1].paper, Some(31.8));
        assert!((row.cells[1].difference.unwrap() - 18.1).abs() < 1e-9);
        assert_eq!(row.cells[0].paper_in_interval, Some(true)); // 90.8 in [89.3, 92.9]
        assert_eq!(row.cells[1].paper_in_interval, Some(false));
        let notable: Vec<f64> = row.notable().map(|c| c.budget).collect();
        assert_eq!(notable, vec![0.05, 0.1]);
        assert_eq!(row.paper_row.as_deref(), Some("table1: Vanilla (LPM)"));
    }

    #[test]
    fn budget_names() {
        assert_eq!(plain_budget(0.0), "clean");
        assert_eq!(plain_budget(0.15), "0.15");
        assert_eq!(per_255_budget(16.0 / 255.0), "16/255");
    }
}
