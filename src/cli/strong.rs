//! `nrpm eval`'s strong attacks (APGD-CE, APGD-DLR, APGD-T, FAB-T, Square, AutoAttack): their
//! flags, the AutoAttack run with its per-image records and gradient-masking checks, and how
//! they are printed, written to JSON and to Markdown.

use clap::Args;
use serde_json::{json, Value};

use crate::cli::bar::Bar;
use nrpm::attacks::checks::{self, Check};
use nrpm::attacks::{
    evaluate_attacks, evaluate_autoattack, Attack, AutoAttackResult, Ball, EvalOptions, EvalResult,
    StrongSettings,
};
use nrpm::data::Dataset;
use nrpm::error::{Error, Result};
use nrpm::models::{Classifier, Model};
use nrpm::report::markdown::Table;

/// Flags of the strong attacks (refused with the others).
#[derive(Debug, Default, Args)]
pub struct StrongArgs {
    /// The ball of a strong attack: linf or l2 [default: linf].
    #[arg(long)]
    pub norm_ball: Option<String>,
    /// Runs of each strong attack, each from a fresh random start on the images still robust
    /// (APGD-T and FAB-T: per target class) [default: 1].
    #[arg(long)]
    pub restarts: Option<usize>,
    /// Queries of Square [default: 5000].
    #[arg(long)]
    pub queries: Option<usize>,
    /// Target classes of APGD-T and FAB-T (at most the classes − 1) [default: 9].
    #[arg(long)]
    pub targets: Option<usize>,
    /// With --attack autoattack: run the gradient-masking checks (AutoAttack's: randomness,
    /// softmax-like outputs, zero gradients, Square beating the gradient attacks; ours: LPM
    /// gradients beating the white box, accuracy at ε = 1, more steps and restarts) and report
    /// each with pass or warn and its figure.
    #[arg(long)]
    pub masking_checks: bool,
}

