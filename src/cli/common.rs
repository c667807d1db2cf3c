//! Flags shared by the subcommands that load data (`eval`, `train`, …), number lists, and the
//! checks of output paths that run before any work starts.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use clap::Args;

use nrpm::data::{self, Dataset, Split};
use nrpm::error::{Error, Result};
use nrpm::Norm;

/// Parses a comma-separated list of numbers (`0,0.05,0.1`).
///
/// # Errors
/// [`Error::Config`] naming `what` for an empty list or an entry that is not a finite number.
pub fn parse_list<T: FromStr>(what: &'static str, s: &str) -> Result<Vec<T>> {
    let items: Result<Vec<T>> = s
        .split(',')
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse::<T>()
                .map_err(|_| Error::config(what, v, "not a number"))
        })
        .collect();
    let items = items?;
    if items.is_empty() {
        return Err(Error::config(what, s, "needs at least one value"));
    }
    Ok(items)
}

/// Which images.
#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// mnist-subset (shipped), or a folder of MNIST-like IDX files or CIFAR-10 binary batches.
    #[arg(long, default_value = "mnist-subset")]
    pub data: String,
}

impl DataArgs {
    /// Loads one split.
    ///
    /// # Errors
    /// Missing or malformed files.
    pub fn load(&self, split: Split) -> Result<Dataset> {
        data::load(&self.data, split)
    }
}

/// Checks, before any work, that `path` can be written as a file: it is not a folder, its
/// folder exists (it is not created), and a file can be created there. `flag` names the flag
/// in the error.
///
/// # Errors
/// [`Error::Flag`] naming the flag and the problem.
pub fn check_output_file(flag: &str, path: &Path) -> Result<()> {
    let bad = |problem: String| Error::Flag {
        flag: format!("{flag} {}", path.display()),
        problem,
    };
    if path.is_dir() {
        return Err(bad("is a folder; give a file name".into()));
    }
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d.to_path_buf(),
        None => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(bad(format!(
            "cannot be written: the folder {} does not exist (it is not created)",
            dir.display()
        )));
    }
    probe_writable(&dir).map_err(|e| bad(format!("cannot be written: {e}")))?;
    if path.exists() {
        std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| bad(format!("cannot be overwritten: {e}")))?;
    }
    Ok(())
}

/// Checks, before any work, that `dir` can hold output files: an existing folder that can be
/// written to, or a path that can be created (it is created now, with its missing parents, as
/// the flags that take a folder document).
///
/// # Errors
/// [`Error::Flag`] naming the flag and the problem.
pub fn prepare_output_dir(flag: &str, dir: &Path) -> Result<()> {
    let bad = |problem: String| Error::Flag {
        flag: format!("{flag} {}", dir.display()),
        problem,
    };
    if dir.exists() && !dir.is_dir() {
        return Err(bad("is a file; give a folder".into()));
    }
    std::fs::create_dir_all(dir).map_err(|e| bad(format!("cannot be created: {e}")))?;
    probe_writable(dir).map_err(|e| bad(format!("cannot be written: {e}")))
}

/// Creates and removes a probe file in `dir`.
fn probe_writable(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".nrpm-write-probe-{}", std::process::id()));
    std::fs::File::create(&probe)?;
    std::fs::remove_file(&probe)
}

/// The first `n` images of `data` (all of them when `n` is `None`), refusing a count the data
/// does not hold.
///
/// # Errors
/// [`Error::Config`] naming `flag` for n = 0 or n larger than the data.
pub fn first_n(data: Dataset, n: Option<usize>, flag: &'static str) -> Result<Dataset> {
    match n {
        None => Ok(data),
        Some(n) => data.take(n, flag),
    }
}

/// The norm `name` with γ and δ from the flags (`--gamma`, `--delta`), else from `base` when it
/// is the same kind of norm, else the authors' defaults. A γ or δ the norm does not have is
/// refused as a flag with no effect.
///
/// # Errors
/// [`Error::UnknownName`] for an unknown norm; [`Error::Flag`] for a γ or δ the norm lacks;
/// [`Error::Config`] for values out of range.
pub fn norm_from_flags(
    name: &str,
    gamma: Option<f64>,
    delta: Option<f64>,
    base: Option<Norm>,
) -> Result<Norm> {
    let norm = Norm::from_name(name)?;
    let same_kind = base.filter(|b| b.name() == norm.name());
    let unused = |flag: &str, what: &str| Error::Flag {
        flag: flag.to_string(),
        problem: format!("has no effect here: norm {} has no {what}", norm.name()),
    };
    if gamma.is_some() && norm.gamma().is_none() {
        return Err(unused("--gamma", "γ (mcp and hm do)"));
    }
    if delta.is_some() && norm.delta().is_none() {
        return Err(unused("--delta", "δ (huber and hm do)"));
    }
    let gamma = gamma.or(same_kind.and_then(|b| b.gamma()));
    let delta = delta.or(same_kind.and_then(|b| b.delta()));
    norm.with_params(gamma, delta)
}
