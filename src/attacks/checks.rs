//! Gradient-masking checks: signs that an attack's failure says more about its gradients than
//! about the model's robustness. Each check gives pass or warn and the figure behind it.
//!
//! AutoAttack's own (fra31/auto-attack `checks.py`):
//!
//! ```text
//! randomness      5 forward passes of the clean images give the same logits (max |Δz| = 0)
//! softmax-like    the outputs are not probabilities (entries in [0, 1], rows summing to 1)
//! zero gradients  no image has an all-zero cross-entropy gradient at the clean image
//! square          Square breaks at most 0.2 % of the images the gradient attacks left robust
//! ```
//! Ours:
//!
//! ```text
//! lpm gradients   APGD-CE with the gradients of the LPM twin (the same weights, every layer
//!                 LPM; BPDA-style: the model classifies, the twin differentiates) does not
//!                 leave fewer images robust than the white-box APGD-CE
//! ε sweep         APGD-CE at ε = ¼, ½ and 1 of the box (L∞: 1; L2: √(C·H·W)) ends at 0 %
//! more effort     APGD-CE with twice the steps and twice the restarts lowers the robust
//!                 accuracy by at most 0.2 percentage points
//! ```
//! A warn is a reason to distrust the white-box figures, not proof of masking.

use ndarray::{Array2, Array4, ArrayView2, ArrayView4};
use serde::{Deserialize, Serialize};

use super::autoattack::{AutoAttackResult, SuiteAttack};
use super::eval::{evaluate_attacks, EvalOptions};
use super::{ApgdLoss, Attack, Ball};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::models::Classifier;
use crate::nn::loss;
use crate::progress::Progress;
use crate::real::Real;

/// The largest drop (percentage points) a stronger or gradient-free attack may add before a
/// check warns: AutoAttack's 0.2 % of its Square check.
pub const DROP_TOLERANCE: f64 = 0.2;

/// Forward passes of the randomness check (AutoAttack's).
pub const RANDOMNESS_PASSES: usize = 5;

/// How far a row of outputs may be from summing to 1 and still look like probabilities.
const SOFTMAX_TOLERANCE: f64 = 1e-5;

/// A check's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// No sign of gradient masking.
    Pass,
    /// A sign of gradient masking (or of an attack that did not converge).
    Warn,
}

impl Verdict {
    /// `Warn` when `warn`, else `Pass`.
    fn of(warn: bool) -> Self {
        if warn {
            Verdict::Warn
        } else {
            Verdict::Pass
        }
    }

    /// `"pass"` or `"warn"`.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Warn => "warn",
        }
    }
}

/// One check: its name, verdict, and the figure behind it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// `randomness`, `softmax-like`, `zero gradients`, `square`, `lpm gradients`, `eps sweep`
    /// or `more effort`.
    pub name: String,
    /// Pass or warn.
    pub verdict: Verdict,
    /// The figure the verdict rests on, in words with its numbers.
    pub figure: String,
}

impl Check {
    fn new(name: &str, warn: bool, figure: String) -> Self {
        Self {
            name: name.to_string(),
            verdict: Verdict::of(warn),
            figure,
        }
    }
}

/// Randomness: the largest `|Δz|` between the logits of [`RANDOMNESS_PASSES`] forward passes
/// of `x [B, C, H, W]`; warns when it is not 0.
///
/// # Errors
/// Model errors.
pub fn randomness<T: Real, C: Classifier<T> + ?Sized>(
    model: &C,
    x: ArrayView4<T>,
) -> Result<Check> {
    let first = model.logits(x)?;
    let mut largest = 0.0_f64;
    for _ in 1..RANDOMNESS_PASSES {
        let again = model.logits(x)?;
        for (a, b) in first.iter().zip(&again) {
            largest = largest.max((a.f64() - b.f64()).abs());
        }
    }
    let figure = format!("max |Δlogit| over {RANDOMNESS_PASSES} forward passes = {largest:e}");
    Ok(Check::new("randomness", largest != 0.0, figure))
}

