//! Robust accuracy over a dataset, counted as the authors count it (`test` in `mnist_mlp.py`):
//!
//! ```text
//! clean correct   C = { i : f(xᵢ) = yᵢ }
//! robust correct  R = { i ∈ C : f(attack(xᵢ)) = yᵢ }       (misclassified clean ⇒ not robust)
//! accuracy        100·|C|/n  and  100·|R|/n                 (over all n images)
//! ```
//! Only the images in C are attacked (the others cannot count). The model's outputs for one
//! image do not depend on the rest of its batch (eval mode), so the batch size changes timings,
//! not figures.

use std::time::Instant;

use ndarray::{Array4, Axis};
use rand::RngExt;
use serde::{Deserialize, Serialize};

use super::{perturb, Attack};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::models::Classifier;
use crate::progress::Progress;
use crate::real::Real;
use crate::seeds::{stream, ImageRngs};

/// How an evaluation runs. Deserialising refuses a zero batch size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "EvalOptionsFields")]
pub struct EvalOptions {
    /// Images per batch (figures do not depend on it).
    pub batch_size: usize,
    /// Seed of the attacks' random draws and of the targets: image i draws from a generator
    /// seeded with (seed, i), so its figures depend neither on its batch nor on its shard.
    pub seed: u64,
    /// Targeted attacks, each image towards a class drawn uniformly among the wrong ones.
    pub targeted: bool,
}

/// The serialised fields of [`EvalOptions`], checked on the way in.
#[derive(Deserialize)]
struct EvalOptionsFields {
    batch_size: usize,
    seed: u64,
    targeted: bool,
}

impl TryFrom<EvalOptionsFields> for EvalOptions {
    type Error = Error;

    fn try_from(f: EvalOptionsFields) -> Result<Self> {
        if f.batch_size == 0 {
            return Err(Error::config("batch size", 0, "must be at least 1"));
        }
        Ok(EvalOptions {
            batch_size: f.batch_size,
            seed: f.seed,
            targeted: f.targeted,
        })
    }
}

impl Default for EvalOptions {
    /// Batches of 100, seed 0, untargeted.
    fn default() -> Self {
        Self {
            batch_size: 100,
            seed: 0,
            targeted: false,
        }
    }
}

/// The figures of one attack over a dataset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalResult {
    /// The attack and its budget.
    pub attack: Attack,
    /// Images evaluated.
    pub n: usize,
    /// Images classified correctly without attack.
    pub clean_correct: usize,
    /// Images classified correctly both without and after the attack.
    pub robust_correct: usize,
    /// `100·clean_correct/n` (%).
    pub clean_accuracy: f64,
    /// `100·robust_correct/n` (%).
    pub robust_accuracy: f64,
    /// Wall time of the clean classification (shared by all attacks of one evaluation).
    pub clean_seconds: f64,
    /// Wall time of this attack and of classifying its images.
    pub seconds: f64,
}

/// Images correct and seconds at each of `budgets` (0 = clean), from `results`, the
/// evaluation of one attack at the positive budgets in order: a zero budget takes the clean
/// pass (`clean_correct`, `clean_seconds` of `results[0]`), a positive one the next result's
/// `robust_correct` and `seconds`.
///
/// # Errors
/// [`Error::Config`] when `results` is empty or its length differs from the number of
/// positive budgets.
pub fn correct_by_budget(budgets: &[f64], results: &[EvalResult]) -> Result<Vec<(usize, f64)>> {
    let positive = budgets.iter().filter(|&&b| b > 0.0).count();
    let Some(clean) = results.first().filter(|_| results.len() == positive) else {
        return Err(Error::config(
            "results",
            format!("{} for {positive} positive budget(s)", results.len()),
            "must hold one result per positive budget, at least one",
        ));
    };
    let mut attacked = results.iter();
    Ok(budgets
        .iter()
        .map(|&b| match b > 0.0 {
            true => attacked
                .next()
                .map(|r| (r.robust_correct, r.seconds))
                .expect("counted above"),
            false => (clean.clean_correct, clean.clean_seconds),
        })
        .collect())
}

