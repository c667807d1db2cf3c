//! Image datasets: IDX readers (MNIST, Fashion-MNIST; raw or gzip), CIFAR-10 binary batches,
//! the MNIST subset shipped in the repository, and seeded shuffling and batching.
//!
//! Every loader returns a [`Dataset`]: images as `f32` in `[0, 1]` (byte / 255) in PyTorch's
//! NCHW layout, and one label per image.
//!
//! ```text
//! Dataset.images  [N, C, H, W]   MNIST-like: [N, 1, 28, 28]   CIFAR-10: [N, 3, 32, 32]
//! Dataset.labels  [N]            u8 class indices, each < classes (10 here)
//! ```
//!
//! - [`idx`]: IDX3 images / IDX1 labels and [`load_mnist_like`] for a folder of them;
//! - [`cifar`]: CIFAR-10 binary batches and [`load_cifar10`];
//! - [`Dataset`]: subsets, [`Dataset::shuffled`] (same seed → same order), [`Dataset::batches`];
//! - [`Dataset::mnist_subset`]: the first 5 000 MNIST training and first 1 000 test images,
//!   shipped in `data/mnist-subset/` (see its README for source and licence);
//! - [`load`]: any of these by the name the CLI's `--data` takes.
//!
//! Flattening `[N, 1, 28, 28]` to `[N, 784]` for an MLP is the model's job, not this module's.
//! Malformed files (bad magic, truncated or trailing bytes, count mismatch, label out of range)
//! give [`Error::Format`] naming the file and what was expected against what was found.
//!
//! ```
//! # fn main() -> nrpm::Result<()> {
//! use nrpm::data::{Dataset, Split};
//! let test = Dataset::mnist_subset(Split::Test)?;
//! assert_eq!(test.images().shape(), &[1000, 1, 28, 28]);
//! assert_eq!(&test.labels()[..5], &[7, 2, 1, 0, 4]);
//! let batch = test.shuffled_batches(128, 0)?.next().unwrap();
//! assert_eq!(batch.images.shape(), &[128, 1, 28, 28]);
//! # Ok(()) }
//! ```

use std::io::Read;
use std::path::Path;

use flate2::read::MultiGzDecoder;

use crate::error::{Error, Result};

mod batch;
pub mod cifar;
mod dataset;
pub mod idx;

pub use batch::{permutation, Batch, Batches};
pub use cifar::load_cifar10;
pub use dataset::{DataRecord, Dataset};
pub use idx::load_mnist_like;

/// Folder of the shipped MNIST subset: `data/mnist-subset/` in the crate's source tree.
///
/// It is fixed at compile time from `env!("CARGO_MANIFEST_DIR")`, so it is right for
/// `cargo run`, `cargo test` and a binary run on the machine that built it. A binary copied
/// elsewhere must load the files with [`load_mnist_like`] from wherever they were copied to.
pub const MNIST_SUBSET_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/mnist-subset");

/// Folder of the full MNIST (60 000 + 10 000 images, gzip IDX) beside the repository:
/// `../shared/data/mnist/`, fixed at compile time like [`MNIST_SUBSET_DIR`]. It is not part of
/// the repository; benchmarks and the full-data tests use it when it is there.
pub const SHARED_MNIST_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/mnist");

/// Which part of a dataset: the training or the test images.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    /// The training images (MNIST: 60 000; CIFAR-10: 50 000 in five files).
    Train,
    /// The test images (MNIST: 10 000; CIFAR-10: 10 000).
    Test,
}

impl Split {
    /// `"train"` or `"test"`.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

/// Loads one split of a data source named as on the command line: `mnist-subset` (the
/// shipped subset, [`Dataset::mnist_subset`]), or a folder holding IDX files
/// (`*-idx3-ubyte[.gz]`, [`load_mnist_like`]) or CIFAR-10 binary batches (`test_batch.bin`,
/// `data_batch_*.bin`, [`load_cifar10`]).
///
/// # Errors
/// [`Error::Io`] for a missing folder; loader errors otherwise.
pub fn load(spec: &str, split: Split) -> Result<Dataset> {
    if spec == "mnist-subset" {
        return Dataset::mnist_subset(split);
    }
    let dir = Path::new(spec);
    if !dir.is_dir() {
        return Err(Error::io(
            dir,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such data folder (or use mnist-subset)",
            ),
        ));
    }
    if cifar::is_cifar10_folder(dir) {
        load_cifar10(dir, split)
    } else {
        load_mnist_like(dir, split)
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The two bytes every gzip stream starts with (RFC 1952).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// A file's bytes, gunzipped if they start with the gzip magic (whatever the file's name), and
/// whether they were.
///
/// # Errors
/// [`Error::Io`] if the file cannot be read; [`Error::Format`] if the gzip stream is corrupt or
/// truncated.
pub(crate) fn read_maybe_gzip(path: &Path) -> Result<(Vec<u8>, bool)> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if !raw.starts_with(&GZIP_MAGIC) {
        return Ok((raw, false));
    }
    let mut out = Vec::with_capacity(raw.len().saturating_mul(4));
    MultiGzDecoder::new(raw.as_slice())
        .read_to_end(&mut out)
        .map_err(|e| {
            Error::format(
                path,
                format!("starts with the gzip magic 1f 8b but is not a valid gzip stream ({e}); corrupt or truncated download?"),
            )
        })?;
    Ok((out, true))
}

/// The first of `names` that exists in `dir`, or an [`Error::Io`] (not found) naming `dir`,
/// `what` was sought and every name tried.
pub(crate) fn find_file(dir: &Path, names: &[String], what: &str) -> Result<std::path::PathBuf> {
    names
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            let msg = format!("no {what} here; looked for {}", names.join(", "));
            Error::io(dir, std::io::Error::new(std::io::ErrorKind::NotFound, msg))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn gzip_is_detected_by_magic_not_name() {
        let dir = std::env::temp_dir().join(format!("nrpm-data-gz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let payload = b"\x00\x00\x08\x01 some bytes".to_vec();
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&payload).unwrap();
        let gz = enc.finish().unwrap();
        let (plain_named_gz, gz_named_plain) = (dir.join("plain.gz"), dir.join("packed"));
        std::fs::write(&plain_named_gz, &payload).unwrap();
        std::fs::write(&gz_named_plain, &gz).unwrap();
        assert_eq!(
            read_maybe_gzip(&plain_named_gz).unwrap(),
            (payload.clone(), false)
        );
        assert_eq!(read_maybe_gzip(&gz_named_plain).unwrap(), (payload, true));
        let cut = dir.join("cut");
        std::fs::write(&cut, &gz[..gz.len() / 2]).unwrap();
        let err = read_maybe_gzip(&cut).unwrap_err();
        assert!(matches!(err, Error::Format { .. }), "{err}");
        assert!(err.to_string().contains("not a valid gzip stream"), "{err}");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn find_file_lists_every_name_tried() {
        let err = find_file(
            Path::new("/nonexistent-nrpm"),
            &["a".into(), "b.gz".into()],
            "images",
        )
        .unwrap_err();
        assert!(matches!(err, Error::Io { .. }));
        assert_eq!(
            err.to_string(),
            "/nonexistent-nrpm: no images here; looked for a, b.gz"
        );
    }
}