/// Softmax-like outputs: warns when every output of `x` is in [0, 1] and every row sums to 1
/// (within 1e-5), as probabilities do (attacks on the cross-entropy of probabilities see
/// flattened gradients).
///
/// # Errors
/// Model errors.
pub fn softmax_like<T: Real, C: Classifier<T> + ?Sized>(
    model: &C,
    x: ArrayView4<T>,
) -> Result<Check> {
    let z = model.logits(x)?;
    let (low, high) = z
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(v.f64()), h.max(v.f64()))
        });
    let off = z
        .outer_iter()
        .map(|row| (row.iter().map(|v| v.f64()).sum::<f64>() - 1.0).abs())
        .fold(0.0, f64::max);
    let warn = low >= 0.0 && high <= 1.0 && off <= SOFTMAX_TOLERANCE;
    let figure = format!("outputs in [{low:.4}, {high:.4}], max |Σ_k z_k − 1| = {off:.4}");
    Ok(Check::new("softmax-like", warn, figure))
}

/// Zero gradients: the images of `x` whose cross-entropy gradient at the clean image is 0 in
/// every entry; warns when there is any.
///
/// # Errors
/// Model errors; [`Error::Config`] for labels the model does not have.
pub fn zero_gradients<T: Real, C: Classifier<T> + ?Sized>(
    model: &C,
    x: ArrayView4<T>,
    labels: &[usize],
) -> Result<Check> {
    let (_, grad, _) = model.loss_input_grad(x, labels)?;
    let zero = grad
        .outer_iter()
        .filter(|g| g.iter().all(|v| *v == T::zero()))
        .count();
    let figure = format!(
        "{zero} of {} images with an all-zero gradient",
        labels.len()
    );
    Ok(Check::new("zero gradients", zero > 0, figure))
}

/// Square after the gradient attacks: warns when Square breaks more than [`DROP_TOLERANCE`] %
/// of the images in the suite's run (it should find little that APGD and FAB missed).
pub fn square_after_gradients(result: &AutoAttackResult) -> Check {
    let n = result.result.n.max(1);
    let by_square = result
        .images
        .iter()
        .filter(|r| r.broken_by == Some(SuiteAttack::Square))
        .count();
    let pct = 100.0 * by_square as f64 / n as f64;
    let figure = format!(
        "Square broke {by_square} of {n} images ({pct:.1} %) the gradient attacks left robust"
    );
    Check::new("square", pct > DROP_TOLERANCE, figure)
}

/// The APGD-CE of an AutoAttack or strong attack: the same ball, budget, steps and restarts.
///
/// # Errors
/// [`Error::Config`] for an attack that is not a strong one.
pub fn apgd_ce_of(attack: &Attack) -> Result<Attack> {
    let (eps, ball, steps, restarts) = match *attack {
        Attack::Apgd {
            eps,
            ball,
            steps,
            restarts,
            ..
        }
        | Attack::ApgdT {
            eps,
            ball,
            steps,
            restarts,
            ..
        }
        | Attack::FabT {
            eps,
            ball,
            steps,
            restarts,
            ..
        }
        | Attack::AutoAttack {
            eps,
            ball,
            steps,
            restarts,
            ..
        } => (eps, ball, steps, restarts),
        Attack::Square { eps, ball, .. } => (eps, ball, 100, 1),
        _ => {
            return Err(Error::config(
                "attack",
                attack.name(),
                "the masking checks need a strong attack",
            ))
        }
    };
    Ok(Attack::Apgd {
        eps,
        ball,
        loss: ApgdLoss::Ce,
        steps,
        restarts,
    })
}

