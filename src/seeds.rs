//! Seeds derived from a run's seed, so that every random draw can be named by what it is for
//! (a stream) and where (an epoch, a batch, an image) — the same name, the same draw, whatever
//! the batch size, the order of the work, the thread count or the shard.
//!
//! ```text
//! derive(seed, [a, b, c, …]) = splitmix(… splitmix(splitmix(seed ⊕ a) ⊕ b) ⊕ c …)
//! ```
//!
//! [`ImageRngs`] holds one generator per image of a batch, each seeded from (seed, stream,
//! the image's index in its dataset): what an attack or a smoothing certificate draws for an
//! image does not depend on which batch or shard it is in.

use rand::rngs::StdRng;
use rand::SeedableRng;

/// SplitMix64's finaliser: a bijective mix of 64 bits.
pub fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A seed derived from `seed` and the `parts` that name a draw (a stream tag, an epoch, an
/// image index, …): `splitmix(… splitmix(seed ⊕ p₀) ⊕ p₁ …)`.
///
/// ```
/// use nrpm::seeds::derive;
/// assert_eq!(derive(7, &[1, 2]), derive(7, &[1, 2]));
/// assert_ne!(derive(7, &[1, 2]), derive(7, &[2, 1]));
/// assert_ne!(derive(7, &[1, 2]), derive(8, &[1, 2]));
/// ```
pub fn derive(seed: u64, parts: &[u64]) -> u64 {
    parts.iter().fold(seed, |s, &p| splitmix(s ^ p))
}

/// Stream tags of the draws nrpm makes, so that different uses of one seed never share draws.
pub mod stream {
    /// Attack random starts and restarts (`attacks`).
    pub const ATTACK: u64 = 0x6174_7461_636b; // "attack"
    /// Target classes of targeted attacks.
    pub const TARGETS: u64 = 0x7a72_6765_7473;
    /// Randomized-smoothing noise (`certify`).
    pub const SMOOTHING: u64 = 0x736d_6f6f_7468; // "smooth"
}

/// One generator per image of a batch, each seeded from `(seed, stream, image index)`.
#[derive(Debug)]
pub struct ImageRngs {
    rngs: Vec<StdRng>,
}

impl ImageRngs {
    /// Generators for the images whose dataset indices are `indices` (in batch order).
    ///
    /// ```
    /// use nrpm::rand::RngExt;
    /// use nrpm::seeds::{stream, ImageRngs};
    /// let mut a = ImageRngs::for_images(3, stream::ATTACK, [10, 11, 12]);
    /// let mut b = ImageRngs::for_images(3, stream::ATTACK, [11]);
    /// // Image 11 draws the same whether it is second in a batch of three or alone.
    /// assert_eq!(a.get_mut(1).random::<u64>(), b.get_mut(0).random::<u64>());
    /// ```
    pub fn for_images(seed: u64, stream: u64, indices: impl IntoIterator<Item = usize>) -> Self {
        Self {
            rngs: indices
                .into_iter()
                .map(|i| StdRng::seed_from_u64(derive(seed, &[stream, i as u64])))
                .collect(),
        }
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.rngs.len()
    }

    /// `true` for no image.
    pub fn is_empty(&self) -> bool {
        self.rngs.is_empty()
    }

    /// The generator of image `b` of the batch.
    ///
    /// # Panics
    /// If `b ≥ len()` (callers index within the batch they built these for).
    pub fn get_mut(&mut self, b: usize) -> &mut StdRng {
        &mut self.rngs[b]
    }

    /// The generators of the images `keep` (distinct batch positions), in that order; they
    /// continue from where they are, and the others are dropped.
    ///
    /// # Panics
    /// If a position is out of range or repeated (callers pass positions of their own batch).
    pub fn select(self, keep: &[usize]) -> Self {
        let mut all: Vec<Option<StdRng>> = self.rngs.into_iter().map(Some).collect();
        Self {
            rngs: keep
                .iter()
                .map(|&b| all[b].take().expect("distinct batch positions"))
                .collect(),
        }
    }

    /// Every generator, in batch order.
    pub fn iter_mut(&mut self) -> std::slice::IterMut<'_, StdRng> {
        self.rngs.iter_mut()
    }
}
