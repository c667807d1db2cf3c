//! Seeded shuffling ([`permutation`]) and batching ([`Batches`] over a [`Dataset`]).

use std::borrow::Cow;

use ndarray::{s, CowArray, Ix4};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::Dataset;
use crate::error::{Error, Result};

/// A uniformly random permutation of `0..n`, fixed by `seed`: Fisher–Yates
/// (`rand::seq::SliceRandom::shuffle`) driven by `StdRng::seed_from_u64(seed)`.
///
/// The same `(n, seed)` gives the same permutation on every platform and run with this
/// version of the `rand` crate (0.10; a test pins the output, so a change is noticed).
///
/// # Example
/// ```
/// let p = nrpm::data::permutation(5, 42);
/// assert_eq!(p, nrpm::data::permutation(5, 42));
/// let mut sorted = p.clone();
/// sorted.sort();
/// assert_eq!(sorted, [0, 1, 2, 3, 4]);
/// ```
pub fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    order
}

/// One batch: `images [B, C, H, W]` and `labels [B]`, borrowed from the dataset for in-order
/// batches, gathered into owned arrays for shuffled ones.
#[derive(Clone, Debug)]
pub struct Batch<'a> {
    /// `[B, C, H, W]`, values in `[0, 1]`.
    pub images: CowArray<'a, f32, Ix4>,
    /// `[B]`.
    pub labels: Cow<'a, [usize]>,
    /// `[B]`: where each image is in the dataset (`images[k]` is the dataset's image
    /// `indices[k]`).
    pub indices: Vec<usize>,
}

/// Iterator over the batches of a [`Dataset`]; see [`Dataset::batches`] and
/// [`Dataset::shuffled_batches`]. Every image appears in exactly one batch; all batches hold
/// `batch_size` images except the last, which holds the rest.
#[derive(Clone, Debug)]
pub struct Batches<'a> {
    data: &'a Dataset,
    batch_size: usize,
    order: Option<Vec<usize>>,
    next: usize,
}

impl<'a> Batches<'a> {
    pub(crate) fn new(
        data: &'a Dataset,
        batch_size: usize,
        order: Option<Vec<usize>>,
    ) -> Result<Self> {
        if batch_size == 0 {
            return Err(Error::config("batch size", 0, "must be at least 1"));
        }
        debug_assert!(order.as_ref().is_none_or(|o| o.len() == data.len()));
        Ok(Self {
            data,
            batch_size,
            order,
            next: 0,
        })
    }
}

impl<'a> Iterator for Batches<'a> {
    type Item = Batch<'a>;

    fn next(&mut self) -> Option<Batch<'a>> {
        let (start, n) = (self.next, self.data.len());
        if start >= n {
            return None;
        }
        let end = (start + self.batch_size).min(n);
        self.next = end;
        Some(match &self.order {
            None => Batch {
                images: self
                    .data
                    .images()
                    .slice_move(s![start..end, .., .., ..])
                    .into(),
                labels: Cow::Borrowed(&self.data.labels()[start..end]),
                indices: (start..end).collect(),
            },
            Some(order) => {
                let (images, labels) = self.data.select_unchecked(&order[start..end]).into_parts();
                Batch {
                    images: images.into(),
                    labels: Cow::Owned(labels),
                    indices: order[start..end].to_vec(),
                }
            }
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self
            .data
            .len()
            .saturating_sub(self.next)
            .div_ceil(self.batch_size);
        (left, Some(left))
    }
}

impl ExactSizeIterator for Batches<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array4;

    fn toy(n: usize) -> Dataset {
        let images = Array4::from_shape_fn((n, 1, 1, 1), |(i, ..)| i as f32 / n as f32);
        Dataset::new("toy", images, (0..n).map(|i| i % 10).collect(), 10).unwrap()
    }

    #[test]
    fn permutation_is_pinned_for_seed_zero() {
        // Pins StdRng + shuffle of rand 0.10: if a rand upgrade changes the order, seeded
        // experiments stop being reproducible across versions, and this test says so.
        assert_eq!(permutation(10, 0), PINNED_SEED0_N10);
        assert_eq!(permutation(0, 0), Vec::<usize>::new());
        assert_eq!(permutation(1, 5), vec![0]);
    }
    const PINNED_SEED0_N10: [usize; 10] = [1, 0, 7, 3, 6, 4, 5, 9, 8, 2];

    #[test]
    fn permutation_covers_every_index_once_and_depends_on_seed() {
        for seed in 0..20 {
            let mut p = permutation(100, seed);
            assert_ne!(
                p,
                (0..100).collect::<Vec<_>>(),
                "seed {seed} left the order unchanged"
            );
            p.sort_unstable();
            assert_eq!(p, (0..100).collect::<Vec<_>>());
        }
        assert_ne!(permutation(100, 0), permutation(100, 1));
    }

    #[test]
    fn batches_cover_the_data_in_order_and_borrow() {
        let ds = toy(23);
        let b = ds.batches(5).unwrap();
        assert_eq!(b.len(), 5);
        let all: Vec<Batch> = b.collect();
        assert_eq!(
            all.iter().map(|b| b.labels.len()).collect::<Vec<_>>(),
            [5, 5, 5, 5, 3]
        );
        assert!(all
            .iter()
            .all(|b| b.images.is_view() && matches!(b.labels, Cow::Borrowed(_))));
        let pixels: Vec<f32> = all.iter().flat_map(|b| b.images.iter().copied()).collect();
        assert_eq!(pixels, ds.images().iter().copied().collect::<Vec<_>>());
        let indices: Vec<usize> = all.iter().flat_map(|b| b.indices.clone()).collect();
        assert_eq!(indices, (0..23).collect::<Vec<_>>());
        assert_eq!(ds.batches(23).unwrap().count(), 1);
        assert_eq!(ds.batches(100).unwrap().count(), 1);
        assert!(matches!(ds.batches(0), Err(Error::Config { .. })));
        assert_eq!(toy(0).batches(4).unwrap().count(), 0);
    }

    #[test]
    fn shuffled_batches_follow_the_seeded_permutation() {
        let ds = toy(23);
        let order = permutation(23, 9);
        let mut it = ds.shuffled_batches(4, 9).unwrap();
        assert_eq!(it.len(), 6);
        let first = it.next().unwrap();
        assert_eq!(it.len(), 5);
        assert_eq!(first.indices, order[..4]);
        for (k, &i) in order[..4].iter().enumerate() {
            assert_eq!(first.images[[k, 0, 0, 0]], ds.images()[[i, 0, 0, 0]]);
            assert_eq!(first.labels[k], ds.labels()[i]);
        }
        let labels: Vec<usize> = ds
            .shuffled_batches(4, 9)
            .unwrap()
            .flat_map(|b| b.labels.into_owned())
            .collect();
        assert_eq!(labels, ds.shuffled(9).labels());
        let indices: Vec<usize> = it.flat_map(|b| b.indices).collect();
        assert_eq!(indices, order[4..]);
    }
}