/// The one rule for an attack whose gradients come from `surrogate` instead of `model`
/// (`nrpm eval --gradients-from lpm`): calls `f` with the classifier to attack.
/// - No surrogate: `model` itself (white box).
/// - A strong attack (APGD, FAB, Square, AutoAttack; [`Attack::is_strong`]): [`Bpda`], which
///   differentiates the surrogate but returns the model's logits, because these attacks steer
///   by the logits (loss, step-size control, early stop on success) and must steer by the
///   model's.
/// - PGD, FGSM and the single steps: the surrogate itself (a transfer attack); they use no
///   logits beyond the gradient, and their adversarial images are judged on the model by
///   [`evaluate_images`](super::evaluate_images).
pub fn with_gradients_from<T: Real, M: Classifier<T>, S: Classifier<T>, R>(
    attack: &Attack,
    model: &M,
    surrogate: Option<&S>,
    f: impl FnOnce(&dyn Classifier<T>) -> R,
) -> R {
    match surrogate {
        None => f(model),
        Some(surrogate) if Attack::is_strong(attack.name()) => f(&Bpda { model, surrogate }),
        Some(surrogate) => f(surrogate),
    }
}

/// A classifier that classifies with `model` and differentiates with `surrogate` (BPDA,
/// Athalye et al. 2018): the logit weights `v` a loss asks for are computed from the model's
/// logits, and the gradient is `J_surrogateᵀ·v`.
pub struct Bpda<'a, M: ?Sized, S: ?Sized> {
    /// The model classified.
    pub model: &'a M,
    /// The model differentiated (for NRPM: its LPM twin).
    pub surrogate: &'a S,
}

impl<M: ?Sized, S: ?Sized> Bpda<'_, M, S> {
    /// `J_surrogateᵀ·v` at `x`.
    fn pull_back<T: Real>(&self, x: ArrayView4<T>, v: Array2<T>) -> Result<Array4<T>>
    where
        S: Classifier<T>,
    {
        let (_, grad) = self
            .surrogate
            .logits_input_grad(x, &mut |_| Ok(v.clone()))?;
        Ok(grad)
    }
}

impl<T: Real, M: Classifier<T> + ?Sized, S: Classifier<T> + ?Sized> Classifier<T>
    for Bpda<'_, M, S>
{
    fn input_shape(&self) -> [usize; 3] {
        self.model.input_shape()
    }
    fn classes(&self) -> usize {
        self.model.classes()
    }
    fn logits(&self, x: ArrayView4<T>) -> Result<Array2<T>> {
        self.model.logits(x)
    }
    fn loss_input_grad(
        &self,
        x: ArrayView4<T>,
        labels: &[usize],
    ) -> Result<(T, Array4<T>, Array2<T>)> {
        let z = self.model.logits(x)?;
        let (loss, v) = loss::cross_entropy(z.view(), labels)?;
        Ok((loss, self.pull_back(x, v)?, z))
    }
    fn logits_input_grad(
        &self,
        x: ArrayView4<T>,
        upstream: &mut dyn FnMut(ArrayView2<T>) -> Result<Array2<T>>,
    ) -> Result<(Array2<T>, Array4<T>)> {
        let z = self.model.logits(x)?;
        let v = upstream(z.view())?;
        Ok((z, self.pull_back(x, v)?))
    }
}

/// LPM gradients: the robust accuracy under `attack` with the gradients of `surrogate`
/// (BPDA) against the white-box one; warns when the surrogate's is lower.
///
/// # Errors
/// As [`evaluate_attacks`].
pub fn lpm_gradients<T: Real, M: Classifier<T> + ?Sized, S: Classifier<T> + ?Sized>(
    model: &M,
    surrogate: &S,
    data: &Dataset,
    attack: &Attack,
    options: &EvalOptions,
    progress: &mut dyn Progress,
) -> Result<Check> {
    let white = accuracy(model, data, attack, options, progress)?;
    let bpda = Bpda { model, surrogate };
    let transferred = accuracy(&bpda, data, attack, options, progress)?;
    let figure = format!(
        "{}: white box {white:.1} %, LPM gradients {transferred:.1} %",
        attack.name().to_ascii_uppercase()
    );
    Ok(Check::new("lpm gradients", transferred < white, figure))
}

