//! CIFAR-10 in its binary format (`cifar-10-binary.tar.gz`, folder `cifar-10-batches-bin/`).
//!
//! ```text
//! file     = record × N                  (each of data_batch_1..5.bin, test_batch.bin: N = 10 000)
//! record   = 3073 bytes:
//!   0            label, 0..=9 (CIFAR10_CLASSES)
//!   1    ..1025  red   plane, 32×32 row-major
//!   1025 ..2049  green plane
//!   2049 ..3073  blue  plane
//! ```
//!
//! The record's pixel bytes are already channel-major, so an image is `[3, 32, 32]` (CHW) as
//! stored, divided by 255. A length that is not a multiple of 3073, an empty file or a label
//! above 9 is an [`Error::Format`]. Source: Krizhevsky, "Learning Multiple Layers of Features
//! from Tiny Images" (2009), <https://www.cs.toronto.edu/~kriz/cifar.html>.

use std::path::Path;

use ndarray::Array4;

use super::{find_file, read_maybe_gzip, Dataset, Split};
use crate::error::{Error, Result};

/// Side of a CIFAR image, in pixels.
pub const SIDE: usize = 32;
/// Bytes per record: one label byte, then 3 × 32 × 32 pixel bytes.
pub const RECORD_BYTES: usize = 1 + 3 * SIDE * SIDE;
/// The class names, by label.
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];
/// The training files, in the order their images are concatenated.
pub const TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
/// The test file.
pub const TEST_FILE: &str = "test_batch.bin";

/// Reads one CIFAR-10 binary batch file (raw, or gzip by its magic bytes): images
/// `[N, 3, 32, 32]` in `[0, 1]` (RGB planes, row-major) and their labels.
///
/// # Errors
/// [`Error::Io`] if it cannot be read; [`Error::Format`] naming the file if it is empty, its
/// length is not a multiple of 3073, or a label is above 9.
///
/// # Example
/// ```
/// # fn main() -> nrpm::Result<()> {
/// let mut record = vec![3u8];                       // label 3 (cat)
/// record.extend([255u8; 1024]);                     // red plane
/// record.extend([0u8; 2048]);                       // green and blue planes
/// let path = std::env::temp_dir().join(format!("nrpm-doc-{}.bin", std::process::id()));
/// std::fs::write(&path, &record).unwrap();
/// let (images, labels) = nrpm::data::cifar::read_batch(&path)?;
/// assert_eq!((images.shape(), labels), (&[1, 3, 32, 32][..], vec![3]));
/// assert_eq!((images[[0, 0, 5, 7]], images[[0, 2, 5, 7]]), (1.0, 0.0));
/// # std::fs::remove_file(path).ok();
/// # Ok(()) }
/// ```
pub fn read_batch(path: impl AsRef<Path>) -> Result<(Array4<f32>, Vec<u8>)> {
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    read_into(path.as_ref(), &mut pixels, &mut labels)?;
    let images =
        Array4::from_shape_vec((labels.len(), 3, SIDE, SIDE), pixels).expect("whole records");
    Ok((images, labels))
}

/// Appends the file's pixels (/ 255, record order) to `pixels` and its labels to `labels`.
fn read_into(path: &Path, pixels: &mut Vec<f32>, labels: &mut Vec<u8>) -> Result<()> {
    let (bytes, gzipped) = read_maybe_gzip(path)?;
    let unzipped = if gzipped { " after gunzip" } else { "" };
    if bytes.is_empty() {
        return Err(Error::format(
            path,
            format!("empty{unzipped}: a CIFAR-10 batch holds records of {RECORD_BYTES} bytes"),
        ));
    }
    if bytes.len() % RECORD_BYTES != 0 {
        return Err(Error::format(
            path,
            format!(
                "length {}{unzipped} is not a multiple of the {RECORD_BYTES}-byte CIFAR-10 record ({} whole records and {} bytes over); truncated or not CIFAR-10 binary?",
                bytes.len(),
                bytes.len() / RECORD_BYTES,
                bytes.len() % RECORD_BYTES
            ),
        ));
    }
    let n = bytes.len() / RECORD_BYTES;
    labels.reserve(n);
    pixels.reserve(n * (RECORD_BYTES - 1));
    for (i, record) in bytes.chunks_exact(RECORD_BYTES).enumerate() {
        if usize::from(record[0]) >= CIFAR10_CLASSES.len() {
            return Err(Error::format(
                path,
                format!(
                    "record {i} (byte offset {}) has label {}; CIFAR-10 labels are 0..=9",
                    i * RECORD_BYTES,
                    record[0]
                ),
            ));
        }
        labels.push(record[0]);
        pixels.extend(record[1..].iter().map(|&b| f32::from(b) / 255.0));
    }
    Ok(())
}

/// Whether `dir` looks like a CIFAR-10 binary folder: it holds `test_batch.bin`,
/// `data_batch_1.bin` or the archive's `cifar-10-batches-bin/` folder.
pub fn is_cifar10_folder(dir: &Path) -> bool {
    [TEST_FILE, TRAIN_FILES[0], "cifar-10-batches-bin"]
        .iter()
        .any(|f| dir.join(f).exists())
}

/// Loads one split of CIFAR-10 from `dir` (or from `dir/cifar-10-batches-bin/`, the folder the
/// archive unpacks to): Train = data_batch_1..5.bin concatenated in order, Test = test_batch.bin.
///
/// Gives `[N, 3, 32, 32]` images in `[0, 1]`, 10 classes, named `"cifar10/<split>"`.
///
/// # Errors
/// [`Error::Io`] (not found) naming the folder and the file if a file is absent;
/// [`Error::Format`] as [`read_batch`].
pub fn load_cifar10(dir: impl AsRef<Path>, split: Split) -> Result<Dataset> {
    let mut dir = dir.as_ref().to_path_buf();
    let nested = dir.join("cifar-10-batches-bin");
    if !dir.join(TEST_FILE).is_file() && !dir.join(TRAIN_FILES[0]).is_file() && nested.is_dir() {
        dir = nested;
    }
    let files: &[&str] = match split {
        Split::Train => &TRAIN_FILES,
        Split::Test => &[TEST_FILE],
    };
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    for name in files {
        let path = find_file(
            &dir,
            &[name.to_string()],
            &format!("CIFAR-10 {split} batch"),
        )?;
        read_into(&path, &mut pixels, &mut labels)?;
    }
    let images =
        Array4::from_shape_vec((labels.len(), 3, SIDE, SIDE), pixels).expect("whole records");
    Dataset::new(
        format!("cifar10/{split}"),
        images,
        labels.into_iter().map(usize::from).collect(),
        CIFAR10_CLASSES.len(),
    )
}
