//! AutoAttack's standard suite (Croce & Hein, ICML 2020; fra31/auto-attack `autoattack.py`,
//! `version='standard'`), and the dispatch of every strong attack.
//!
//! ```text
//! R₀ = { images classified correctly }
//! Rₖ = { i ∈ Rₖ₋₁ : attack k does not break i }     k = APGD-CE, APGD-T, FAB-T, Square
//! robust accuracy = 100·|R₄|/n                       (the per-image worst case of the four)
//! ```
//! Each attack runs only on the images all earlier ones left robust, and each image records
//! the attack that broke it. An attack breaks an image when its adversarial image, inside the
//! ε-ball and [0, 1], is classified otherwise than the true label; the suite classifies every
//! returned image again before it counts it, as the reference does.

use std::time::Instant;

use ndarray::{Array4, ArrayView4, Axis};
use serde::{Deserialize, Serialize};

use super::apgd::{Apgd, Objective};
use super::eval::{
    check_inputs, correctly_classified, results_from_outcomes, EvalResult, ImageOutcome,
};
use super::fab::Fab;
use super::square::Square;
use super::{image_rows, ApgdLoss, Attack, Ball, EvalOptions, Outcome};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::models::Classifier;
use crate::progress::Progress;
use crate::real::Real;
use crate::seeds::{stream, ImageRngs};

/// An attack of the standard suite, in its order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SuiteAttack {
    /// APGD on the cross-entropy.
    ApgdCe,
    /// APGD on the targeted DLR loss.
    ApgdT,
    /// Targeted FAB.
    FabT,
    /// The Square attack.
    Square,
}

impl SuiteAttack {
    /// The suite, in order.
    pub const ALL: [SuiteAttack; 4] = [Self::ApgdCe, Self::ApgdT, Self::FabT, Self::Square];

    /// `apgd-ce`, `apgd-t`, `fab-t`, `square`.
    pub fn name(self) -> &'static str {
        match self {
            Self::ApgdCe => "apgd-ce",
            Self::ApgdT => "apgd-t",
            Self::FabT => "fab-t",
            Self::Square => "square",
        }
    }

    /// Whether it uses gradients (all but Square).
    pub fn uses_gradients(self) -> bool {
        self != Self::Square
    }
}

/// How many images are still robust after one attack of the suite, and its time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageResult {
    /// The attack.
    pub attack: SuiteAttack,
    /// Images still classified correctly after this attack and all earlier ones.
    pub robust_correct: usize,
    /// `100·robust_correct/n` (%).
    pub robust_accuracy: f64,
    /// Wall time of this attack over the dataset.
    pub seconds: f64,
}

/// What the suite did to one image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The image's index in the dataset.
    pub index: usize,
    /// Its true class.
    pub label: usize,
    /// Whether the clean image is classified correctly.
    pub clean_correct: bool,
    /// The attack that broke it (`None`: robust, or wrong without attack).
    pub broken_by: Option<SuiteAttack>,
    /// The class of its adversarial image, when broken.
    pub adversarial_class: Option<usize>,
}

/// AutoAttack at one budget: the robust accuracy (the suite's per-image worst case), the
/// robust count after each attack, and a record per image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AutoAttackResult {
    /// The figures as for any attack.
    pub result: EvalResult,
    /// After APGD-CE, APGD-T, FAB-T and Square, in order.
    pub stages: Vec<StageResult>,
    /// One record per image of the dataset, in order.
    pub images: Vec<ImageRecord>,
}

impl AutoAttackResult {
    /// The stage of `attack`.
    pub fn stage(&self, attack: SuiteAttack) -> Option<&StageResult> {
        self.stages.iter().find(|s| s.attack == attack)
    }

    /// The dataset indices of the images still robust after the whole suite.
    pub fn robust_indices(&self) -> Vec<usize> {
        self.images
            .iter()
            .filter(|r| r.clean_correct && r.broken_by.is_none())
            .map(|r| r.index)
            .collect()
    }
}