/// The budgets of the ε sweep for `ball` on images of `d` entries: ¼, ½ and 1 of the box's
/// reach (L∞: 1; L2: √d, the diagonal of [0, 1]^d).
pub fn sweep_budgets(ball: Ball, d: usize) -> [f64; 3] {
    let reach = match ball {
        Ball::Linf => 1.0,
        Ball::L2 => (d as f64).sqrt(),
    };
    [0.25 * reach, 0.5 * reach, reach]
}

/// ε sweep: `attack` (an APGD) at [`sweep_budgets`]; warns when the robust accuracy at the
/// largest, which reaches every image of the box, is not 0.
///
/// # Errors
/// As [`evaluate_attacks`]; [`Error::Config`] for an attack that is not an APGD.
pub fn eps_sweep<T: Real, M: Classifier<T> + ?Sized>(
    model: &M,
    data: &Dataset,
    attack: &Attack,
    options: &EvalOptions,
    progress: &mut dyn Progress,
) -> Result<Check> {
    let Attack::Apgd { ball, .. } = *attack else {
        return Err(Error::config(
            "attack",
            attack.name(),
            "the ε sweep runs APGD",
        ));
    };
    let [c, h, w] = model.input_shape();
    let mut figures = Vec::new();
    let mut last = 0.0;
    for eps in sweep_budgets(ball, c * h * w) {
        let at = with_eps(attack, eps);
        last = accuracy(model, data, &at, options, progress)?;
        figures.push(format!("ε = {eps:.3}: {last:.1} %"));
    }
    let figure = format!(
        "{}: {}",
        attack.name().to_ascii_uppercase(),
        figures.join(", ")
    );
    Ok(Check::new("eps sweep", last > 0.0, figure))
}

/// More effort: `attack` (an APGD) against the same with twice the steps and twice the
/// restarts; warns when the stronger one lowers the robust accuracy by more than
/// [`DROP_TOLERANCE`] percentage points.
///
/// # Errors
/// As [`evaluate_attacks`]; [`Error::Config`] for an attack that is not an APGD.
pub fn more_effort<T: Real, M: Classifier<T> + ?Sized>(
    model: &M,
    data: &Dataset,
    attack: &Attack,
    options: &EvalOptions,
    progress: &mut dyn Progress,
) -> Result<Check> {
    let Attack::Apgd {
        eps,
        ball,
        loss,
        steps,
        restarts,
    } = *attack
    else {
        return Err(Error::config(
            "attack",
            attack.name(),
            "more effort runs APGD",
        ));
    };
    let stronger = Attack::Apgd {
        eps,
        ball,
        loss,
        steps: 2 * steps,
        restarts: 2 * restarts,
    };
    let base = accuracy(model, data, attack, options, progress)?;
    let more = accuracy(model, data, &stronger, options, progress)?;
    let figure = format!("{attack}: {base:.1} %; {stronger}: {more:.1} %");
    Ok(Check::new(
        "more effort",
        base - more > DROP_TOLERANCE,
        figure,
    ))
}

