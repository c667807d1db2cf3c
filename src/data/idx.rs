//! IDX files, the format of MNIST and Fashion-MNIST: image files (IDX3) and label files (IDX1).
//!
//! ```text
//! offset     bytes   field
//! 0          4       magic, big-endian: 0x00 0x00, element type 0x08 (unsigned byte), dims
//!                    images: 0x00000803 (dims N, H, W)   labels: 0x00000801 (dim N)
//! 4          4·dims  each dim as a big-endian u32
//! 4 + 4·dims …       N·H·W pixel bytes, image after image, row-major; 0 = background
//!                    (labels: N bytes, each a class 0..=9)
//! ```
//!
//! A file may be gzip-compressed, as MNIST is distributed (`*.gz`); gzip is recognised by its
//! magic bytes 1f 8b, not by the name. The length must match the header exactly: truncated
//! files and trailing bytes are both [`Error::Format`]. See LeCun, Cortes & Burges, "The MNIST
//! database of handwritten digits", for the format's definition.

use std::io::Write;
use std::path::Path;

use ndarray::{Array3, Array4, ArrayView3};

use super::{find_file, read_maybe_gzip, Dataset, Split};
use crate::error::{Error, Result};

/// Magic number of an IDX3 unsigned-byte image file (dims N, H, W).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX1 unsigned-byte label file (dim N).
pub const LABELS_MAGIC: u32 = 0x0000_0801;
/// Number of classes of MNIST and Fashion-MNIST; a label must be below it.
pub const CLASSES: usize = 10;

/// Reads an IDX3 image file (raw or gzip) as `[N, 1, H, W]` floats in `[0, 1]` (byte / 255).
///
/// # Errors
/// [`Error::Io`] if the file cannot be read; [`Error::Format`] naming the file if the gzip
/// stream is corrupt, the magic is not 0x00000803, a dimension is zero, or the length is not
/// exactly header + N·H·W bytes.
///
/// # Example
/// ```
/// # fn main() -> nrpm::Result<()> {
/// let path = format!("{}/t10k-images-idx3-ubyte.gz", nrpm::data::MNIST_SUBSET_DIR);
/// let images = nrpm::data::idx::read_images(path)?;
/// assert_eq!(images.shape(), &[1000, 1, 28, 28]);
/// assert!(images.iter().all(|&v| (0.0..=1.0).contains(&v)));
/// # Ok(()) }
/// ```
pub fn read_images(path: impl AsRef<Path>) -> Result<Array4<f32>> {
    let bytes = read_images_u8(path)?;
    let (n, h, w) = bytes.dim();
    Ok(bytes
        .mapv(|b| f32::from(b) / 255.0)
        .into_shape_with_order((n, 1, h, w))
        .expect("same number of elements, standard layout"))
}

/// Reads an IDX3 image file (raw or gzip) as its bytes, `[N, H, W]`.
///
/// # Errors
/// As [`read_images`].
pub fn read_images_u8(path: impl AsRef<Path>) -> Result<Array3<u8>> {
    let path = path.as_ref();
    let (bytes, gzipped) = read_maybe_gzip(path)?;
    let (dims, body) = parse(path, &bytes, gzipped, IMAGES_MAGIC)?;
    let (n, h, w) = (dims[0], dims[1], dims[2]);
    if h == 0 || w == 0 {
        return Err(Error::format(
            path,
            format!("header gives an empty image size {h}×{w}; IDX3 images need H, W ≥ 1"),
        ));
    }
    Ok(Array3::from_shape_vec((n, h, w), body.to_vec()).expect("parse checked the length"))
}