impl StrongArgs {
    /// The flags given, by name.
    fn given(&self) -> [(&'static str, bool); 5] {
        [
            ("--norm-ball", self.norm_ball.is_some()),
            ("--restarts", self.restarts.is_some()),
            ("--queries", self.queries.is_some()),
            ("--targets", self.targets.is_some()),
            ("--masking-checks", self.masking_checks),
        ]
    }

    /// Refuses these flags with an attack that is not a strong one, and `--masking-checks`
    /// with one that is not AutoAttack.
    ///
    /// # Errors
    /// [`Error::Flag`] naming the first flag with no effect.
    pub fn refuse_unused(&self, attack: &str) -> Result<()> {
        let strong = Attack::is_strong(attack);
        let autoattack = attack.eq_ignore_ascii_case("autoattack");
        for (flag, given) in self.given() {
            let used = strong && (flag != "--masking-checks" || autoattack);
            if given && !used {
                return Err(Error::Flag {
                    flag: flag.into(),
                    problem: format!(
                        "has no effect with --attack {attack} (see --help for which attacks take it)"
                    ),
                });
            }
        }
        Ok(())
    }

    /// The strong attacks' settings: AutoAttack's standard ones, with `steps` (`--steps`) and
    /// these flags where given.
    ///
    /// # Errors
    /// [`Error::UnknownName`] for a ball other than linf or l2.
    pub fn settings(&self, steps: Option<usize>) -> Result<StrongSettings> {
        let d = StrongSettings::default();
        Ok(StrongSettings {
            ball: match &self.norm_ball {
                Some(b) => b.parse::<Ball>()?,
                None => d.ball,
            },
            steps: steps.unwrap_or(d.steps),
            restarts: self.restarts.unwrap_or(d.restarts),
            queries: self.queries.unwrap_or(d.queries),
            targets: self.targets.unwrap_or(d.targets),
        })
    }
}

/// What a strong evaluation found at each budget: the figures, and for AutoAttack the suite's
/// stages, per-image records and masking checks.
pub struct StrongRun {
    /// One per budget.
    pub results: Vec<EvalResult>,
    /// AutoAttack only: one per budget.
    pub suite: Vec<AutoAttackResult>,
    /// With `--masking-checks`: the checks at each budget.
    pub checks: Vec<Vec<Check>>,
}

/// Runs the strong `attacks` on `model` (through `surrogate`'s gradients, BPDA-style, when it
/// is given), with the AutoAttack suite's records and, when `masking_checks`, its checks.
///
/// # Errors
/// Attack and model errors.
pub fn run(
    model: &Model<f32>,
    surrogate: Option<&Model<f32>>,
    data: &Dataset,
    attacks: &[Attack],
    options: &EvalOptions,
    masking_checks: bool,
) -> Result<StrongRun> {
    checks::with_gradients_from(&attacks[0], model, surrogate, |attacked| {
        run_on(attacked, model, data, attacks, options, masking_checks)
    })
}

/// [`run`] with the classifier to attack already chosen.
fn run_on(
    attacked: &dyn Classifier<f32>,
    model: &Model<f32>,
    data: &Dataset,
    attacks: &[Attack],
    options: &EvalOptions,
    masking_checks: bool,
) -> Result<StrongRun> {
    if !matches!(attacks[0], Attack::AutoAttack { .. }) {
        let results = evaluate_attacks(attacked, data, attacks, options, &mut Bar::default())?;
        return Ok(StrongRun {
            results,
            suite: Vec::new(),
            checks: Vec::new(),
        });
    }
    let suite = evaluate_autoattack(attacked, data, attacks, options, &mut Bar::default())?;
    let mut checks = Vec::new();
    if masking_checks {
        let lpm = model.lpm_twin();
        for r in &suite {
            checks.push(checks::all(
                attacked,
                &lpm,
                data,
                r,
                options,
                &mut Bar::default(),
            )?);
        }
    }
    Ok(StrongRun {
        results: suite.iter().map(|s| s.result.clone()).collect(),
        suite,
        checks,
    })
}

impl StrongRun {
    /// The text printed after the accuracy table: each budget's stages and checks.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for (i, s) in self.suite.iter().enumerate() {
            let stages: Vec<String> = s
                .stages
                .iter()
                .map(|st| {
                    format!(
                        "{} {:.1} % ({:.1} s)",
                        st.attack.name(),
                        st.robust_accuracy,
                        st.seconds
                    )
                })
                .collect();
            out += &format!("ε = {}: {}\n", s.result.attack.budget(), stages.join(" → "));
            for c in self.checks.get(i).into_iter().flatten() {
                out += &format!(
                    "  check {:<15} {}  {}\n",
                    c.name,
                    c.verdict.name(),
                    c.figure
                );
            }
        }
        out
    }

    /// The JSON of `results`: each budget's figures, and for AutoAttack the stages, the
    /// per-image records (index, label, clean_correct, broken_by, adversarial_class) and the
    /// checks.
    pub fn results_json(&self) -> Value {
        let mut out: Vec<Value> = self
            .results
            .iter()
            .map(|r| serde_json::to_value(r).expect("results serialise"))
            .collect();
        for (i, s) in self.suite.iter().enumerate() {
            out[i]["stages"] = json!(s.stages);
            out[i]["images"] = json!(s.images);
            if let Some(c) = self.checks.get(i) {
                out[i]["masking_checks"] = json!(c);
            }
        }
        Value::Array(out)
    }

    /// The Markdown report: the stages of each budget and the masking checks.
    pub fn markdown(&self, title: &str) -> String {
        let mut out = format!("# {title}\n\n");
        let mut table = Table::new(["ε", "clean %", "after APGD-CE", "APGD-T", "FAB-T", "Square"]);
        for s in &self.suite {
            let mut row = vec![
                format!("{}", s.result.attack.budget()),
                format!("{:.1}", s.result.clean_accuracy),
            ];
            row.extend(
                s.stages
                    .iter()
                    .map(|st| format!("{:.1} ({} s)", st.robust_accuracy, seconds(st.seconds))),
            );
            table.row(row);
        }
        out += &table.render();
        for (s, checks) in self.suite.iter().zip(&self.checks) {
            out += &format!(
                "\nGradient-masking checks at ε = {}:\n\n{}",
                s.result.attack.budget(),
                checks::markdown(checks)
            );
        }
        out
    }
}

/// Seconds with one decimal.
fn seconds(s: f64) -> String {
    format!("{s:.1}")
}
