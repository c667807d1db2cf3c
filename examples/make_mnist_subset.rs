//! Writes the MNIST subset shipped in `data/mnist-subset/`: the first 5 000 training images and
//! the first 1 000 test images (the ones the paper evaluates on), in the original order, as gzip
//! IDX files with the standard names.
//!
//! ```text
//! cargo run --release --example make_mnist_subset [-- <full MNIST folder> [<output folder>]]
//! ```
//!
//! Defaults: input `../shared/data/mnist` (beside the repository), output `data/mnist-subset`.
//! The bytes are copied unchanged; the gzip output is reproducible (mtime 0, no file name).

use std::path::PathBuf;

use ndarray::s;
use nrpm::data::{idx, MNIST_SUBSET_DIR, SHARED_MNIST_DIR};

/// Images kept from each split.
const TRAIN_COUNT: usize = 5000;
const TEST_COUNT: usize = 1000;

fn main() -> nrpm::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let input = args
        .next()
        .map_or_else(|| PathBuf::from(SHARED_MNIST_DIR), PathBuf::from);
    let output = args
        .next()
        .map_or_else(|| PathBuf::from(MNIST_SUBSET_DIR), PathBuf::from);
    for (prefix, count) in [("train", TRAIN_COUNT), ("t10k", TEST_COUNT)] {
        let images_name = format!("{prefix}-images-idx3-ubyte.gz");
        let labels_name = format!("{prefix}-labels-idx1-ubyte.gz");
        let images = idx::read_images_u8(input.join(&images_name))?;
        let labels = idx::read_labels(input.join(&labels_name))?;
        if images.dim().0 < count || labels.len() < count {
            return Err(nrpm::Error::format(
                input.join(&images_name),
                format!(
                    "needs at least {count} images and labels, found {} and {}",
                    images.dim().0,
                    labels.len()
                ),
            ));
        }
        idx::write_images(output.join(&images_name), images.slice(s![..count, .., ..]))?;
        idx::write_labels(output.join(&labels_name), &labels[..count])?;
        let mut per_class = [0usize; 10];
        labels[..count]
            .iter()
            .for_each(|&l| per_class[usize::from(l)] += 1);
        println!(
            "{prefix}: {count} of {} images, first labels {:?}, per class {per_class:?} -> {}",
            images.dim().0,
            &labels[..10],
            output.display()
        );
    }
    Ok(())
}