/// Robust accuracy of `model` on every image of `data` under one untargeted `attack`.
///
/// # Errors
/// As [`evaluate_attacks`].
///
/// # Example
/// ```
/// # fn main() -> nrpm::Result<()> {
/// use nrpm::attacks::{evaluate, Attack};
/// use nrpm::models::{Model, ModelSpec};
/// let data = nrpm::data::Dataset::mnist_subset(nrpm::data::Split::Test)?.first(20);
/// let mut model = Model::<f32>::new(ModelSpec::from_name("mlp1", 1, 28)?);
/// model.init(0);
/// let r = evaluate(&model, &data, &Attack::Fgsm { eps: 0.0 }, 10, 0, &mut nrpm::progress::Silent)?;
/// assert_eq!((r.n, r.robust_correct), (20, r.clean_correct)); // ε = 0 changes nothing
/// # Ok(()) }
/// ```
pub fn evaluate<T: Real, M: Classifier<T> + ?Sized>(
    model: &M,
    data: &Dataset,
    attack: &Attack,
    batch_size: usize,
    seed: u64,
    progress: &mut dyn Progress,
) -> Result<EvalResult> {
    let options = EvalOptions {
        batch_size,
        seed,
        targeted: false,
    };
    let mut results = evaluate_attacks(
        model,
        data,
        std::slice::from_ref(attack),
        &options,
        progress,
    )?;
    Ok(results.remove(0))
}

/// Robust accuracy of `model` on every image of `data` under each of `attacks` (typically one
/// attack at a list of budgets), one [`EvalResult`] per attack, in order. The clean pass runs
/// once; image i's random draws come from a generator seeded with (`options.seed`, i), fresh
/// for each attack, so the figures depend neither on the batch size nor on the rest of the
/// list, and an image gives the same result in any shard.
///
/// # Errors
/// [`Error::Config`] for an empty dataset or attack list, a zero batch size, invalid attack
/// parameters, a targeted run with fewer than two classes, labels the model does not have,
/// or a strong attack the model has too few classes for (more targets than classes − 1);
/// [`Error::Shape`] if the images do not fit the model; model errors.
pub fn evaluate_attacks<T: Real, M: Classifier<T> + ?Sized>(
    model: &M,
    data: &Dataset,
    attacks: &[Attack],
    options: &EvalOptions,
    progress: &mut dyn Progress,
) -> Result<Vec<EvalResult>> {
    evaluate_transfer(model, model, data, attacks, options, progress)
}

/// As [`evaluate_attacks`], but the attacks take their gradients from `source` while `model`
/// is the one classified (before and after). With `source = model` this is the white-box
/// evaluation; with `source` = the same weights with every layer LPM
/// ([`Model::set_lpm`](crate::models::Model::set_lpm)) it is a BPDA-style check of NRPM's gradients: the attacker
/// differentiates the linear layers instead of the IRLS steps, which catches robustness that
/// comes only from hard-to-follow gradients (gradient masking).
///
/// # Errors
/// As [`evaluate_attacks`]; [`Error::Shape`] if the two models take different inputs.
pub fn evaluate_transfer<T: Real, M: Classifier<T> + ?Sized, S: Classifier<T> + ?Sized>(
    model: &M,
    source: &S,
    data: &Dataset,
    attacks: &[Attack],
    options: &EvalOptions,
    progress: &mut dyn Progress,
) -> Result<Vec<EvalResult>> {
    if source.input_shape() != model.input_shape() {
        return Err(Error::shape(
            "attacks::evaluate_transfer",
            "source model input",
            &model.input_shape(),
            &source.input_shape(),
        ));
    }
    let mut attack_batch = |_: usize, attack: &Attack, kept: &Kept<T>, rngs: &mut ImageRngs| {
        let adv = perturb(source, kept.x, kept.labels, attack, kept.target, rngs)?;
        let pred = model.predict(adv.view())?;
        Ok((0..kept.labels.len())
            .map(|i| pred[i] == kept.labels[i])
            .collect())
    };
    run_batches(model, data, attacks, options, progress, &mut attack_batch)
}