/// Every check for one AutoAttack run `result` of `model` on `data`, with `surrogate` for the
/// LPM-gradient check: AutoAttack's four, then ours with the suite's APGD-CE.
///
/// # Errors
/// As the checks; [`Error::Config`] if `result`'s attack is not AutoAttack.
pub fn all<T: Real, M: Classifier<T> + ?Sized, S: Classifier<T> + ?Sized>(
    model: &M,
    surrogate: &S,
    data: &Dataset,
    result: &AutoAttackResult,
    options: &EvalOptions,
    progress: &mut dyn Progress,
) -> Result<Vec<Check>> {
    let attack = &result.result.attack;
    if !matches!(attack, Attack::AutoAttack { .. }) {
        return Err(Error::config("attack", attack.name(), "is not AutoAttack"));
    }
    let apgd = apgd_ce_of(attack)?;
    let x: Array4<T> = data.images().mapv(|v| T::of(f64::from(v)));
    Ok(vec![
        randomness(model, x.view())?,
        softmax_like(model, x.view())?,
        zero_gradients(model, x.view(), data.labels())?,
        square_after_gradients(result),
        lpm_gradients(model, surrogate, data, &apgd, options, progress)?,
        eps_sweep(model, data, &apgd, options, progress)?,
        more_effort(model, data, &apgd, options, progress)?,
    ])
}

/// The checks as a Markdown table: check, verdict, figure.
pub fn markdown(checks: &[Check]) -> String {
    let mut table = crate::report::markdown::Table::new(["check", "verdict", "figure"]);
    for c in checks {
        table.row([
            c.name.clone(),
            c.verdict.name().to_string(),
            c.figure.clone(),
        ]);
    }
    table.render()
}

/// `attack` (an APGD) at budget `eps`.
fn with_eps(attack: &Attack, eps: f64) -> Attack {
    let mut at = attack.clone();
    if let Attack::Apgd { eps: e, .. } = &mut at {
        *e = eps;
    }
    at
}