/// Reads an IDX1 label file (raw or gzip): one class in `0..=9` per image.
///
/// # Errors
/// [`Error::Io`] if the file cannot be read; [`Error::Format`] naming the file if the gzip
/// stream is corrupt, the magic is not 0x00000801, the length is not exactly header + N
/// bytes, or a label is 10 or more.
///
/// # Example
/// ```
/// # fn main() -> nrpm::Result<()> {
/// let path = format!("{}/t10k-labels-idx1-ubyte.gz", nrpm::data::MNIST_SUBSET_DIR);
/// let labels = nrpm::data::idx::read_labels(path)?;
/// assert_eq!(&labels[..5], &[7, 2, 1, 0, 4]);
/// # Ok(()) }
/// ```
pub fn read_labels(path: impl AsRef<Path>) -> Result<Vec<u8>> {
    let path = path.as_ref();
    let (bytes, gzipped) = read_maybe_gzip(path)?;
    let (_, body) = parse(path, &bytes, gzipped, LABELS_MAGIC)?;
    if let Some(i) = body.iter().position(|&l| usize::from(l) >= CLASSES) {
        return Err(Error::format(
            path,
            format!(
                "label {} at index {i} is out of range; MNIST-style labels are 0..={}",
                body[i],
                CLASSES - 1
            ),
        ));
    }
    Ok(body.to_vec())
}

/// Writes `[N, H, W]` image bytes as an IDX3 file, gzip-compressed when the name ends in
/// `.gz` (creating the folder). Reading it back with [`read_images_u8`] gives `images`.
///
/// # Errors
/// [`Error::Io`] if it cannot be written; [`Error::Format`] if a dimension exceeds u32.
///
/// # Example
/// ```
/// # fn main() -> nrpm::Result<()> {
/// let path = std::env::temp_dir().join(format!("nrpm-doc-{}.idx3.gz", std::process::id()));
/// let images = ndarray::Array3::from_shape_fn((2, 3, 4), |(n, h, w)| (n * 12 + h * 4 + w) as u8);
/// nrpm::data::idx::write_images(&path, images.view())?;
/// assert_eq!(nrpm::data::idx::read_images_u8(&path)?, images);
/// # std::fs::remove_file(path).ok();
/// # Ok(()) }
/// ```
pub fn write_images(path: impl AsRef<Path>, images: ArrayView3<u8>) -> Result<()> {
    let path = path.as_ref();
    let (n, h, w) = images.dim();
    let mut bytes = header(path, IMAGES_MAGIC, &[n, h, w])?;
    bytes.extend(images.iter());
    write_maybe_gzip(path, &bytes)
}

/// Writes labels as an IDX1 file, gzip-compressed when the name ends in `.gz`.
///
/// # Errors
/// [`Error::Io`] if it cannot be written; [`Error::Format`] if there are more than u32::MAX.
pub fn write_labels(path: impl AsRef<Path>, labels: &[u8]) -> Result<()> {
    let path = path.as_ref();
    let mut bytes = header(path, LABELS_MAGIC, &[labels.len()])?;
    bytes.extend_from_slice(labels);
    write_maybe_gzip(path, &bytes)
}

/// Loads one split of an MNIST-style folder (MNIST, Fashion-MNIST, KMNIST all use these names).
///
/// ```text
/// Train: train-images-idx3-ubyte[.gz]  + train-labels-idx1-ubyte[.gz]
/// Test:  t10k-images-idx3-ubyte[.gz]   + t10k-labels-idx1-ubyte[.gz]
///        (also the dotted variants train-images.idx3-ubyte, … of some mirrors)
/// ```
///
/// Gives `[N, 1, H, W]` images in `[0, 1]`, 10 classes, named `"<folder name>/<split>"`.
///
/// # Errors
/// [`Error::Io`] (not found) naming `dir` and every file name tried if a file is absent;
/// [`Error::Format`] as [`read_images`] / [`read_labels`], or naming the label file if it holds
/// another number of labels than the image file holds images.
///
/// # Example
/// ```
/// # fn main() -> nrpm::Result<()> {
/// use nrpm::data::{load_mnist_like, Split, MNIST_SUBSET_DIR};
/// let train = load_mnist_like(MNIST_SUBSET_DIR, Split::Train)?;
/// assert_eq!((train.len(), train.name()), (5000, "mnist-subset/train"));
/// # Ok(()) }
/// ```
pub fn load_mnist_like(dir: impl AsRef<Path>, split: Split) -> Result<Dataset> {
    let dir = dir.as_ref();
    let prefix = match split {
        Split::Train => "train",
        Split::Test => "t10k",
    };
    let names = |kind: &str, idx: &str| -> Vec<String> {
        let dash = format!("{prefix}-{kind}-{idx}-ubyte");
        let dot = format!("{prefix}-{kind}.{idx}-ubyte");
        vec![format!("{dash}.gz"), dash, format!("{dot}.gz"), dot]
    };
    let images_path = find_file(dir, &names("images", "idx3"), &format!("{split} images"))?;
    let labels_path = find_file(dir, &names("labels", "idx1"), &format!("{split} labels"))?;
    let images = read_images(&images_path)?;
    let labels = read_labels(&labels_path)?;
    if labels.len() != images.shape()[0] {
        return Err(Error::format(
            &labels_path,
            format!(
                "holds {} labels but {} holds {} images; the counts must match",
                labels.len(),
                images_path.display(),
                images.shape()[0]
            ),
        ));
    }
    let folder = dir
        .canonicalize()
        .ok()
        .and_then(|d| d.file_name().map(|f| f.to_string_lossy().into_owned()))
        .unwrap_or_else(|| dir.display().to_string());
    Dataset::new(
        format!("{folder}/{split}"),
        images,
        labels.into_iter().map(usize::from).collect(),
        CLASSES,
    )
}

