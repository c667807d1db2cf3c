//! The per-image worst case over several evaluations of one model on the same images and
//! budgets (for example APGD-CE, APGD-T, FAB-T and Square run as separate jobs): an image is
//! robust at a budget only when every attack left it correct, and the first attack (in the
//! order given) that broke it is named.
//!
//! ```text
//! robust(i, b)    = ⋀ₐ robust_a(i, b)                 (clean wrong ⇒ not robust)
//! broken_by(i, b) = min { a : ¬robust_a(i, b) }        (None when robust, or clean wrong)
//! accuracy(b)     = 100·#{i : robust(i, b)}/n
//! ```

use serde::{Deserialize, Serialize};

use super::eval::ImageOutcome;
use crate::error::{Error, Result};

/// One image's worst case over the attacks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageWorstCase {
    /// The image's index in the evaluated dataset.
    pub index: usize,
    /// Its true label.
    pub label: usize,
    /// Whether the model classifies the clean image correctly.
    pub clean_correct: bool,
    /// Per budget: correct after every attack.
    pub robust_correct: Vec<bool>,
    /// Per budget: the index (in the order given) of the first attack that broke it.
    pub broken_by: Vec<Option<usize>>,
}

/// The worst case over `runs` (one evaluation each, its outcomes in any order), image by image.
/// Every run must hold the same images with the same labels and clean results (the same model
/// on the same data) and the same number of budgets.
///
/// # Errors
/// [`Error::Config`] for no run, or runs that differ in their images, labels, clean results
/// or number of budgets (naming the first difference).
///
/// # Example
/// ```
/// use nrpm::attacks::{worst_case, ImageOutcome};
/// let image = |robust: bool| ImageOutcome {
///     index: 0, label: 3, clean_correct: true, robust_correct: vec![robust],
///     clean_seconds: 0.0, seconds: vec![0.0],
/// };
/// let worst = worst_case(&[vec![image(true)], vec![image(false)]])?;
/// assert_eq!((worst[0].robust_correct[0], worst[0].broken_by[0]), (false, Some(1)));
/// # Ok::<(), nrpm::Error>(())
/// ```
pub fn worst_case(runs: &[Vec<ImageOutcome>]) -> Result<Vec<ImageWorstCase>> {
    let Some(first) = runs.first() else {
        return Err(Error::config(
            "runs",
            0,
            "a worst case needs at least one run",
        ));
    };
    let sorted: Vec<Vec<&ImageOutcome>> = runs
        .iter()
        .map(|r| {
            let mut v: Vec<&ImageOutcome> = r.iter().collect();
            v.sort_by_key(|o| o.index);
            v
        })
        .collect();
    for (a, run) in sorted.iter().enumerate().skip(1) {
        check_same(&sorted[0], run, a, first.len())?;
    }
    Ok((0..sorted[0].len())
        .map(|i| combine(sorted.iter().map(|run| run[i])))
        .collect())
}

/// Refuses run `a` when it is not the same model on the same images as run 0.
fn check_same(base: &[&ImageOutcome], run: &[&ImageOutcome], a: usize, n: usize) -> Result<()> {
    if run.len() != n {
        return Err(Error::config(
            "run",
            format!("{a}: {} images", run.len()),
            "must hold as many images as the first run",
        ));
    }
    for (x, y) in base.iter().zip(run) {
        let same = x.index == y.index
            && x.label == y.label
            && x.clean_correct == y.clean_correct
            && x.robust_correct.len() == y.robust_correct.len();
        if !same {
            return Err(Error::config(
                "run",
                format!("{a}, image {}", y.index),
                "differs from the first run in its images, labels, clean result or number of \
                 budgets: not the same model on the same data",
            ));
        }
    }
    Ok(())
}

/// One image's worst case from its outcome under each attack, in order.
fn combine<'a>(mut outcomes: impl Iterator<Item = &'a ImageOutcome>) -> ImageWorstCase {
    let first = outcomes.next().expect("at least one run");
    let budgets = first.robust_correct.len();
    let mut worst = ImageWorstCase {
        index: first.index,
        label: first.label,
        clean_correct: first.clean_correct,
        robust_correct: first.robust_correct.clone(),
        broken_by: vec![None; budgets],
    };
    let mark = |w: &mut ImageWorstCase, a: usize, o: &ImageOutcome| {
        for b in 0..budgets {
            if w.clean_correct && w.broken_by[b].is_none() && !o.robust_correct[b] {
                w.broken_by[b] = Some(a);
            }
            w.robust_correct[b] &= o.robust_correct[b];
        }
    };
    mark(&mut worst, 0, first);
    for (a, o) in outcomes.enumerate() {
        mark(&mut worst, a + 1, o);
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(index: usize, clean: bool, robust: &[bool]) -> ImageOutcome {
        ImageOutcome {
            index,
            label: index % 10,
            clean_correct: clean,
            robust_correct: robust.to_vec(),
            clean_seconds: 0.0,
            seconds: vec![0.0; robust.len()],
        }
    }

    #[test]
    fn an_image_is_robust_only_when_every_attack_left_it_correct() {
        let a = vec![
            outcome(1, true, &[true, true]),
            outcome(0, true, &[true, false]),
        ];
        let b = vec![
            outcome(0, true, &[false, false]),
            outcome(1, true, &[true, true]),
        ];
        let c = vec![
            outcome(0, true, &[true, true]),
            outcome(1, true, &[true, false]),
        ];
        let w = worst_case(&[a, b, c]).unwrap();
        assert_eq!(w[0].index, 0);
        assert_eq!(w[0].robust_correct, [false, false]);
        assert_eq!(w[0].broken_by, [Some(1), Some(0)]);
        assert_eq!(w[1].robust_correct, [true, false]);
        assert_eq!(w[1].broken_by, [None, Some(2)]);
    }

    #[test]
    fn a_clean_error_is_broken_by_no_attack() {
        let a = vec![outcome(0, false, &[false])];
        let w = worst_case(&[a.clone(), a]).unwrap();
        assert_eq!((w[0].robust_correct[0], w[0].broken_by[0]), (false, None));
    }

    #[test]
    fn runs_of_other_images_or_models_are_refused() {
        let a = vec![outcome(0, true, &[true])];
        assert!(worst_case(&[]).is_err());
        assert!(worst_case(&[a.clone(), vec![outcome(1, true, &[true])]]).is_err());
        assert!(worst_case(&[a.clone(), vec![outcome(0, false, &[false])]]).is_err());
        assert!(worst_case(&[a.clone(), vec![outcome(0, true, &[true, true])]]).is_err());
        assert!(worst_case(&[a.clone(), vec![]]).is_err());
    }
}
