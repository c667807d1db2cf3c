//! The data readers on real and malformed files: the shipped MNIST subset, full MNIST and
//! Fashion-MNIST when present (skipped with a printed reason otherwise), generated CIFAR-10
//! batches, and the malformed fixtures of `tests/data/bad/`.
//!
//! `tests/data/bad/` is written by [`bad_fixtures`] below; to regenerate it after changing
//! that function:
//!
//! ```text
//! NRPM_WRITE_BAD_FIXTURES=1 cargo test --release --test data_readers bad_fixtures_match_their_generator
//! ```

use std::path::{Path, PathBuf};

use nrpm::data::{
    cifar, idx, load_cifar10, load_mnist_like, Dataset, Split, MNIST_SUBSET_DIR, SHARED_MNIST_DIR,
};
use nrpm::Error;

const BAD_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/bad");
const FASHION_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Images per class of full MNIST (LeCun et al.), train and test.
const MNIST_TRAIN_PER_CLASS: [usize; 10] =
    [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949];
const MNIST_TEST_PER_CLASS: [usize; 10] = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009];

fn per_class(ds: &Dataset) -> [usize; 10] {
    let mut counts = [0; 10];
    ds.labels().iter().for_each(|&l| counts[l] += 1);
    counts
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nrpm-data-readers-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `Some(dir)` if it exists, else prints why the test is skipped.
fn present_or_skip(dir: &str, test: &str) -> Option<PathBuf> {
    let path = PathBuf::from(dir);
    if path.is_dir() {
        Some(path)
    } else if dir == SHARED_MNIST_DIR {
        // ../shared is a requirement NRPM_REQUIRE can demand; Fashion-MNIST is not.
        nrpm::testing::skip("shared", test, &format!("{dir} is absent"));
        None
    } else {
        eprintln!("{test}: skipped, {dir} is absent");
        None
    }
}

#[test]
fn mnist_subset_has_the_documented_counts_and_labels() {
    let train = Dataset::mnist_subset(Split::Train).unwrap();
    let test = Dataset::mnist_subset(Split::Test).unwrap();
    assert_eq!(train.images().shape(), &[5000, 1, 28, 28]);
    assert_eq!(test.images().shape(), &[1000, 1, 28, 28]);
    assert_eq!(
        (train.name(), test.name()),
        ("mnist-subset/train", "mnist-subset/test")
    );
    assert_eq!((train.classes(), test.classes()), (10, 10));
    assert_eq!(&train.labels()[..10], &[5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
    assert_eq!(&test.labels()[..10], &[7, 2, 1, 0, 4, 1, 4, 9, 5, 9]);
    // Per-class counts as stated in data/mnist-subset/README.md.
    assert_eq!(
        per_class(&train),
        [479, 563, 488, 493, 535, 434, 501, 550, 462, 495]
    );
    assert_eq!(
        per_class(&test),
        [85, 126, 116, 107, 110, 87, 87, 99, 89, 94]
    );
    // Bytes / 255: background 0, full ink 1, every value a multiple of 1/255.
    for ds in [&train, &test] {
        let (min, max) = ds
            .images()
            .iter()
            .fold((1f32, 0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        assert_eq!((min, max), (0.0, 1.0));
        assert!(ds
            .images()
            .iter()
            .all(|&v| ((v * 255.0).round() - v * 255.0).abs() < 1e-4));
    }
    // Test image 0 (a 7): mean ink of MNIST digits is about 0.1–0.15, far from 0 and 1.
    let mean = test
        .images()
        .index_axis(ndarray::Axis(0), 0)
        .mean()
        .unwrap();
    assert!((0.05..0.25).contains(&mean), "{mean}");
}

#[test]
fn mnist_subset_equals_the_first_images_of_full_mnist() {
    let Some(dir) = present_or_skip(
        SHARED_MNIST_DIR,
        "mnist_subset_equals_the_first_images_of_full_mnist",
    ) else {
        return;
    };
    for (split, n) in [(Split::Train, 5000), (Split::Test, 1000)] {
        let full = load_mnist_like(&dir, split).unwrap();
        let subset = Dataset::mnist_subset(split).unwrap();
        let head = full.first(n);
        assert_eq!(subset.images(), head.images(), "{split}");
        assert_eq!(subset.labels(), head.labels(), "{split}");
    }
}

#[test]
fn full_mnist_has_the_known_sizes_and_class_counts() {
    let Some(dir) = present_or_skip(
        SHARED_MNIST_DIR,
        "full_mnist_has_the_known_sizes_and_class_counts",
    ) else {
        return;
    };
    let train = load_mnist_like(&dir, Split::Train).unwrap();
    let test = load_mnist_like(&dir, Split::Test).unwrap();
    assert_eq!(train.images().shape(), &[60000, 1, 28, 28]);
    assert_eq!(test.images().shape(), &[10000, 1, 28, 28]);
    assert_eq!(per_class(&train), MNIST_TRAIN_PER_CLASS);
    assert_eq!(per_class(&test), MNIST_TEST_PER_CLASS);
    assert_eq!((train.name(), test.name()), ("mnist/train", "mnist/test"));
}

#[test]
fn fashion_mnist_has_balanced_classes() {
    let Some(dir) = present_or_skip(
        FASHION_DIR,
        "fashion_mnist_has_balanced_classes (apt-get install dataset-fashion-mnist)",
    ) else {
        return;
    };
    let train = load_mnist_like(&dir, Split::Train).unwrap();
    let test = load_mnist_like(&dir, Split::Test).unwrap();
    assert_eq!(train.images().shape(), &[60000, 1, 28, 28]);
    assert_eq!(test.images().shape(), &[10000, 1, 28, 28]);
    assert_eq!(per_class(&train), [6000; 10]);
    assert_eq!(per_class(&test), [1000; 10]);
    assert_eq!(&train.labels()[..5], &[9, 0, 0, 3, 0]); // ankle boot, T-shirt, T-shirt, dress, T-shirt
    assert_eq!(&test.labels()[..5], &[9, 2, 1, 1, 6]);
}

#[test]
fn raw_and_gzip_files_read_the_same_and_gzip_is_found_by_magic() {
    let raw_dir = temp_dir("raw");
    let disguised_dir = temp_dir("disguised");
    for name in ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"] {
        let gz = std::fs::read(Path::new(MNIST_SUBSET_DIR).join(format!("{name}.gz"))).unwrap();
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gz.as_slice()), &mut raw)
            .unwrap();
        assert_ne!(raw, gz);
        std::fs::write(raw_dir.join(name), raw).unwrap();
        std::fs::write(disguised_dir.join(name), gz).unwrap(); // gzip under a raw name
    }
    let reference = Dataset::mnist_subset(Split::Test).unwrap();
    for dir in [&raw_dir, &disguised_dir] {
        let ds = load_mnist_like(dir, Split::Test).unwrap();
        assert_eq!(ds.images(), reference.images());
        assert_eq!(ds.labels(), reference.labels());
    }
    std::fs::remove_dir_all(raw_dir).ok();
    std::fs::remove_dir_all(disguised_dir).ok();
}

#[test]
fn missing_files_give_an_error_listing_the_names_tried() {
    let empty = temp_dir("empty");
    let err = load_mnist_like(&empty, Split::Train).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("no train images here; looked for train-images-idx3-ubyte.gz, train-images-idx3-ubyte, train-images.idx3-ubyte.gz, train-images.idx3-ubyte"), "{msg}");
    assert!(msg.starts_with(&empty.display().to_string()), "{msg}");
    let err = load_cifar10(&empty, Split::Test).unwrap_err().to_string();
    assert!(
        err.contains("no CIFAR-10 test batch here; looked for test_batch.bin"),
        "{err}"
    );
    let err = load_mnist_like(empty.join("absent-folder"), Split::Test).unwrap_err();
    assert!(
        err.to_string()
            .contains("no test images here; looked for t10k-images-idx3-ubyte.gz"),
        "{err}"
    );
    std::fs::remove_dir_all(empty).ok();
}

/// The byte of record `r`, channel `c` (0 R, 1 G, 2 B), pixel (`row`, `col`) in the generated
/// CIFAR files: distinct across channels, rows and columns, so a transposed or reordered reader
/// fails.
fn cifar_byte(r: usize, c: usize, row: usize, col: usize) -> u8 {
    ((r * 37 + c * 101 + row * 7 + col * 3) % 256) as u8
}

/// A CIFAR-10 binary file written by hand from the documented layout: label, then the R, G, B
/// planes, each 32×32 row-major.
fn cifar_file(first_record: usize, labels: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for (k, &label) in labels.iter().enumerate() {
        bytes.push(label);
        for c in 0..3 {
            for row in 0..32 {
                for col in 0..32 {
                    bytes.push(cifar_byte(first_record + k, c, row, col));
                }
            }
        }
    }
    bytes
}

#[test]
fn cifar_reader_keeps_values_channel_order_and_labels() {
    let dir = temp_dir("cifar");
    let path = dir.join("three.bin");
    std::fs::write(&path, cifar_file(0, &[0, 9, 3])).unwrap();
    let (images, labels) = cifar::read_batch(&path).unwrap();
    assert_eq!(images.shape(), &[3, 3, 32, 32]);
    assert_eq!(labels, [0, 9, 3]);
    for ((r, c, row, col), &v) in images.indexed_iter() {
        assert_eq!(
            v,
            f32::from(cifar_byte(r, c, row, col)) / 255.0,
            "record {r} channel {c} ({row}, {col})"
        );
    }
    // Offsets straight from the format: record 1, green plane, pixel (2, 5).
    let raw = std::fs::read(&path).unwrap();
    assert_eq!(
        images[[1, 1, 2, 5]],
        f32::from(raw[3073 + 1 + 1024 + 2 * 32 + 5]) / 255.0
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn cifar_folder_concatenates_the_five_training_files_in_order() {
    let root = temp_dir("cifar-folder");
    let dir = root.join("cifar-10-batches-bin"); // as the archive unpacks; load from its parent
    std::fs::create_dir_all(&dir).unwrap();
    let counts = [2, 1, 1, 3, 1];
    let mut first = 0;
    for (name, &n) in cifar::TRAIN_FILES.iter().zip(&counts) {
        let labels: Vec<u8> = (first..first + n).map(|r| (r % 10) as u8).collect();
        std::fs::write(dir.join(name), cifar_file(first, &labels)).unwrap();
        first += n;
    }
    std::fs::write(dir.join(cifar::TEST_FILE), cifar_file(100, &[4, 5])).unwrap();
    let train = load_cifar10(&root, Split::Train).unwrap();
    assert_eq!(train.images().shape(), &[8, 3, 32, 32]);
    assert_eq!(train.labels(), &[0, 1, 2, 3, 4, 5, 6, 7]);
    assert_eq!((train.name(), train.classes()), ("cifar10/train", 10));
    for ((r, c, row, col), &v) in train.images().indexed_iter() {
        assert_eq!(v, f32::from(cifar_byte(r, c, row, col)) / 255.0);
    }
    let test = load_cifar10(&dir, Split::Test).unwrap();
    assert_eq!(test.labels(), &[4, 5]);
    assert_eq!(
        test.images()[[1, 2, 31, 31]],
        f32::from(cifar_byte(101, 2, 31, 31)) / 255.0
    );
    std::fs::remove_file(dir.join("data_batch_4.bin")).unwrap();
    let err = load_cifar10(&root, Split::Train).unwrap_err().to_string();
    assert!(err.contains("looked for data_batch_4.bin"), "{err}");
    std::fs::remove_dir_all(root).ok();
}

#[test]
fn shuffled_batches_of_the_subset_are_seeded_and_cover_every_image_once() {
    let test = Dataset::mnist_subset(Split::Test).unwrap();
    let sizes: Vec<usize> = test
        .shuffled_batches(128, 3)
        .unwrap()
        .map(|b| b.labels.len())
        .collect();
    assert_eq!(sizes, [128, 128, 128, 128, 128, 128, 128, 104]);
    let run = |seed| -> Vec<f32> {
        test.shuffled_batches(256, seed)
            .unwrap()
            .flat_map(|b| b.images.iter().copied().collect::<Vec<_>>())
            .collect()
    };
    assert_eq!(run(3), run(3));
    assert_ne!(run(3), run(4));
    let shuffled = test.shuffled(3);
    assert_eq!(per_class(&shuffled), per_class(&test));
    let mut sums: Vec<f32> = shuffled.images().outer_iter().map(|im| im.sum()).collect();
    let mut original: Vec<f32> = test.images().outer_iter().map(|im| im.sum()).collect();
    sums.sort_by(f32::total_cmp);
    original.sort_by(f32::total_cmp);
    assert_eq!(sums, original);
}

// ---------------------------------------------------------------------------------------------
// Malformed files: tests/data/bad/ and its generator.

/// An IDX header: magic, then each dim big-endian.
fn idx_header(magic: u32, dims: &[u32]) -> Vec<u8> {
    let mut bytes = magic.to_be_bytes().to_vec();
    dims.iter()
        .for_each(|d| bytes.extend_from_slice(&d.to_be_bytes()));
    bytes
}

/// A gzip stream holding `data` in one stored (uncompressed) deflate block, written by hand
/// from RFC 1951/1952 so the bytes do not depend on a compressor's version.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    assert!(
        data.len() <= 0xffff,
        "one stored block holds at most 65535 bytes"
    );
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]; // deflate, no flags, mtime 0, OS unknown
    let len = data.len() as u16;
    out.push(1); // BFINAL = 1, BTYPE = 00 (stored)
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(data);
    let mut crc = flate2::Crc::new();
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// Every file of `tests/data/bad/`, by relative path. Images are 4×4 to keep the files tiny.
fn bad_fixtures() -> Vec<(&'static str, Vec<u8>)> {
    let pixels = |n: usize| -> Vec<u8> { (0..n).map(|i| (i * 13 % 256) as u8).collect() };
    let images3 = [idx_header(idx::IMAGES_MAGIC, &[3, 4, 4]), pixels(48)].concat();
    let truncated3 = [idx_header(idx::IMAGES_MAGIC, &[3, 4, 4]), pixels(40)].concat();
    let mut little_endian_magic = images3.clone();
    little_endian_magic[..4].copy_from_slice(&idx::IMAGES_MAGIC.to_le_bytes());
    let gz = gzip_stored(&images3);
    vec![
        ("idx3-bad-magic", little_endian_magic),
        ("idx3-truncated", truncated3.clone()),
        (
            "idx3-trailing-bytes",
            [images3.as_slice(), &[0, 0]].concat(),
        ),
        ("idx3-truncated.gz", gzip_stored(&truncated3)),
        ("idx3-cut-gzip.gz", gz[..gz.len() / 2].to_vec()),
        (
            "idx3-short-header",
            idx::IMAGES_MAGIC.to_be_bytes()[..]
                .iter()
                .chain(&[0, 0, 0, 3])
                .copied()
                .collect(),
        ),
        (
            "idx1-bad-magic",
            [idx_header(idx::IMAGES_MAGIC, &[3]), vec![1, 2, 3]].concat(),
        ),
        (
            "idx1-truncated",
            [idx_header(idx::LABELS_MAGIC, &[3]), vec![1, 2]].concat(),
        ),
        (
            "idx1-label-out-of-range",
            [idx_header(idx::LABELS_MAGIC, &[3]), vec![1, 2, 10]].concat(),
        ),
        ("count-mismatch/train-images-idx3-ubyte", images3),
        (
            "count-mismatch/train-labels-idx1-ubyte",
            [idx_header(idx::LABELS_MAGIC, &[2]), vec![1, 2]].concat(),
        ),
        (
            "cifar-bad-length.bin",
            [cifar_file(0, &[1, 2]), vec![7; 100]].concat(),
        ),
        ("cifar-label-out-of-range.bin", cifar_file(0, &[1, 10])),
        ("cifar-empty.bin", Vec::new()),
    ]
}

#[test]
fn bad_fixtures_match_their_generator() {
    let write = std::env::var_os("NRPM_WRITE_BAD_FIXTURES").is_some();
    for (name, bytes) in bad_fixtures() {
        let path = Path::new(BAD_DIR).join(name);
        if write {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        let on_disk = std::fs::read(&path).unwrap_or_default();
        assert!(
            on_disk == bytes,
            "{} differs from bad_fixtures(); regenerate with NRPM_WRITE_BAD_FIXTURES=1 cargo test --release --test data_readers bad_fixtures_match_their_generator",
            path.display()
        );
    }
}

/// Reads a fixture with the reader named by `reader`; only the error matters.
fn read_fixture(reader: &str, path: &Path) -> nrpm::Result<()> {
    match reader {
        "images" => idx::read_images(path).map(drop),
        "labels" => idx::read_labels(path).map(drop),
        "mnist folder" => load_mnist_like(path, Split::Train).map(drop),
        "cifar" => cifar::read_batch(path).map(drop),
        _ => unreachable!("unknown reader {reader}"),
    }
}

#[test]
fn bad_fixtures_give_format_errors_naming_file_and_problem() {
    let cases: [(&str, &str, &[&str]); 12] = [
        ("idx3-bad-magic", "images", &["bad magic 0x03080000 (not an IDX file): expected 0x00000803 for an IDX3 image file"]),
        ("idx3-truncated", "images", &["truncated: header says 3 images of 4×4, 48 data bytes (64 in all), found 40 (56 in all)"]),
        ("idx3-trailing-bytes", "images", &["trailing bytes: header says 3 images of 4×4, 48 data bytes (64 in all), found 50 (66 in all)"]),
        ("idx3-truncated.gz", "images", &["truncated: header says 3 images", "after gunzip"]),
        ("idx3-cut-gzip.gz", "images", &["starts with the gzip magic 1f 8b but is not a valid gzip stream"]),
        ("idx3-short-header", "images", &["truncated header: an IDX3 image file needs 16 header bytes, found 8"]),
        ("idx1-bad-magic", "labels", &["bad magic 0x00000803 (that is an IDX3 image file): expected 0x00000801 for an IDX1 label file"]),
        ("idx1-truncated", "labels", &["truncated: header says 3 labels, 3 data bytes (11 in all), found 2 (10 in all)"]),
        ("idx1-label-out-of-range", "labels", &["label 10 at index 2 is out of range; MNIST-style labels are 0..=9"]),
        ("cifar-bad-length.bin", "cifar", &["length 6246 is not a multiple of the 3073-byte CIFAR-10 record (2 whole records and 100 bytes over)"]),
        ("cifar-label-out-of-range.bin", "cifar", &["record 1 (byte offset 3073) has label 10; CIFAR-10 labels are 0..=9"]),
        ("cifar-empty.bin", "cifar", &["empty: a CIFAR-10 batch holds records of 3073 bytes"]),
    ];
    for (name, reader, phrases) in cases {
        let path = Path::new(BAD_DIR).join(name);
        let err = read_fixture(reader, &path).expect_err(name);
        let Error::Format { path: err_path, .. } = &err else {
            panic!("{name}: expected Error::Format, got {err:?}");
        };
        assert_eq!(err_path, &path, "{name}");
        let msg = err.to_string();
        assert!(
            msg.starts_with(&path.display().to_string()),
            "{name}: {msg}"
        );
        for phrase in phrases {
            assert!(msg.contains(phrase), "{name}: {msg:?} lacks {phrase:?}");
        }
    }
}

#[test]
fn count_mismatch_names_both_files() {
    let dir = Path::new(BAD_DIR).join("count-mismatch");
    let err = read_fixture("mnist folder", &dir).unwrap_err();
    assert!(matches!(err, Error::Format { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&dir.join("train-labels-idx1-ubyte").display().to_string()),
        "{msg}"
    );
    assert!(
        msg.contains(&format!(
            "holds 2 labels but {} holds 3 images",
            dir.join("train-images-idx3-ubyte").display()
        )),
        "{msg}"
    );
}

/// Inputs on which a fuzz target (fuzz/, docs/VERIFICATION.md) once crashed a reader, by
/// target: each must now give an `Error::Format` naming the file, never a panic.
const FUZZ_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/fuzz");

#[test]
fn fuzz_crashes_are_format_errors_now() {
    let mut seen = 0;
    for (target, readers) in [
        ("idx_raw", &["images", "labels"][..]),
        ("idx_gzip", &["images", "labels"][..]),
        ("cifar", &["cifar"][..]),
    ] {
        let Ok(entries) = std::fs::read_dir(Path::new(FUZZ_DIR).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            for reader in readers {
                let err = read_fixture(reader, &path).expect_err(&path.display().to_string());
                assert!(
                    matches!(err, Error::Format { .. }),
                    "{}: {err:?}",
                    path.display()
                );
                seen += 1;
            }
        }
    }
    assert!(seen >= 2, "the regression inputs are missing");
    // The first one: 0 images of (2³²−1)×(2³²−1) pixels, whose size overflows although the
    // product with 0 is 0.
    let path = Path::new(FUZZ_DIR).join("idx_raw/zero-images-of-overflowing-size");
    let err = idx::read_images(&path).unwrap_err().to_string();
    assert!(err.contains("the size overflows"), "{err}");
}