/// The suite's settings, from an [`Attack::AutoAttack`].
#[derive(Clone, Copy, Debug)]
struct Suite {
    ball: Ball,
    eps: f64,
    steps: usize,
    restarts: usize,
    queries: usize,
    targets: usize,
}

/// The suite on one batch: each image's adversarial image and the attack that broke it.
pub(super) struct SuiteRun<T> {
    pub adv: Array4<T>,
    /// `None` for images robust, or wrong from the start.
    pub broken_by: Vec<Option<SuiteAttack>>,
    /// The class of each image's returned image.
    pub pred: Vec<usize>,
    /// Seconds per attack, in suite order.
    pub seconds: [f64; 4],
}

/// The adversarial images of a strong attack (see [`super::perturb`]); `x` in standard layout.
pub(super) fn perturb_strong<T: Real, C: Classifier<T> + ?Sized>(
    model: &C,
    x: ArrayView4<T>,
    labels: &[usize],
    attack: &Attack,
    rngs: &mut ImageRngs,
) -> Result<Array4<T>> {
    check_classes(attack, model.classes())?;
    let at: Vec<usize> = (0..x.dim().0).collect();
    let outcome = match *attack {
        Attack::AutoAttack { .. } => return Ok(run_suite(model, x, labels, attack, rngs)?.adv),
        _ => run_one(model, x, labels, attack, rngs, &at)?,
    };
    Ok(outcome.adv)
}

/// Refuses a model with too few classes for a strong attack, or more targets than wrong
/// classes (other attacks pass).
///
/// # Errors
/// [`Error::Config`] naming the classes or the targets.
pub(super) fn check_classes(attack: &Attack, classes: usize) -> Result<()> {
    if attack.ball().is_none() {
        return Ok(());
    }
    let (min, targets) = match *attack {
        Attack::Apgd {
            loss: ApgdLoss::Dlr,
            ..
        } => (3, None),
        Attack::ApgdT { targets, .. } | Attack::AutoAttack { targets, .. } => (4, Some(targets)),
        Attack::FabT { targets, .. } => (2, Some(targets)),
        _ => (2, None),
    };
    if classes < min {
        return Err(Error::config(
            "classes",
            classes,
            "too few for this attack (APGD-DLR needs 3, APGD-T and AutoAttack 4, others 2)",
        ));
    }
    match targets {
        Some(t) if t > classes - 1 => Err(Error::config(
            "attack targets",
            t,
            "must be at most the number of classes − 1",
        )),
        _ => Ok(()),
    }
}

/// One strong attack other than the suite on `x`; image b draws from `rngs.get_mut(at[b])`.
fn run_one<T: Real, C: Classifier<T> + ?Sized>(
    model: &C,
    x: ArrayView4<T>,
    labels: &[usize],
    attack: &Attack,
    rngs: &mut ImageRngs,
    at: &[usize],
) -> Result<Outcome<T>> {
    match *attack {
        Attack::Apgd {
            eps,
            ball,
            loss,
            steps,
            restarts,
        } => {
            let objective = match loss {
                ApgdLoss::Ce => Objective::Ce,
                ApgdLoss::Dlr => Objective::Dlr,
            };
            let apgd = Apgd {
                ball,
                eps,
                steps,
                restarts,
            };
            apgd.run(model, x, labels, objective, rngs, at)
        }
        Attack::ApgdT {
            eps,
            ball,
            steps,
            restarts,
            targets,
        } => Apgd {
            ball,
            eps,
            steps,
            restarts,
        }
        .run_targeted(model, x, labels, targets, rngs, at),
        Attack::FabT {
            eps,
            ball,
            steps,
            restarts,
            targets,
        } => Fab {
            ball,
            eps,
            steps,
            restarts,
        }
        .run_targeted(model, x, labels, targets, rngs, at),
        Attack::Square {
            eps,
            ball,
            queries,
            restarts,
        } => Square {
            ball,
            eps,
            queries,
            restarts,
        }
        .run(model, x, labels, rngs, at),
        _ => Err(Error::config(
            "attack",
            attack.name(),
            "is not a single strong attack",
        )),
    }
}