/// The images of one batch that an attack runs on: those the model classifies correctly.
pub(super) struct Kept<'a, T> {
    /// The images `[m, C, H, W]`, standard layout.
    pub x: ndarray::ArrayView4<'a, T>,
    /// Their true labels.
    pub labels: &'a [usize],
    /// Their targets, in a targeted evaluation.
    pub target: Option<&'a [usize]>,
    /// Their indices in the dataset.
    pub indices: &'a [usize],
}

/// An attack on the kept images of a batch: `(index of the attack in the list, the attack,
/// the images, their generators)` → whether each image is still classified correctly.
pub(super) type AttackBatch<'f, T> =
    dyn FnMut(usize, &Attack, &Kept<T>, &mut ImageRngs) -> Result<Vec<bool>> + 'f;

/// The evaluation loop: classifies each batch of `data`, keeps the images `model` gets right,
/// runs `attack_batch` on them for each attack with generators seeded from (`options.seed`,
/// dataset index), and counts.
///
/// # Errors
/// As [`evaluate_attacks`], and the errors of `attack_batch`.
pub(super) fn run_batches<T: Real, M: Classifier<T> + ?Sized>(
    model: &M,
    data: &Dataset,
    attacks: &[Attack],
    options: &EvalOptions,
    progress: &mut dyn Progress,
    attack_batch: &mut AttackBatch<'_, T>,
) -> Result<Vec<EvalResult>> {
    check_inputs(data, attacks)?;
    for attack in attacks {
        super::autoattack::check_classes(attack, model.classes())?;
    }
    let targets = match options.targeted {
        true => Some(random_targets(data, model.classes(), options.seed)?),
        false => None,
    };
    let mut tally = Tally::new(attacks.len());
    let n = data.len();
    let stage = format!("{} at {} budget(s)", attacks[0].name(), attacks.len());
    progress.start(&stage, (n * attacks.len()) as u64);
    let mut offset = 0;
    for batch in data.batches(options.batch_size)? {
        let x: Array4<T> = batch.images.mapv(|v| T::of(f64::from(v)));
        let labels: Vec<usize> = batch.labels.to_vec();
        let clock = Instant::now();
        let keep = correctly_classified(model, &x, &labels)?;
        tally.clean(keep.len(), clock.elapsed().as_secs_f64());
        let x = x.select(Axis(0), &keep);
        let picked = |v: &[usize]| keep.iter().map(|&i| v[i]).collect::<Vec<_>>();
        let labels = picked(&labels);
        let target = targets.as_ref().map(|t| picked(&t[offset..]));
        let indices: Vec<usize> = keep.iter().map(|&i| offset + i).collect();
        let kept = Kept {
            x: x.view(),
            labels: &labels,
            target: target.as_deref(),
            indices: &indices,
        };
        for (a, attack) in attacks.iter().enumerate() {
            let clock = Instant::now();
            let survived = match keep.is_empty() {
                true => 0,
                false => {
                    // Each image draws from (seed, its index), whatever its batch or shard.
                    let mut rngs = ImageRngs::for_images(
                        options.seed,
                        stream::ATTACK,
                        indices.iter().copied(),
                    );
                    let still = attack_batch(a, attack, &kept, &mut rngs)?;
                    still.iter().filter(|&&s| s).count()
                }
            };
            tally.attack(a, survived, clock.elapsed().as_secs_f64());
            progress.advance(batch.labels.len() as u64);
        }
        offset += batch.labels.len();
    }
    let results = tally.results(attacks, n);
    let seconds: f64 = results.iter().map(|r| r.seconds).sum::<f64>() + tally.clean_seconds;
    progress.finish(&format!("{stage}: {n} images in {seconds:.1} s"));
    Ok(results)
}

