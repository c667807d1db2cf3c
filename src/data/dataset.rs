//! [`Dataset`]: images `[N, C, H, W]` in `[0, 1]` with their labels; subsets and shuffling.

use std::ops::Range;

use ndarray::{Array4, ArrayView4, Axis};

use super::batch::{permutation, Batches};
use super::{idx, Split, MNIST_SUBSET_DIR};
use crate::error::{Error, Result};

/// What identifies a dataset: its name (source and split, e.g. `mnist-subset/train`), its
/// number of images and the SHA-256 of its contents ([`Dataset::sha256`]). Two records
/// describe the same data when `n` and `sha256` agree (the name may differ when the files
/// moved).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DataRecord {
    /// Name (source and split).
    pub name: String,
    /// Number of images.
    pub n: usize,
    /// SHA-256 of the contents, hex.
    pub sha256: String,
}

impl DataRecord {
    /// Whether `other` holds the same images and labels (count and hash agree).
    pub fn same_data(&self, other: &DataRecord) -> bool {
        self.n == other.n && self.sha256 == other.sha256
    }
}

/// Labelled images: `images [N, C, H, W]` (NCHW, PyTorch's layout) with every value in
/// `[0, 1]`, `labels [N]` with every label `< classes`. [`Dataset::new`] checks all of it, so
/// the fields are private and always consistent.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    name: String,
    images: Array4<f32>,
    labels: Vec<usize>,
    classes: usize,
}

impl Dataset {
    /// A dataset from its parts; `name` is for reports (e.g. `"mnist-subset/test"`).
    ///
    /// # Errors
    /// [`Error::Shape`] if `labels` has another length than `images` has images;
    /// [`Error::Config`] if `classes` is 0, a label is `≥ classes`, or a pixel is outside
    /// `[0, 1]` (NaN included).
    ///
    /// # Example
    /// ```
    /// # fn main() -> nrpm::Result<()> {
    /// let images = ndarray::Array4::<f32>::zeros((2, 1, 4, 4));
    /// let ds = nrpm::data::Dataset::new("toy", images.clone(), vec![0, 1], 2)?;
    /// assert_eq!((ds.len(), ds.image_shape()), (2, [1, 4, 4]));
    /// assert!(nrpm::data::Dataset::new("toy", images, vec![0, 2], 2).is_err()); // label 2 ≥ 2
    /// # Ok(()) }
    /// ```
    pub fn new(
        name: impl Into<String>,
        images: Array4<f32>,
        labels: Vec<usize>,
        classes: usize,
    ) -> Result<Self> {
        if labels.len() != images.shape()[0] {
            return Err(Error::shape(
                "data::Dataset::new",
                "labels (one per image)",
                &[images.shape()[0]],
                &[labels.len()],
            ));
        }
        if classes == 0 {
            return Err(Error::config("classes", 0, "must be at least 1"));
        }
        if let Some(i) = labels.iter().position(|&l| l >= classes) {
            return Err(Error::config(
                "label",
                format!("{} at index {i}", labels[i]),
                "must be below the number of classes",
            ));
        }
        if let Some((i, v)) = images
            .iter()
            .enumerate()
            .find(|(_, v)| !(0.0..=1.0).contains(*v))
        {
            return Err(Error::config(
                "pixel",
                format!("{v} at flat index {i}"),
                "must lie in [0, 1]",
            ));
        }
        Ok(Self {
            name: name.into(),
            images,
            labels,
            classes,
        })
    }

    /// The MNIST subset shipped in the repository, read from [`MNIST_SUBSET_DIR`]
    /// (`data/mnist-subset/`, located through `env!("CARGO_MANIFEST_DIR")`): the first 5 000
    /// training images, or the first 1 000 test images (those the paper evaluates on), in the
    /// original order, `[N, 1, 28, 28]`, named `"mnist-subset/<split>"`. This is what the CLI's
    /// `--data mnist-subset` loads.
    ///
    /// # Errors
    /// As [`idx::load_mnist_like`]: [`Error::Io`] if the binary runs where the source tree is
    /// not (load a copy of the folder with `load_mnist_like` instead).
    ///
    /// # Example
    /// ```
    /// # fn main() -> nrpm::Result<()> {
    /// let train = nrpm::data::Dataset::mnist_subset(nrpm::data::Split::Train)?;
    /// assert_eq!(train.images().shape(), &[5000, 1, 28, 28]);
    /// assert_eq!(&train.labels()[..5], &[5, 0, 4, 1, 9]);
    /// # Ok(()) }
    /// ```
    pub fn mnist_subset(split: Split) -> Result<Self> {
        idx::load_mnist_like(MNIST_SUBSET_DIR, split)
    }