/// Checks the magic and the exact length; returns the dims and the data after the header.
fn parse<'a>(
    path: &Path,
    bytes: &'a [u8],
    gzipped: bool,
    magic: u32,
) -> Result<(Vec<usize>, &'a [u8])> {
    let unzipped = if gzipped { " after gunzip" } else { "" };
    let (kind, ndims) = if magic == IMAGES_MAGIC {
        ("an IDX3 image file", 3)
    } else {
        ("an IDX1 label file", 1)
    };
    let header_len = 4 + 4 * ndims;
    if bytes.len() < 4 {
        return Err(Error::format(
            path,
            format!(
                "{} bytes{unzipped}: too short for {kind} (magic alone is 4 bytes)",
                bytes.len()
            ),
        ));
    }
    let found = u32::from_be_bytes(bytes[..4].try_into().expect("4 bytes"));
    if found != magic {
        let hint = match found {
            IMAGES_MAGIC => " (that is an IDX3 image file)".to_string(),
            LABELS_MAGIC => " (that is an IDX1 label file)".to_string(),
            _ if bytes[..2] == [0, 0] => format!(
                " (IDX with element type 0x{:02x} and {} dims; nrpm reads unsigned bytes 0x08)",
                bytes[2], bytes[3]
            ),
            _ => " (not an IDX file)".to_string(),
        };
        return Err(Error::format(
            path,
            format!("bad magic 0x{found:08x}{hint}: expected 0x{magic:08x} for {kind}"),
        ));
    }
    if bytes.len() < header_len {
        return Err(Error::format(
            path,
            format!(
                "truncated header: {kind} needs {header_len} header bytes, found {}{unzipped}",
                bytes.len()
            ),
        ));
    }
    let dims: Vec<usize> = bytes[4..header_len]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes(c.try_into().expect("4 bytes")) as usize)
        .collect();
    let body = &bytes[header_len..];
    let what = if ndims == 3 {
        format!("{} images of {}×{}", dims[0], dims[1], dims[2])
    } else {
        format!("{} labels", dims[0])
    };
    // An array needs the product of its non-zero axes to fit isize even when another axis is 0
    // (0 images of 2³²−1 × 2³²−1 pixels: found by fuzz/idx_raw).
    let fits = dims
        .iter()
        .filter(|&&d| d > 0)
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .is_some_and(|p| isize::try_from(p).is_ok());
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|_| fits);
    match expected {
        Some(e) if e == body.len() => Ok((dims, body)),
        Some(e) => {
            let problem = if body.len() < e {
                "truncated"
            } else {
                "trailing bytes"
            };
            Err(Error::format(
                path,
                format!(
                    "{problem}: header says {what}, {e} data bytes ({} in all), found {} ({} in all){unzipped}",
                    e + header_len,
                    body.len(),
                    bytes.len()
                ),
            ))
        }
        None => Err(Error::format(
            path,
            format!("header says {what}: the size overflows"),
        )),
    }
}