/// Robust accuracy (%) of `model` under `attack` on `data`.
fn accuracy<T: Real, M: Classifier<T> + ?Sized>(
    model: &M,
    data: &Dataset,
    attack: &Attack,
    options: &EvalOptions,
    progress: &mut dyn Progress,
) -> Result<f64> {
    let r = evaluate_attacks(model, data, std::slice::from_ref(attack), options, progress)?;
    Ok(r[0].robust_accuracy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{Model, ModelSpec};
    use std::cell::Cell;

    /// A seeded 10-class MLP on 1×4×4 images, and 3 images.
    fn model_and_images() -> (Model<f32>, Array4<f32>) {
        let mut model = Model::<f32>::new(ModelSpec::from_name("mlp1", 1, 4).unwrap());
        model.init(3);
        let x = Array4::from_shape_fn((3, 1, 4, 4), |(b, _, h, w)| {
            ((b + h * 4 + w) % 7) as f32 / 7.0
        });
        (model, x)
    }

    /// Wraps a model: softmax outputs, noisy logits, or zero gradients.
    struct Odd<'a> {
        model: &'a Model<f32>,
        kind: &'static str,
        calls: Cell<u32>,
    }

    impl Classifier<f32> for Odd<'_> {
        fn input_shape(&self) -> [usize; 3] {
            self.model.input_shape()
        }
        fn classes(&self) -> usize {
            Classifier::classes(self.model)
        }
        fn logits(&self, x: ArrayView4<f32>) -> Result<Array2<f32>> {
            let z = self.model.logits(x)?;
            self.calls.set(self.calls.get() + 1);
            Ok(match self.kind {
                "softmax" => loss::log_softmax(z.view()).mapv(f32::exp),
                "noisy" => z.mapv(|v| v + 1e-3 * self.calls.get() as f32),
                _ => z,
            })
        }
        fn loss_input_grad(
            &self,
            x: ArrayView4<f32>,
            labels: &[usize],
        ) -> Result<(f32, Array4<f32>, Array2<f32>)> {
            let (l, g, z) = self.model.loss_input_grad(x, labels)?;
            Ok((l, g.mapv(|v| v * 0.0), z))
        }
    }

    #[test]
    fn each_cheap_check_warns_on_its_symptom_and_passes_a_plain_model() {
        let (model, x) = model_and_images();
        let labels = [0, 1, 2];
        let odd = |kind| Odd {
            model: &model,
            kind,
            calls: Cell::new(0),
        };
        assert_eq!(randomness(&model, x.view()).unwrap().verdict, Verdict::Pass);
        assert_eq!(
            randomness(&odd("noisy"), x.view()).unwrap().verdict,
            Verdict::Warn
        );
        assert_eq!(
            softmax_like(&model, x.view()).unwrap().verdict,
            Verdict::Pass
        );
        assert_eq!(
            softmax_like(&odd("softmax"), x.view()).unwrap().verdict,
            Verdict::Warn
        );
        let plain = zero_gradients(&model, x.view(), &labels).unwrap();
        assert_eq!(plain.verdict, Verdict::Pass, "{}", plain.figure);
        let zero = zero_gradients(&odd("zero"), x.view(), &labels).unwrap();
        assert_eq!(zero.verdict, Verdict::Warn);
        assert!(zero.figure.starts_with("3 of 3"), "{}", zero.figure);
    }

    #[test]
    fn bpda_classifies_with_the_model_and_differentiates_the_surrogate() {
        let (model, x) = model_and_images();
        let mut other = Model::<f32>::new(ModelSpec::from_name("mlp1", 1, 4).unwrap());
        other.init(4);
        let bpda = Bpda {
            model: &model,
            surrogate: &other,
        };
        let labels = [0, 1, 2];
        let (_, g, z) = bpda.loss_input_grad(x.view(), &labels).unwrap();
        assert_eq!(z, model.logits(x.view()).unwrap());
        // The surrogate's backward with the model's cross-entropy weights p − e_y.
        let (_, v) = loss::cross_entropy(z.view(), &labels).unwrap();
        let (_, expected) = other
            .logits_input_grad(x.view(), &mut |_| Ok(v.clone()))
            .unwrap();
        assert_eq!(g, expected);
        let (_, own, _) = model.loss_input_grad(x.view(), &labels).unwrap();
        assert_ne!(g, own);
    }

    #[test]
    fn gradients_from_a_surrogate_follow_one_rule() {
        let (model, x) = model_and_images();
        let mut other = Model::<f32>::new(ModelSpec::from_name("mlp1", 1, 4).unwrap());
        other.init(4);
        let labels = [0, 1, 2];
        let pgd = Attack::PgdLinf {
            eps: 0.1,
            alpha: 0.05,
            steps: 2,
            random_start: false,
        };
        let apgd = Attack::Apgd {
            eps: 0.1,
            ball: Ball::Linf,
            loss: ApgdLoss::Ce,
            steps: 2,
            restarts: 1,
        };
        let seen = |attack: &Attack, surrogate: Option<&Model<f32>>| {
            with_gradients_from(attack, &model, surrogate, |c| {
                c.loss_input_grad(x.view(), &labels).unwrap()
            })
        };
        let own = model.loss_input_grad(x.view(), &labels).unwrap();
        let theirs = other.loss_input_grad(x.view(), &labels).unwrap();
        // No surrogate: the model, for any attack.
        assert_eq!(seen(&pgd, None).1, own.1);
        assert_eq!(seen(&apgd, None).1, own.1);
        // PGD: the surrogate itself (its logits and gradients: a transfer attack).
        let (_, g, z) = seen(&pgd, Some(&other));
        assert_eq!((g, z), (theirs.1.clone(), theirs.2));
        // A strong attack: BPDA, the model's logits with the surrogate's pull-back.
        let (_, g, z) = seen(&apgd, Some(&other));
        assert_eq!(z, own.2);
        assert_ne!(g, own.1);
        assert_ne!(g, theirs.1);
    }

    #[test]
    fn sweep_reaches_the_whole_box() {
        assert_eq!(sweep_budgets(Ball::Linf, 784), [0.25, 0.5, 1.0]);
        assert_eq!(sweep_budgets(Ball::L2, 4)[2], 2.0);
    }

    #[test]
    fn verdicts_name_themselves() {
        assert_eq!(Verdict::of(true).name(), "warn");
        assert_eq!(Verdict::of(false).name(), "pass");
    }
}
