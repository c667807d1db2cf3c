//! The robustness bracket: at each budget, the verified accuracy (images certified: a lower
//! bound on robust accuracy) beside the robust accuracy under the strongest attack (images
//! the attack did not break: an upper bound).
//!
//! ```text
//! certified_b   = the certificate's margin lower bounds are all > 0 over the threat set
//! broken_b      = a falsifier's candidate at some b′ ≤ b lies in the threat set (b′'s set is
//!                 inside b's) and is misclassified
//! verified %    = 100·#{certified} / n   ≤   true robust %   ≤   100·#{clean correct, not broken} / n
//! contradiction = certified and (broken or misclassified clean): a wrong bound or attack
//! ```
//!
//! A contradiction is never a result: [`Bracket::check`] turns it into [`Error::Unsound`].
//! Every candidate is checked here (inside the ball or within k changed entries, in [0, 1])
//! before it counts; a candidate outside the threat set is itself an error.

use std::time::Instant;

use ndarray::{Array4, ArrayView3, ArrayView4, Axis};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::certify::falsify::Falsifier;
use crate::certify::{check_budget, crown, interval, l0, Network};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::models::Model;
use crate::progress::Progress;
use crate::real::Real;

/// A deterministic certificate and its threat model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Method {
    /// Interval bound propagation, L∞ ball ∩ [0, 1].
    Ibp,
    /// Back-substitution (CROWN), L∞ ball ∩ [0, 1].
    Crown,
    /// k changed pixels, values in [0, 1].
    L0,
}

impl Method {
    /// The method called `name` (`ibp`, `crown`, `l0`).
    ///
    /// # Errors
    /// [`Error::UnknownName`] for another name.
    pub fn from_name(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "ibp" => Ok(Self::Ibp),
            "crown" => Ok(Self::Crown),
            "l0" => Ok(Self::L0),
            _ => Err(Error::UnknownName {
                what: "certificate",
                name: name.to_string(),
                expected: "ibp, crown, l0 (and smoothing in the command)".into(),
            }),
        }
    }

    /// `ibp`, `crown` or `l0`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ibp => "ibp",
            Self::Crown => "crown",
            Self::L0 => "l0",
        }
    }

    /// Checks a budget: ε finite and ≥ 0, or a whole number of pixels.
    ///
    /// # Errors
    /// [`Error::Config`] otherwise.
    pub fn check_budget(self, budget: f64) -> Result<()> {
        match self {
            Self::L0 if budget.fract() != 0.0 || budget < 0.0 || !budget.is_finite() => Err(
                Error::config("pixels", budget, "must be a whole number ≥ 0"),
            ),
            Self::L0 => Ok(()),
            _ => check_budget("eps", budget),
        }
    }

    /// The lowest margin bound of image `x [C, H, W]` at `budget` (> 0: certified).
    ///
    /// # Errors
    /// The certificate's errors.
    pub fn min_margin<T: Real>(
        self,
        net: &Network,
        x: ArrayView3<T>,
        label: usize,
        budget: f64,
    ) -> Result<f64> {
        self.check_budget(budget)?;
        let cert = match self {
            Self::Ibp => interval::certify(net, x, label, budget)?,
            Self::Crown => crown::certify(net, x, label, budget)?,
            Self::L0 => l0::certify(net, x, label, budget as usize)?,
        };
        Ok(cert.min_margin())
    }

    /// Whether `adv` lies in the threat set of `x` at `budget` (`tol` for rounding in L∞).
    fn inside<T: Real>(self, x: ArrayView3<T>, adv: ArrayView3<T>, budget: f64, tol: f64) -> bool {
        let unit = adv.iter().all(|v| v.f64() >= 0.0 && v.f64() <= 1.0);
        let within = match self {
            Self::L0 => x.iter().zip(adv.iter()).filter(|(a, b)| a != b).count() <= budget as usize,
            _ => x
                .iter()
                .zip(adv.iter())
                .all(|(a, b)| (a.f64() - b.f64()).abs() <= budget + tol),
        };
        unit && within
    }
}

/// One image at one budget.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageOutcome {
    /// Index in the dataset.
    pub idx: usize,
    /// Classified correctly without perturbation.
    pub clean_correct: bool,
    /// The lowest margin lower bound (> 0: certified).
    pub min_margin: f64,
    /// Certified robust.
    pub certified: bool,
    /// Broken by the falsifier: a valid, misclassified candidate at this budget or at a
    /// smaller one of the run.
    pub broken: bool,
}