impl Suite {
    /// The suite's settings, if `attack` is AutoAttack.
    fn of(attack: &Attack) -> Option<Self> {
        match *attack {
            Attack::AutoAttack {
                eps,
                ball,
                steps,
                restarts,
                queries,
                targets,
            } => Some(Self {
                ball,
                eps,
                steps,
                restarts,
                queries,
                targets,
            }),
            _ => None,
        }
    }

    /// The suite's attack `which` as an [`Attack`].
    fn attack(&self, which: SuiteAttack) -> Attack {
        let Suite {
            ball,
            eps,
            steps,
            restarts,
            queries,
            targets,
        } = *self;
        match which {
            SuiteAttack::ApgdCe => Attack::Apgd {
                eps,
                ball,
                loss: ApgdLoss::Ce,
                steps,
                restarts,
            },
            SuiteAttack::ApgdT => Attack::ApgdT {
                eps,
                ball,
                steps,
                restarts,
                targets,
            },
            SuiteAttack::FabT => Attack::FabT {
                eps,
                ball,
                steps,
                restarts,
                targets,
            },
            SuiteAttack::Square => Attack::Square {
                eps,
                ball,
                queries,
                restarts,
            },
        }
    }
}

/// The suite on `x [B, C, H, W]` (standard layout) with true `labels`.
///
/// # Errors
/// Model errors; an attack other than [`Attack::AutoAttack`].
pub(super) fn run_suite<T: Real, C: Classifier<T> + ?Sized>(
    model: &C,
    x: ArrayView4<T>,
    labels: &[usize],
    attack: &Attack,
    rngs: &mut ImageRngs,
) -> Result<SuiteRun<T>> {
    let suite = Suite::of(attack)
        .ok_or_else(|| Error::config("attack", attack.name(), "is not AutoAttack"))?;
    check_classes(attack, model.classes())?;
    let mut pred = model.predict(x)?;
    let mut run = SuiteRun {
        adv: x.to_owned(),
        broken_by: vec![None; labels.len()],
        pred: pred.clone(),
        seconds: [0.0; 4],
    };
    let mut robust: Vec<usize> = (0..labels.len())
        .filter(|&b| pred[b] == labels[b])
        .collect();
    for (k, which) in SuiteAttack::ALL.into_iter().enumerate() {
        if robust.is_empty() {
            break;
        }
        let clock = Instant::now();
        let sub = x.select(Axis(0), &robust);
        let sub_labels: Vec<usize> = robust.iter().map(|&b| labels[b]).collect();
        let outcome = run_one(
            model,
            sub.view(),
            &sub_labels,
            &suite.attack(which),
            rngs,
            &robust,
        )?;
        pred = model.predict(outcome.adv.view())?;
        let adv_rows = image_rows(outcome.adv.view());
        let mut still = Vec::with_capacity(robust.len());
        for (j, &b) in robust.iter().enumerate() {
            if outcome.broken[j] && pred[j] != labels[b] {
                run.adv
                    .index_axis_mut(Axis(0), b)
                    .iter_mut()
                    .zip(&adv_rows[j])
                    .for_each(|(slot, &v)| *slot = v);
                run.broken_by[b] = Some(which);
                run.pred[b] = pred[j];
            } else {
                still.push(b);
            }
        }
        robust = still;
        run.seconds[k] = clock.elapsed().as_secs_f64();
    }
    Ok(run)
}

