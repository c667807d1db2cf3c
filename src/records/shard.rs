//! Which images one process of a sharded run owns, and where that came from: `--shard I/N`,
//! a Slurm job array, or a Kubernetes Indexed Job.
//!
//! ```text
//! image i (its index in the evaluated set) belongs to shard i mod N      (interleaved)
//! Slurm     index = (SLURM_ARRAY_TASK_ID − SLURM_ARRAY_TASK_MIN) / SLURM_ARRAY_TASK_STEP
//!           count = SLURM_ARRAY_TASK_COUNT               (arrays may start above 0, step > 1)
//! Kubernetes index = JOB_COMPLETION_INDEX, count = --shards N (Kubernetes gives no total)
//! ```
//!
//! Interleaving (i mod N) rather than contiguous blocks spreads images of every difficulty
//! over the shards, so shards of one run take about the same time.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Shard `index` of `count`: the images `i` with `i mod count = index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// 0-based shard index, `< count`.
    pub index: usize,
    /// Number of shards, ≥ 1.
    pub count: usize,
}

/// Where a shard assignment came from (printed, and kept in the records' header).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardSource {
    /// No sharding: one process does every image.
    Whole,
    /// `--shard I/N`.
    Flag,
    /// A Slurm job array (`SLURM_ARRAY_TASK_*`).
    Slurm,
    /// A Kubernetes Indexed Job (`JOB_COMPLETION_INDEX`, with `--shards N`).
    Kubernetes,
}

impl Shard {
    /// The whole run (shard 0 of 1).
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// Shard `index` of `count`.
    ///
    /// # Errors
    /// [`Error::Config`] for `count = 0` or `index ≥ count`.
    pub fn new(index: usize, count: usize) -> Result<Self> {
        if count == 0 {
            return Err(Error::config("shard count", 0, "must be at least 1"));
        }
        if index >= count {
            return Err(Error::config(
                "shard",
                format!("{index}/{count}"),
                "the index must be below the count (0-based: 0/4 … 3/4)",
            ));
        }
        Ok(Self { index, count })
    }

    /// Whether image `i` belongs to this shard.
    pub fn owns(&self, i: usize) -> bool {
        i % self.count == self.index
    }

    /// The images of `0..n` this shard owns, in order.
    pub fn images(&self, n: usize) -> Vec<usize> {
        (self.index..n).step_by(self.count).collect()
    }