/// The bracket at one budget.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BracketRow {
    /// ε (L∞) or the number of pixels (ℓ0).
    pub budget: f64,
    /// Images evaluated.
    pub n: usize,
    /// Images classified correctly without perturbation.
    pub clean_correct: usize,
    /// Images certified (the lower bound's count).
    pub certified: usize,
    /// `100·certified / n` (%).
    pub certified_accuracy: f64,
    /// Images correct and not broken by the attack (the upper bound's count).
    pub attacked_correct: usize,
    /// `100·attacked_correct / n` (%).
    pub attacked_accuracy: f64,
    /// Dataset indices of images certified yet broken or misclassified: must be empty.
    pub contradictions: Vec<usize>,
    /// Wall time of the certificates (s).
    pub certify_seconds: f64,
    /// Wall time of the attack (s).
    pub attack_seconds: f64,
    /// Every image's outcome.
    pub images: Vec<ImageOutcome>,
}

/// The bracket of one method over budgets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bracket {
    /// The certificate.
    pub method: Method,
    /// The attack, in words.
    pub attack: String,
    /// One row per budget, in the order given.
    pub rows: Vec<BracketRow>,
}

impl Bracket {
    /// `Ok` when no image was certified and broken at any budget.
    ///
    /// # Errors
    /// [`Error::Unsound`] naming the first budget with contradictions and its images.
    pub fn check(&self) -> Result<()> {
        match self.rows.iter().find(|r| !r.contradictions.is_empty()) {
            None => Ok(()),
            Some(r) => Err(Error::Unsound {
                method: self.method.name().to_string(),
                budget: r.budget,
                images: r.contradictions.clone(),
            }),
        }
    }
}

/// The bracket of `model` on every image of `data` at each budget: `method`'s certificate per
/// image (in parallel) and `falsifier`'s attack (in batches of `batch` images), checked
/// against each other. `indices[i]` is image i's index in its dataset: it names the image in
/// the outcomes and seeds its random draws (so figures do not depend on batches or shards).
/// Contradictions are recorded, not raised: call [`Bracket::check`].
///
/// Certificates hold for the real-valued network in f64; use a `Model<f64>` so that the
/// attacked network is the certified one up to f64 rounding.
///
/// # Errors
/// [`Error::Config`] for an empty dataset or budget list, a bad budget or batch size;
/// [`Error::Shape`] unless `indices` has one entry per image;
/// [`Error::CannotBound`] for a network the method cannot bound; an attack candidate outside
/// the threat set ([`Error::Config`]); model errors.
#[allow(clippy::too_many_arguments)] // the model, its images and the run's six settings
pub fn bracket<T: Real>(
    model: &Model<T>,
    data: &Dataset,
    indices: &[usize],
    method: Method,
    budgets: &[f64],
    falsifier: &dyn Falsifier<T>,
    batch: usize,
    progress: &mut dyn Progress,
) -> Result<Bracket> {
    if indices.len() != data.len() {
        return Err(Error::shape(
            "certify::bracket",
            "indices",
            &[data.len()],
            &[indices.len()],
        ));
    }
    if data.is_empty() || budgets.is_empty() || batch == 0 {
        return Err(Error::config(
            "bracket",
            format!(
                "{} images, {} budgets, batch {batch}",
                data.len(),
                budgets.len()
            ),
            "needs images, budgets and a batch ≥ 1",
        ));
    }
    budgets.iter().try_for_each(|&b| method.check_budget(b))?;
    let net = Network::new(model)?;
    let images: Array4<T> = data.images().mapv(|v| T::of(f64::from(v)));
    let labels = data.labels();
    let clean = model.predict(images.view())?;
    progress.start(
        &format!("{} bracket", method.name()),
        (budgets.len() * data.len()) as u64,
    );
    let run_at = |budget| Run {
        model,
        images: images.view(),
        labels,
        indices,
        clean: &clean,
        method,
        budget,
    };
    let mut measured = Vec::with_capacity(budgets.len());
    for &budget in budgets {
        let clock = Instant::now();
        let margins: Vec<f64> = (0..data.len())
            .into_par_iter()
            .map(|i| method.min_margin(&net, images.index_axis(Axis(0), i), labels[i], budget))
            .collect::<Result<_>>()?;
        let certify_seconds = clock.elapsed().as_secs_f64();
        let clock = Instant::now();
        let broken = attack_all(&run_at(budget), falsifier, batch, progress)?;
        let attack_seconds = clock.elapsed().as_secs_f64();
        measured.push(Measured {
            budget,
            margins,
            broken,
            seconds: [certify_seconds, attack_seconds],
        });
    }
    let rows = measured
        .iter()
        .map(|m| {
            row(
                &run_at(m.budget),
                &m.margins,
                &broken_within(&measured, m.budget),
                m.seconds,
            )
        })
        .collect();
    progress.finish(&format!(
        "{} bracket: {} images at {} budget(s)",
        method.name(),
        data.len(),
        budgets.len()
    ));
    Ok(Bracket {
        method,
        attack: falsifier.describe(),
        rows,
    })
}

/// What one budget measured: margin lower bounds, the images its own attack broke, and the
/// wall times `[certificates, attack]`.
struct Measured {
    budget: f64,
    margins: Vec<f64>,
    broken: Vec<bool>,
    seconds: [f64; 2],
}

