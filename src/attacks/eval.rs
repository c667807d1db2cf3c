//! Robust accuracy over a dataset, counted as the authors count it (`test` in `mnist_mlp.py`):
//!
//! ```text
//! clean correct   C = { i : f(xᵢ) = yᵢ }
//! robust correct  R = { i ∈ C : f(attack(xᵢ)) = yᵢ }       (misclassified clean ⇒ not robust)
//! accuracy        100·|C|/n  and  100·|R|/n                 (over all n images)
//! ```
//! Only the images in C are attacked (the others cannot count). The model's outputs and input
//! gradients for one image do not depend on the rest of its batch, bit for bit (eval mode, and
//! the fused path's batch-invariant products and sums: `nrpm::fused`, `nrpm::matmul`), so the
//! batch size changes timings, not figures.

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
    let all: Vec<usize> = (0..data.len()).collect();
    let mut outcomes = Vec::with_capacity(data.len());
    let mut keep = |batch: &[ImageOutcome]| {
        outcomes.extend_from_slice(batch);
        Ok(())
    };
    evaluate_images(
        model, source, data, &all, attacks, options, progress, &mut keep,
    )?;
    results_from_outcomes(attacks, &outcomes)
}

/// One image's outcome in an evaluation: what a sharded run records per image, and all that
/// the totals ([`results_from_outcomes`]) are made of.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageOutcome {
    /// The image's index in the evaluated dataset (which seeds its random draws).
    pub index: usize,
    /// Its true label.
    pub label: usize,
    /// Whether the model classifies the clean image correctly.
    pub clean_correct: bool,
    /// Per attack, in order: correct both without and after the attack (false when the clean
    /// image is already wrong, which is not attacked).
    pub robust_correct: Vec<bool>,
    /// This image's share of its batch's clean classification time (s).
    pub clean_seconds: f64,
    /// Per attack: this image's share of its batch's attack time (s).
    pub seconds: Vec<f64>,
}

/// Evaluates the images of `data` at `images` (dataset indices, any subset, in that order)
/// under each of `attacks`, as [`evaluate_transfer`], and hands each batch's outcomes to
/// `sink` as soon as the batch is done (a sharded run appends them to its records). Image i
/// draws from generators seeded with (`options.seed`, i), so its outcome is the same in any
/// subset, batch or shard.
///
/// # Errors
/// As [`evaluate_transfer`]; [`Error::Config`] for an index `≥ data.len()`; the errors of
/// `sink`, which stop the evaluation.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_images<T: Real, M: Classifier<T> + ?Sized, S: Classifier<T> + ?Sized>(
    model: &M,
    source: &S,
    data: &Dataset,
    images: &[usize],
    attacks: &[Attack],
    options: &EvalOptions,
    progress: &mut dyn Progress,
    sink: &mut dyn FnMut(&[ImageOutcome]) -> Result<()>,
) -> Result<()> {
    check_inputs(data, attacks)?;
    for attack in attacks {
        super::autoattack::check_classes(attack, model.classes())?;
    }
    if source.input_shape() != model.input_shape() {
        return Err(Error::shape(
            "attacks::evaluate_transfer",
            "source model input",
            &model.input_shape(),
            &source.input_shape(),
        ));
    }
    if options.batch_size == 0 {
        return Err(Error::config("batch size", 0, "must be at least 1"));
    }
    // Evaluating the whole dataset in order (as `evaluate_transfer` does) needs no copy.
    let identity = images.len() == data.len() && images.iter().enumerate().all(|(i, &j)| i == j);
    let selected;
    let subset = match identity {
        true => data,
        false => {
            selected = data.select(images)?;
            &selected
        }
    };
    let targets = match options.targeted {
        true => Some(random_targets(
            subset,
            images,
            model.classes(),
            options.seed,
        )?),
        false => None,
    };
    let n = images.len();
    let stage = format!("{} at {} budget(s)", attacks[0].name(), attacks.len());
    progress.start(&stage, n as u64); // images: the bar shows images done, per second, ETA
    let clock = Instant::now();
    for (b, batch) in subset.batches(options.batch_size)?.enumerate() {
        let offset = b * options.batch_size;
        let indices = &images[offset..offset + batch.labels.len()];
        let target = targets.as_ref().map(|t| &t[offset..offset + indices.len()]);
        let outcomes = evaluate_batch(model, source, &batch, indices, target, attacks, options)?;
        sink(&outcomes)?;
        progress.advance(indices.len() as u64);
    }
    let seconds = clock.elapsed().as_secs_f64();
    progress.finish(&format!("{stage}: {n} images in {seconds:.1} s"));
    Ok(())
}