/// Rejects what cannot be evaluated.
fn check_inputs(data: &Dataset, attacks: &[Attack]) -> Result<()> {
    if data.is_empty() {
        return Err(Error::config(
            "images",
            0,
            "an evaluation needs at least one image",
        ));
    }
    if attacks.is_empty() {
        return Err(Error::config(
            "attacks",
            0,
            "an evaluation needs at least one attack",
        ));
    }
    attacks.iter().try_for_each(Attack::validate)
}

/// Indices of the images of `x [B, C, H, W]` that the model classifies as `labels [B]`.
fn correctly_classified<T: Real, M: Classifier<T> + ?Sized>(
    model: &M,
    x: &Array4<T>,
    labels: &[usize],
) -> Result<Vec<usize>> {
    let pred = model.predict(x.view())?;
    Ok((0..labels.len())
        .filter(|&i| pred[i] == labels[i])
        .collect())
}

/// One target per image of `data`, uniform among the `classes − 1` wrong classes; image i's
/// target is drawn from a generator seeded with (seed, its index), apart from the attacks'
/// draws.
fn random_targets(data: &Dataset, classes: usize, seed: u64) -> Result<Vec<usize>> {
    if classes < 2 {
        return Err(Error::config(
            "classes",
            classes,
            "a targeted attack needs at least 2",
        ));
    }
    let mut rngs = ImageRngs::for_images(seed, stream::TARGETS, 0..data.len());
    Ok(data
        .labels()
        .iter()
        .zip(rngs.iter_mut())
        .map(|(&y, rng)| (y + 1 + rng.random_range(0..classes - 1)) % classes)
        .collect())
}

/// Running counts and times of one evaluation.
struct Tally {
    clean_correct: usize,
    clean_seconds: f64,
    robust: Vec<(usize, f64)>,
}

impl Tally {
    fn new(attacks: usize) -> Self {
        Self {
            clean_correct: 0,
            clean_seconds: 0.0,
            robust: vec![(0, 0.0); attacks],
        }
    }

    fn clean(&mut self, correct: usize, seconds: f64) {
        self.clean_correct += correct;
        self.clean_seconds += seconds;
    }

    fn attack(&mut self, index: usize, correct: usize, seconds: f64) {
        self.robust[index].0 += correct;
        self.robust[index].1 += seconds;
    }

    fn results(&self, attacks: &[Attack], n: usize) -> Vec<EvalResult> {
        let percent = |c: usize| 100.0 * c as f64 / n as f64;
        attacks
            .iter()
            .zip(&self.robust)
            .map(|(attack, &(robust_correct, seconds))| EvalResult {
                attack: attack.clone(),
                n,
                clean_correct: self.clean_correct,
                robust_correct,
                clean_accuracy: percent(self.clean_correct),
                robust_accuracy: percent(robust_correct),
                clean_seconds: self.clean_seconds,
                seconds,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(eps: f64, robust: usize, seconds: f64) -> EvalResult {
        EvalResult {
            attack: Attack::Fgsm { eps },
            n: 10,
            clean_correct: 9,
            robust_correct: robust,
            clean_accuracy: 90.0,
            robust_accuracy: 10.0 * robust as f64,
            clean_seconds: 0.5,
            seconds,
        }
    }

    #[test]
    fn correct_by_budget_puts_the_clean_pass_at_zero_and_results_in_order() {
        let results = [result(0.1, 4, 1.0), result(0.3, 1, 2.0)];
        let got = correct_by_budget(&[0.0, 0.1, 0.0, 0.3], &results).unwrap();
        assert_eq!(got, vec![(9, 0.5), (4, 1.0), (9, 0.5), (1, 2.0)]);
    }

    #[test]
    fn correct_by_budget_rejects_a_count_mismatch() {
        let one = [result(0.1, 4, 1.0)];
        assert!(correct_by_budget(&[0.0, 0.1, 0.2], &one).is_err());
        assert!(correct_by_budget(&[0.0], &one).is_err());
        assert!(correct_by_budget(&[0.0, 0.1], &[]).is_err());
    }
}