/// The images broken within `budget`: by the attack at `budget` or at any smaller budget,
/// whose threat set (a smaller ball, fewer pixels) lies inside this one, so its candidates
/// count here too. The upper bound then falls with the budget, as the true robust accuracy
/// does.
fn broken_within(measured: &[Measured], budget: f64) -> Vec<bool> {
    let n = measured.first().map_or(0, |m| m.broken.len());
    (0..n)
        .map(|i| measured.iter().any(|m| m.budget <= budget && m.broken[i]))
        .collect()
}

/// One budget's inputs.
struct Run<'a, T: Real> {
    model: &'a Model<T>,
    images: ArrayView4<'a, T>,
    labels: &'a [usize],
    indices: &'a [usize],
    clean: &'a [usize],
    method: Method,
    budget: f64,
}

/// Whether the falsifier broke each image (clean-misclassified images are not attacked).
fn attack_all<T: Real>(
    run: &Run<T>,
    falsifier: &dyn Falsifier<T>,
    batch: usize,
    progress: &mut dyn Progress,
) -> Result<Vec<bool>> {
    let labels = run.labels;
    let correct: Vec<usize> = (0..labels.len())
        .filter(|&i| run.clean[i] == labels[i])
        .collect();
    let mut broken = vec![false; labels.len()];
    let tol = if T::DTYPE == "f32" { 1e-6 } else { 1e-12 };
    for chunk in correct.chunks(batch) {
        let x = run.images.select(Axis(0), chunk);
        let ys: Vec<usize> = chunk.iter().map(|&i| labels[i]).collect();
        let ids: Vec<usize> = chunk.iter().map(|&i| run.indices[i]).collect();
        let adv = falsifier.attack(run.model, x.view(), &ys, &ids, run.budget)?;
        if adv.dim() != x.dim() {
            return Err(Error::shape(
                "certify::bracket",
                "attack candidates",
                x.shape(),
                adv.shape(),
            ));
        }
        let pred = run.model.predict(adv.view())?;
        for (j, &i) in chunk.iter().enumerate() {
            if !run.method.inside(
                x.index_axis(Axis(0), j),
                adv.index_axis(Axis(0), j),
                run.budget,
                tol,
            ) {
                return Err(Error::config(
                    "attack candidate",
                    format!("image {} at budget {}", run.indices[i], run.budget),
                    "lies outside the threat set: the attack is wrong",
                ));
            }
            broken[i] = pred[j] != labels[i];
        }
        progress.advance(chunk.len() as u64);
    }
    progress.advance((labels.len() - correct.len()) as u64);
    Ok(broken)
}

/// The counts of one budget.
fn row<T: Real>(
    run: &Run<T>,
    margins: &[f64],
    broken: &[bool],
    [certify_seconds, attack_seconds]: [f64; 2],
) -> BracketRow {
    let n = run.labels.len();
    let images: Vec<ImageOutcome> = (0..n)
        .map(|i| ImageOutcome {
            idx: run.indices[i],
            clean_correct: run.clean[i] == run.labels[i],
            min_margin: margins[i],
            certified: margins[i] > 0.0,
            broken: broken[i],
        })
        .collect();
    let count = |f: &dyn Fn(&ImageOutcome) -> bool| images.iter().filter(|o| f(o)).count();
    let certified = count(&|o| o.certified);
    let attacked_correct = count(&|o| o.clean_correct && !o.broken);
    let percent = |c: usize| 100.0 * c as f64 / n as f64;
    BracketRow {
        budget: run.budget,
        n,
        clean_correct: count(&|o| o.clean_correct),
        certified,
        certified_accuracy: percent(certified),
        attacked_correct,
        attacked_accuracy: percent(attacked_correct),
        contradictions: images
            .iter()
            .filter(|o| o.certified && (o.broken || !o.clean_correct))
            .map(|o| o.idx)
            .collect(),
        certify_seconds,
        attack_seconds,
        images,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(budget: f64, broken: &[bool]) -> Measured {
        Measured {
            budget,
            margins: vec![0.0; broken.len()],
            broken: broken.to_vec(),
            seconds: [0.0; 2],
        }
    }

    #[test]
    fn an_image_broken_at_a_smaller_budget_is_broken_at_every_larger_one() {
        // Budgets in any order: 0.1 broke image 0, 0.05 broke image 1, 0.2 broke none.
        let m = [
            measured(0.1, &[true, false, false]),
            measured(0.05, &[false, true, false]),
            measured(0.2, &[false, false, false]),
        ];
        assert_eq!(broken_within(&m, 0.05), [false, true, false]);
        assert_eq!(broken_within(&m, 0.1), [true, true, false]);
        assert_eq!(broken_within(&m, 0.2), [true, true, false]);
        assert!(broken_within(&[], 0.1).is_empty());
    }
}