/// The outcomes of one batch: classify, attack the images classified correctly with each
/// attack (generators seeded per image), classify again.
fn evaluate_batch<T: Real, M: Classifier<T> + ?Sized, S: Classifier<T> + ?Sized>(
    model: &M,
    source: &S,
    batch: &crate::data::Batch<'_>,
    indices: &[usize],
    target: Option<&[usize]>,
    attacks: &[Attack],
    options: &EvalOptions,
) -> Result<Vec<ImageOutcome>> {
    let x: Array4<T> = batch.images.mapv(|v| T::of(f64::from(v)));
    let labels: Vec<usize> = batch.labels.to_vec();
    let share = |clock: Instant| clock.elapsed().as_secs_f64() / labels.len() as f64;
    let clock = Instant::now();
    let keep = correctly_classified(model, &x, &labels)?;
    let mut outcomes: Vec<ImageOutcome> = indices
        .iter()
        .zip(&labels)
        .map(|(&index, &label)| ImageOutcome {
            index,
            label,
            clean_correct: false,
            robust_correct: vec![false; attacks.len()],
            clean_seconds: 0.0,
            seconds: vec![0.0; attacks.len()],
        })
        .collect();
    let clean_share = share(clock);
    for o in outcomes.iter_mut() {
        o.clean_seconds = clean_share;
    }
    for &k in &keep {
        outcomes[k].clean_correct = true;
    }
    let x = x.select(Axis(0), &keep);
    let picked = |v: &[usize]| keep.iter().map(|&i| v[i]).collect::<Vec<_>>();
    let (kept_labels, kept_indices) = (picked(&labels), picked(indices));
    let target = target.map(picked);
    for (a, attack) in attacks.iter().enumerate() {
        let clock = Instant::now();
        if !keep.is_empty() {
            // Each image draws from (seed, its index), whatever its batch or shard.
            let mut rngs =
                ImageRngs::for_images(options.seed, stream::ATTACK, kept_indices.iter().copied());
            let adv = perturb(
                source,
                x.view(),
                &kept_labels,
                attack,
                target.as_deref(),
                &mut rngs,
            )?;
            for s in correctly_classified(model, &adv, &kept_labels)? {
                outcomes[keep[s]].robust_correct[a] = true;
            }
        }
        let attack_share = share(clock);
        for o in outcomes.iter_mut() {
            o.seconds[a] = attack_share;
        }
    }
    Ok(outcomes)
}

/// The totals of an evaluation from its images' outcomes (any order; one per image), one
/// [`EvalResult`] per attack: what [`evaluate_transfer`] returns, and what `nrpm merge` makes
/// of a sharded run's records.
///
/// # Errors
/// [`Error::Config`] for no outcomes, or an outcome with another number of attacks.
pub fn results_from_outcomes(
    attacks: &[Attack],
    outcomes: &[ImageOutcome],
) -> Result<Vec<EvalResult>> {
    if outcomes.is_empty() {
        return Err(Error::config(
            "outcomes",
            0,
            "an evaluation has at least one image",
        ));
    }
    if let Some(o) = outcomes
        .iter()
        .find(|o| o.robust_correct.len() != attacks.len() || o.seconds.len() != attacks.len())
    {
        return Err(Error::config(
            "outcome",
            format!(
                "image {} with {} attack(s) for {}",
                o.index,
                o.robust_correct.len(),
                attacks.len()
            ),
            "must have one entry per attack",
        ));
    }
    let mut tally = Tally::new(attacks.len());
    for o in outcomes {
        tally.clean(usize::from(o.clean_correct), o.clean_seconds);
        for (a, (&r, &s)) in o.robust_correct.iter().zip(&o.seconds).enumerate() {
            tally.attack(a, usize::from(r), s);
        }
    }
    Ok(tally.results(attacks, outcomes.len()))
}

/// Rejects what cannot be evaluated.
pub(super) fn check_inputs(data: &Dataset, attacks: &[Attack]) -> Result<()> {
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
pub(super) fn correctly_classified<T: Real, M: Classifier<T> + ?Sized>(
    model: &M,
    x: &Array4<T>,
    labels: &[usize],
) -> Result<Vec<usize>> {
    let pred = model.predict(x.view())?;
    Ok((0..labels.len())
        .filter(|&i| pred[i] == labels[i])
        .collect())
}

/// One target per image of `data` (whose dataset indices are `indices`), uniform among the
/// `classes − 1` wrong classes; image i's target is drawn from a generator seeded with
/// (seed, i), apart from the attacks' draws.
fn random_targets(
    data: &Dataset,
    indices: &[usize],
    classes: usize,
    seed: u64,
) -> Result<Vec<usize>> {
    if classes < 2 {
        return Err(Error::config(
            "classes",
            classes,
            "a targeted attack needs at least 2",
        ));
    }
    let mut rngs = ImageRngs::for_images(seed, stream::TARGETS, indices.iter().copied());
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