/// The IDX header for `magic` and `dims`.
fn header(path: &Path, magic: u32, dims: &[usize]) -> Result<Vec<u8>> {
    let mut bytes = magic.to_be_bytes().to_vec();
    for &d in dims {
        let d = u32::try_from(d).map_err(|_| {
            Error::format(path, format!("dimension {d} does not fit IDX's u32 dims"))
        })?;
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    Ok(bytes)
}

/// Writes `bytes`, through gzip (level 9, no name, mtime 0: reproducible) if `path` ends in `.gz`.
fn write_maybe_gzip(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let out = if path.extension().is_some_and(|e| e == "gz") {
        let mut enc = flate2::GzBuilder::new()
            .mtime(0)
            .write(Vec::new(), flate2::Compression::best());
        enc.write_all(bytes).map_err(|e| Error::io(path, e))?;
        enc.finish().map_err(|e| Error::io(path, e))?
    } else {
        bytes.to_vec()
    };
    std::fs::write(path, out).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("nrpm-idx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn images_round_trip_raw_and_gzip_and_scale_to_unit_interval() {
        let img =
            Array3::from_shape_fn((3, 2, 5), |(n, h, w)| [0u8, 255, 17][n] ^ (h * 5 + w) as u8);
        for name in ["img-raw", "img.gz"] {
            let p = temp(name);
            write_images(&p, img.view()).unwrap();
            assert_eq!(read_images_u8(&p).unwrap(), img);
            let f = read_images(&p).unwrap();
            assert_eq!(f.shape(), &[3, 1, 2, 5]);
            assert_eq!(f[[1, 0, 0, 0]], 1.0);
            assert_eq!(f[[0, 0, 0, 0]], 0.0);
            assert_eq!(f[[2, 0, 1, 3]], f32::from(17u8 ^ 8) / 255.0);
        }
        let raw_len = std::fs::metadata(temp("img-raw")).unwrap().len();
        assert_eq!(raw_len, 16 + 30);
    }

    #[test]
    fn header_with_one_byte_missing_or_extra_is_rejected() {
        let p = temp("lab");
        write_labels(&p, &[1, 2, 3]).unwrap();
        let good = std::fs::read(&p).unwrap();
        assert_eq!(read_labels(&p).unwrap(), vec![1, 2, 3]);
        for (bytes, phrase) in [
            (
                good[..good.len() - 1].to_vec(),
                "truncated: header says 3 labels, 3 data bytes (11 in all), found 2 (10 in all)",
            ),
            (
                [good.as_slice(), &[0]].concat(),
                "trailing bytes: header says 3 labels",
            ),
            (good[..6].to_vec(), "truncated header"),
            (good[..2].to_vec(), "too short"),
        ] {
            std::fs::write(&p, &bytes).unwrap();
            let err = read_labels(&p).unwrap_err().to_string();
            assert!(err.contains(phrase), "{err}");
        }
    }

    #[test]
    fn labels_file_read_as_images_names_what_it_is() {
        let p = temp("lab-as-img");
        write_labels(&p, &[0]).unwrap();
        let err = read_images(&p).unwrap_err().to_string();
        assert!(
            err.contains("bad magic 0x00000801 (that is an IDX1 label file): expected 0x00000803"),
            "{err}"
        );
    }

    #[test]
    fn overflowing_dims_are_an_error_not_a_panic() {
        let p = temp("huge");
        let mut bytes = IMAGES_MAGIC.to_be_bytes().to_vec();
        for _ in 0..3 {
            bytes.extend_from_slice(&u32::MAX.to_be_bytes());
        }
        std::fs::write(&p, &bytes).unwrap();
        let err = read_images(&p).unwrap_err().to_string();
        // 64-bit usize: (2³²−1)³ overflows; on 32-bit the product overflows already at two dims.
        assert!(err.contains("overflows"), "{err}");
    }
}