/// AutoAttack's robust accuracy of `model` on every image of `data` at each of `attacks`
/// (each an [`Attack::AutoAttack`], typically one per budget), with the robust count after
/// each attack of the suite and a record per image. Image i draws from a generator seeded
/// with (`options.seed`, i), so the figures depend neither on the batch size nor on the
/// shard; the images of the robust count are those `evaluate_attacks` would count.
///
/// # Errors
/// [`Error::Config`] for an attack other than AutoAttack, a targeted run (the suite chooses
/// its own targets), too few classes or too many targets, and as
/// [`super::evaluate_attacks`].
///
/// # Example
/// ```
/// # fn main() -> nrpm::Result<()> {
/// use nrpm::attacks::{evaluate_autoattack, Attack, EvalOptions, StrongSettings};
/// use nrpm::models::{Model, ModelSpec};
/// let data = nrpm::data::Dataset::mnist_subset(nrpm::data::Split::Test)?.first(4);
/// let mut model = Model::<f32>::new(ModelSpec::from_name("mlp1", 1, 28)?);
/// model.init(0);
/// let quick = StrongSettings { steps: 5, queries: 20, targets: 2, ..StrongSettings::default() };
/// let aa = Attack::strong("autoattack", 0.1, quick)?;
/// let r = evaluate_autoattack(&model, &data, &[aa], &EvalOptions::default(), &mut nrpm::progress::Silent)?;
/// assert_eq!(r[0].images.len(), 4);
/// assert_eq!(r[0].stages.last().unwrap().robust_correct, r[0].result.robust_correct);
/// # Ok(()) }
/// ```
pub fn evaluate_autoattack<T: Real, M: Classifier<T> + ?Sized>(
    model: &M,
    data: &Dataset,
    attacks: &[Attack],
    options: &EvalOptions,
    progress: &mut dyn Progress,
) -> Result<Vec<AutoAttackResult>> {
    if let Some(a) = attacks.iter().find(|a| Suite::of(a).is_none()) {
        return Err(Error::config(
            "attack",
            a.name(),
            "evaluate_autoattack runs AutoAttack only",
        ));
    }
    if options.targeted {
        return Err(Error::config(
            "targeted",
            true,
            "AutoAttack is untargeted (APGD-T and FAB-T choose their own targets)",
        ));
    }
    check_inputs(data, attacks)?;
    for attack in attacks {
        check_classes(attack, model.classes())?;
    }
    let n = data.len();
    let mut tally = SuiteTally::new(data, attacks.len());
    let stage = format!("autoattack at {} budget(s)", attacks.len());
    progress.start(&stage, (n * attacks.len()) as u64);
    let clock = Instant::now();
    let mut offset = 0;
    for batch in data.batches(options.batch_size)? {
        let m = batch.labels.len();
        let x: Array4<T> = batch.images.mapv(|v| T::of(f64::from(v)));
        let labels = batch.labels.to_vec();
        let clean_clock = Instant::now();
        let keep = correctly_classified(model, &x, &labels)?;
        let mut outcomes: Vec<ImageOutcome> = (0..m)
            .map(|i| ImageOutcome {
                index: offset + i,
                label: labels[i],
                clean_correct: false,
                robust_correct: vec![false; attacks.len()],
                clean_seconds: clean_clock.elapsed().as_secs_f64() / m as f64,
                seconds: vec![0.0; attacks.len()],
            })
            .collect();
        keep.iter().for_each(|&k| outcomes[k].clean_correct = true);
        let kept = x.select(Axis(0), &keep);
        let kept_labels: Vec<usize> = keep.iter().map(|&k| labels[k]).collect();
        for (a, attack) in attacks.iter().enumerate() {
            let attack_clock = Instant::now();
            if !keep.is_empty() {
                // Each image draws from (seed, its index), whatever its batch or shard.
                let indices = keep.iter().map(|&k| offset + k);
                let mut rngs = ImageRngs::for_images(options.seed, stream::ATTACK, indices);
                let run = run_suite(model, kept.view(), &kept_labels, attack, &mut rngs)?;
                tally.record(a, offset, &keep, &run, &mut outcomes);
            }
            let share = attack_clock.elapsed().as_secs_f64() / m as f64;
            outcomes.iter_mut().for_each(|o| o.seconds[a] = share);
            progress.advance(m as u64);
        }
        tally.outcomes.extend(outcomes);
        offset += m;
    }
    let seconds = clock.elapsed().as_secs_f64();
    progress.finish(&format!("{stage}: {n} images in {seconds:.1} s"));
    tally.results(attacks)
}