    /// The name given at construction.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The images, `[N, C, H, W]`, values in `[0, 1]`.
    pub fn images(&self) -> ArrayView4<'_, f32> {
        self.images.view()
    }

    /// The labels, `[N]`, each `< classes()`.
    pub fn labels(&self) -> &[usize] {
        &self.labels
    }

    /// The number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// N, the number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// `true` if there is no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// `[C, H, W]` of one image.
    pub fn image_shape(&self) -> [usize; 3] {
        let s = self.images.shape();
        [s[1], s[2], s[3]]
    }

    /// The images and labels, consuming the dataset.
    pub fn into_parts(self) -> (Array4<f32>, Vec<usize>) {
        (self.images, self.labels)
    }

    /// Images `range.start..range.end`, in order, same name and classes.
    ///
    /// # Errors
    /// [`Error::Config`] if the range is reversed or ends after `len()`.
    ///
    /// # Example
    /// ```
    /// # fn main() -> nrpm::Result<()> {
    /// let test = nrpm::data::Dataset::mnist_subset(nrpm::data::Split::Test)?;
    /// assert_eq!(test.subset(1..3)?.labels(), &[2, 1]);
    /// assert!(test.subset(999..1001).is_err());
    /// # Ok(()) }
    /// ```
    pub fn subset(&self, range: Range<usize>) -> Result<Self> {
        if range.start > range.end || range.end > self.len() {
            return Err(Error::config(
                "subset range",
                format!("{range:?} of {} images", self.len()),
                "must be an increasing range within 0..len",
            ));
        }
        Ok(Self {
            name: self.name.clone(),
            images: self
                .images
                .slice_axis(Axis(0), range.clone().into())
                .to_owned(),
            labels: self.labels[range].to_vec(),
            classes: self.classes,
        })
    }

    /// The first `min(n, len())` images, in order (see [`Dataset::take`] for the checked
    /// version).
    pub fn first(&self, n: usize) -> Self {
        self.subset(0..n.min(self.len()))
            .expect("0..min(n, len) is in range")
    }

    /// The first `n` images, in order; `flag` names the count in the error (`--n`).
    ///
    /// # Errors
    /// [`Error::Config`] if `n` is 0 or larger than the number of images: a count never
    /// silently shrinks.
    pub fn take(&self, n: usize, flag: &'static str) -> Result<Self> {
        if n == 0 || n > self.len() {
            return Err(Error::config(
                flag,
                format!("{n} ({} holds {} images)", self.name, self.len()),
                "must be between 1 and the number of images",
            ));
        }
        Ok(self.first(n))
    }

    /// SHA-256 (hex) of the dataset's contents: its shape, classes, every pixel's f32 bits
    /// (little-endian) and every label, in order. Equal for the same images in the same
    /// order, whatever the dataset's name or where its files lie.
    pub fn sha256(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for d in self.images.shape().iter().chain([&self.classes]) {
            h.update((*d as u64).to_le_bytes());
        }
        for v in self.images.iter() {
            h.update(v.to_bits().to_le_bytes());
        }
        for l in &self.labels {
            h.update((*l as u64).to_le_bytes());
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// What identifies this dataset in a report or a checkpoint: name, count and SHA-256.
    pub fn record(&self) -> DataRecord {
        DataRecord {
            name: self.name.clone(),
            n: self.len(),
            sha256: self.sha256(),
        }
    }

    /// The images at `indices`, in that order (repeats allowed).
    ///
    /// # Errors
    /// [`Error::Config`] if an index is `≥ len()`.
    pub fn select(&self, indices: &[usize]) -> Result<Self> {
        if let Some(&i) = indices.iter().find(|&&i| i >= self.len()) {
            return Err(Error::config(
                "index",
                format!("{i} of {} images", self.len()),
                "must be below the number of images",
            ));
        }
        Ok(self.select_unchecked(indices))
    }

    pub(crate) fn select_unchecked(&self, indices: &[usize]) -> Self {
        Self {
            name: self.name.clone(),
            images: self.images.select(Axis(0), indices),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            classes: self.classes,
        }
    }

    /// The images in the order of [`permutation`]`(len(), seed)`: the same seed gives the same
    /// order (for this version of the `rand` crate), different seeds almost surely differ.
    ///
    /// # Example
    /// ```
    /// # fn main() -> nrpm::Result<()> {
    /// let test = nrpm::data::Dataset::mnist_subset(nrpm::data::Split::Test)?;
    /// assert_eq!(test.shuffled(7), test.shuffled(7));
    /// assert_ne!(test.shuffled(7).labels(), test.shuffled(8).labels());
    /// # Ok(()) }
    /// ```
    pub fn shuffled(&self, seed: u64) -> Self {
        self.select_unchecked(&permutation(self.len(), seed))
    }

    /// Consecutive batches of `batch_size` images in dataset order, as views; the last one
    /// holds the `len() % batch_size` left over, if any.
    ///
    /// # Errors
    /// [`Error::Config`] if `batch_size` is 0.
    ///
    /// # Example
    /// ```
    /// # fn main() -> nrpm::Result<()> {
    /// let test = nrpm::data::Dataset::mnist_subset(nrpm::data::Split::Test)?;
    /// let sizes: Vec<usize> = test.batches(300)?.map(|b| b.labels.len()).collect();
    /// assert_eq!(sizes, [300, 300, 300, 100]);
    /// # Ok(()) }
    /// ```
    pub fn batches(&self, batch_size: usize) -> Result<Batches<'_>> {
        Batches::new(self, batch_size, None)
    }

    /// Batches of `batch_size` images in the order of [`permutation`]`(len(), seed)`, gathered
    /// into owned arrays (no copy of the whole dataset); the same seed gives the same batches.
    ///
    /// # Errors
    /// [`Error::Config`] if `batch_size` is 0.
    pub fn shuffled_batches(&self, batch_size: usize, seed: u64) -> Result<Batches<'_>> {
        Batches::new(self, batch_size, Some(permutation(self.len(), seed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy(n: usize) -> Dataset {
        let images = Array4::from_shape_fn((n, 1, 2, 2), |(i, _, h, w)| {
            (i * 4 + h * 2 + w) as f32 / (4 * n) as f32
        });
        Dataset::new("toy", images, (0..n).map(|i| i % 3).collect(), 3).unwrap()
    }

    #[test]
    fn new_rejects_inconsistent_parts() {
        let img = Array4::<f32>::zeros((2, 1, 2, 2));
        assert!(matches!(
            Dataset::new("t", img.clone(), vec![0], 3),
            Err(Error::Shape { .. })
        ));
        assert!(matches!(
            Dataset::new("t", img.clone(), vec![0, 3], 3),
            Err(Error::Config { name: "label", .. })
        ));
        assert!(matches!(
            Dataset::new("t", img.clone(), vec![], 0),
            Err(Error::Shape { .. })
        ));
        assert!(matches!(
            Dataset::new("t", img.clone(), vec![0, 0], 0),
            Err(Error::Config {
                name: "classes",
                ..
            })
        ));
        for bad in [f32::NAN, -0.1, 1.5] {
            let mut im = img.clone();
            im[[1, 0, 1, 0]] = bad;
            let err = Dataset::new("t", im, vec![0, 0], 3).unwrap_err();
            assert!(err.to_string().contains("at flat index 6"), "{err}");
        }
        assert!(Dataset::new("t", Array4::zeros((0, 1, 2, 2)), vec![], 3)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn subset_first_and_select_keep_image_label_pairs() {
        let ds = toy(10);
        let sub = ds.subset(3..6).unwrap();
        assert_eq!(sub.labels(), &[0, 1, 2]);
        assert_eq!(
            sub.images().index_axis(Axis(0), 0),
            ds.images().index_axis(Axis(0), 3)
        );
        assert_eq!(ds.first(4), ds.subset(0..4).unwrap());
        assert_eq!(ds.first(99).len(), 10);
        assert_eq!(ds.subset(10..10).unwrap().len(), 0);
        #[allow(clippy::reversed_empty_ranges)]
        let reversed = 6..3;
        assert!(ds.subset(reversed).is_err());
        assert!(ds.subset(8..11).is_err());
        let sel = ds.select(&[9, 0, 9]).unwrap();
        assert_eq!(sel.labels(), &[0, 0, 0]);
        assert_eq!(
            sel.images().index_axis(Axis(0), 2),
            ds.images().index_axis(Axis(0), 9)
        );
        assert!(ds.select(&[10]).is_err());
    }

    #[test]
    fn shuffled_is_a_seeded_permutation_of_the_pairs() {
        let ds = toy(50);
        let (a, b, c) = (ds.shuffled(1), ds.shuffled(1), ds.shuffled(2));
        assert_eq!(a, b);
        assert_ne!(a.images(), c.images());
        // Each image's first pixel encodes its index i as 4i / 200: recover the order.
        let order: Vec<usize> = a
            .images()
            .outer_iter()
            .map(|im| (im[[0, 0, 0]] * 200.0 / 4.0).round() as usize)
            .collect();
        assert_eq!(order, permutation(50, 1));
        for (k, &i) in order.iter().enumerate() {
            assert_eq!(a.labels()[k], ds.labels()[i]);
        }
    }
}