    /// The shard from the command line (`--shard I/N`), else from the scheduler's variables
    /// (`env` looks one up: pass `|k| std::env::var(k).ok()`), else the whole run.
    /// `shards` is `--shards N`, which a Kubernetes Indexed Job needs.
    ///
    /// # Errors
    /// [`Error::Config`] for a malformed or out-of-range assignment, a Kubernetes index without
    /// `--shards`, or `--shards` where nothing uses it.
    ///
    /// ```
    /// use nrpm::records::{Shard, ShardSource};
    /// let slurm = |k: &str| match k {
    ///     "SLURM_ARRAY_TASK_ID" => Some("7".to_string()),
    ///     "SLURM_ARRAY_TASK_MIN" => Some("3".to_string()),
    ///     "SLURM_ARRAY_TASK_STEP" => Some("2".to_string()),
    ///     "SLURM_ARRAY_TASK_COUNT" => Some("4".to_string()),
    ///     _ => None,
    /// };
    /// // Array 3-9:2 has tasks 3, 5, 7, 9: task 7 is shard 2 of 4.
    /// assert_eq!(Shard::resolve(None, None, slurm)?, (Shard::new(2, 4)?, ShardSource::Slurm));
    /// assert_eq!(Shard::resolve(Some("1/4"), None, slurm)?.1, ShardSource::Flag);
    /// let k8s = |k: &str| (k == "JOB_COMPLETION_INDEX").then(|| "5".to_string());
    /// assert!(Shard::resolve(None, Some(4), k8s).is_err()); // index 5 of 4
    /// # Ok::<(), nrpm::Error>(())
    /// ```
    pub fn resolve(
        flag: Option<&str>,
        shards: Option<usize>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(Shard, ShardSource)> {
        if let Some(text) = flag {
            if shards.is_some() {
                return Err(Error::Flag {
                    flag: "--shards".into(),
                    problem: "has no effect with --shard I/N (which gives the count)".into(),
                });
            }
            return Ok((text.parse()?, ShardSource::Flag));
        }
        if let Some(task) = env("SLURM_ARRAY_TASK_ID") {
            if shards.is_some() {
                return Err(Error::Flag {
                    flag: "--shards".into(),
                    problem: "has no effect in a Slurm array (SLURM_ARRAY_TASK_COUNT gives it)"
                        .into(),
                });
            }
            return Ok((from_slurm(&task, &env)?, ShardSource::Slurm));
        }
        if let Some(index) = env("JOB_COMPLETION_INDEX") {
            let count = shards.ok_or_else(|| {
                Error::config(
                    "JOB_COMPLETION_INDEX",
                    &index,
                    "a Kubernetes Indexed Job needs --shards N (its completions)",
                )
            })?;
            let index = number("JOB_COMPLETION_INDEX", &index)?;
            return Ok((Shard::new(index, count)?, ShardSource::Kubernetes));
        }
        match shards {
            Some(n) => Err(Error::Flag {
                flag: format!("--shards {n}"),
                problem: "has no effect without JOB_COMPLETION_INDEX (use --shard I/N)".into(),
            }),
            None => Ok((Shard::WHOLE, ShardSource::Whole)),
        }
    }
}

/// A non-negative integer from an environment variable.
fn number(name: &'static str, value: &str) -> Result<usize> {
    value
        .trim()
        .parse()
        .map_err(|_| Error::config(name, value, "must be a non-negative integer"))
}

/// The shard of Slurm array task `task`.
fn from_slurm(task: &str, env: &impl Fn(&str) -> Option<String>) -> Result<Shard> {
    let get = |name: &'static str| -> Result<usize> {
        let v = env(name).ok_or_else(|| {
            Error::config(
                name,
                "unset",
                "a Slurm array sets it with SLURM_ARRAY_TASK_ID",
            )
        })?;
        number(name, &v)
    };
    let id = number("SLURM_ARRAY_TASK_ID", task)?;
    let (min, step, count) = (
        get("SLURM_ARRAY_TASK_MIN")?,
        env("SLURM_ARRAY_TASK_STEP").map_or(Ok(1), |v| number("SLURM_ARRAY_TASK_STEP", &v))?,
        get("SLURM_ARRAY_TASK_COUNT")?,
    );
    if step == 0 || id < min || (id - min) % step != 0 {
        return Err(Error::config(
            "SLURM_ARRAY_TASK_ID",
            format!("{id} (min {min}, step {step})"),
            "must be min + k·step",
        ));
    }
    Shard::new((id - min) / step, count)
}

impl FromStr for Shard {
    type Err = Error;

    /// `I/N`, 0-based (`0/4` … `3/4`).
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::config("shard", s, "expected I/N with 0 ≤ I < N, e.g. 0/4");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (i, n) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        Shard::new(i, n)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl fmt::Display for ShardSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ShardSource::Whole => "no sharding",
            ShardSource::Flag => "--shard",
            ShardSource::Slurm => "Slurm job array (SLURM_ARRAY_TASK_*)",
            ShardSource::Kubernetes => "Kubernetes Indexed Job (JOB_COMPLETION_INDEX)",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn shards_partition_the_images() {
        let n = 10;
        let mut seen = vec![0; n];
        for i in 0..3 {
            for image in Shard::new(i, 3).unwrap().images(n) {
                seen[image] += 1;
            }
        }
        assert_eq!(seen, vec![1; n]);
        assert_eq!(Shard::WHOLE.images(3), [0, 1, 2]);
    }

    #[test]
    fn bad_assignments_are_errors() {
        for bad in ["4/4", "0/0", "a/4", "1-4", "", "1/"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        assert!(Shard::resolve(None, Some(4), none).is_err());
        assert!(Shard::resolve(Some("0/2"), Some(2), none).is_err());
        let k8s_without_count = |k: &str| (k == "JOB_COMPLETION_INDEX").then(|| "1".to_string());
        assert!(Shard::resolve(None, None, k8s_without_count).is_err());
        let slurm_off_grid = |k: &str| match k {
            "SLURM_ARRAY_TASK_ID" => Some("4".into()),
            "SLURM_ARRAY_TASK_MIN" => Some("3".into()),
            "SLURM_ARRAY_TASK_STEP" => Some("2".into()),
            "SLURM_ARRAY_TASK_COUNT" => Some("4".into()),
            _ => None,
        };
        assert!(Shard::resolve(None, None, slurm_off_grid).is_err());
        assert_eq!(
            Shard::resolve(None, None, none).unwrap(),
            (Shard::WHOLE, ShardSource::Whole)
        );
    }
}