/// The suite's records over a dataset, per budget, as the batches come in.
struct SuiteTally {
    /// Per budget, one record per image of the dataset.
    records: Vec<Vec<ImageRecord>>,
    /// Per budget, images broken by each attack of the suite.
    broken: Vec<[usize; 4]>,
    /// Per budget, seconds of each attack of the suite.
    seconds: Vec<[f64; 4]>,
    /// Every image's outcome, as the plain evaluation counts them.
    outcomes: Vec<ImageOutcome>,
}

impl SuiteTally {
    fn new(data: &Dataset, budgets: usize) -> Self {
        let fresh: Vec<ImageRecord> = (0..data.len())
            .map(|index| ImageRecord {
                index,
                label: data.labels()[index],
                clean_correct: false,
                broken_by: None,
                adversarial_class: None,
            })
            .collect();
        Self {
            records: vec![fresh; budgets],
            broken: vec![[0; 4]; budgets],
            seconds: vec![[0.0; 4]; budgets],
            outcomes: Vec::with_capacity(data.len()),
        }
    }

    /// Budget `a`'s suite `run` on the images `keep` of the batch at `offset`.
    fn record<T>(
        &mut self,
        a: usize,
        offset: usize,
        keep: &[usize],
        run: &SuiteRun<T>,
        outcomes: &mut [ImageOutcome],
    ) {
        for (j, &k) in keep.iter().enumerate() {
            let record = &mut self.records[a][offset + k];
            record.clean_correct = true;
            record.broken_by = run.broken_by[j];
            record.adversarial_class = run.broken_by[j].map(|_| run.pred[j]);
            match run.broken_by[j] {
                Some(which) => self.broken[a][which as usize] += 1,
                None => outcomes[k].robust_correct[a] = true,
            }
        }
        let seconds = &mut self.seconds[a];
        seconds
            .iter_mut()
            .zip(run.seconds)
            .for_each(|(s, t)| *s += t);
    }

    /// The results per budget.
    fn results(self, attacks: &[Attack]) -> Result<Vec<AutoAttackResult>> {
        let results = results_from_outcomes(attacks, &self.outcomes)?;
        let per_budget = self.records.into_iter().zip(self.broken).zip(self.seconds);
        Ok(results
            .into_iter()
            .zip(per_budget)
            .map(|(result, ((images, broken), seconds))| {
                let n = result.n;
                let mut robust = result.clean_correct;
                let stages = SuiteAttack::ALL
                    .iter()
                    .map(|&attack| {
                        robust -= broken[attack as usize];
                        StageResult {
                            attack,
                            robust_correct: robust,
                            robust_accuracy: 100.0 * robust as f64 / n as f64,
                            seconds: seconds[attack as usize],
                        }
                    })
                    .collect();
                AutoAttackResult {
                    result,
                    stages,
                    images,
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_targets_are_checked() {
        let aa = Attack::AutoAttack {
            eps: 0.1,
            ball: Ball::Linf,
            steps: 10,
            restarts: 1,
            queries: 10,
            targets: 9,
        };
        assert!(check_classes(&aa, 10).is_ok());
        assert!(check_classes(&aa, 9).is_err());
        assert!(check_classes(&aa, 3).is_err());
        let dlr = Attack::Apgd {
            eps: 0.1,
            ball: Ball::L2,
            loss: ApgdLoss::Dlr,
            steps: 10,
            restarts: 1,
        };
        assert!(check_classes(&dlr, 3).is_ok());
        assert!(check_classes(&dlr, 2).is_err());
    }
}
