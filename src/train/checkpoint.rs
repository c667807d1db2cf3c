//! Per-epoch training checkpoints, so that an interrupted run resumes bit for bit.
//!
//! A checkpoint folder holds three files, rewritten after every epoch:
//!
//! ```text
//! model.safetensors      Model::state_dict(): parameters, buffers, θ of every NRPM layer
//! optimizer.safetensors  momentum buffers, keys "momentum.<parameter key>"
//! state.json             epochs done, settings, model fingerprint, history, start snapshot
//! ```
//!
//! No random-generator state needs saving: every random draw of epoch e, batch i comes from
//! a generator seeded with `seed_for(seed, stream, e, i)` (see [`seed_for`]), so a resumed run
//! draws exactly what the uninterrupted run would have drawn. Each file is written under a
//! temporary name and renamed; `state.json` goes last, so it never points at a newer model.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::models::Model;
use crate::real::Real;
use crate::tensor_file::TensorFile;
use crate::train::{DataRecords, EpochReport, Sgd, Snapshot, TrainConfig};

/// Format tag of `state.json`.
const FORMAT: &str = "nrpm-train/1";
/// The model file of a checkpoint folder.
pub const MODEL_FILE: &str = "model.safetensors";
/// The optimiser file of a checkpoint folder.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// The progress file of a checkpoint folder.
pub const STATE_FILE: &str = "state.json";

/// A random stream of the trainer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Stream {
    /// The order of an epoch's images.
    Shuffle = 1,
    /// Dropout masks of a batch.
    Dropout = 2,
    /// The attack's random start for a batch.
    Attack = 3,
    /// Evaluation attacks.
    Eval = 4,
    /// Gaussian data augmentation of a batch.
    Noise = 5,
}

/// The seed of `stream` for batch `batch` of epoch `epoch` (0-based) in a run seeded `seed`:
/// `splitmix(splitmix(splitmix(seed ⊕ stream) ⊕ epoch) ⊕ batch)`. Same inputs, same seed.
///
/// ```
/// use nrpm::train::checkpoint::{seed_for, Stream};
/// assert_eq!(seed_for(1, Stream::Dropout, 2, 3), seed_for(1, Stream::Dropout, 2, 3));
/// assert_ne!(seed_for(1, Stream::Dropout, 2, 3), seed_for(1, Stream::Attack, 2, 3));
/// assert_ne!(seed_for(1, Stream::Dropout, 2, 3), seed_for(1, Stream::Dropout, 3, 2));
/// ```
pub fn seed_for(seed: u64, stream: Stream, epoch: usize, batch: usize) -> u64 {
    crate::seeds::derive(seed, &[stream as u64, epoch as u64, batch as u64])
}

/// A run's progress as stored in `state.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Epochs completed.
    pub epochs_done: usize,
    /// One report per completed epoch.
    pub history: Vec<EpochReport>,
    /// Evaluation and λ before the first epoch.
    pub start: Snapshot,
}

/// What identifies a model's setup beyond its tensors: the spec and, for every NRPM layer, its
/// operator configuration (norm, K, ε, groups) and λ parametrisation (λ itself is a trained
/// value, not part of the setup).
pub fn fingerprint<T: Real>(model: &Model<T>) -> Value {
    let record = model.record();
    let layers: Vec<Value> = record
        .nrpm_layers
        .unwrap_or_default()
        .iter()
        .map(|l| {
            let op = l.operator.with_lambda(0.0).unwrap_or(l.operator);
            json!({ "key": l.key, "operator": op, "lambda_param": l.lambda_param })
        })
        .collect();
    json!({ "spec": record.spec, "nrpm_layers": layers })
}

/// Writes `file` to `dir/name` through a temporary file and a rename.
fn write_atomic(dir: &Path, name: &str, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    write(&tmp)?;
    let dest = dir.join(name);
    std::fs::rename(&tmp, &dest).map_err(|e| Error::io(dest, e))
}

/// Saves the model, the optimiser and `state` to `dir` (created if missing), with the run's
/// settings and data records.
///
/// # Errors
/// [`Error::Io`] if the folder or a file cannot be written.
pub fn save<T: Real>(
    dir: &Path,
    model: &mut Model<T>,
    sgd: &Sgd<T>,
    cfg: &TrainConfig,
    data: &DataRecords,
    state: &TrainState,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    write_atomic(dir, MODEL_FILE, |p| model.state_dict().write(p))?;
    write_atomic(dir, OPTIMIZER_FILE, |p| sgd.state().write(p))?;
    let doc = json!({
        "format": FORMAT,
        "settings": cfg.to_json(false),
        "data": data,
        "fingerprint": fingerprint(model),
        "state": state,
    });
    let text = serde_json::to_string_pretty(&doc).expect("JSON values serialise") + "\n";
    write_atomic(dir, STATE_FILE, |p| {
        std::fs::write(p, text).map_err(|e| Error::io(p, e))
    })
}

/// Reads `dir/state.json` and checks that it belongs to this run: same format, same settings
/// apart from the epoch count (which may grow, not shrink), same data (count and SHA-256 of the
/// training and evaluation images), same model setup.
fn read_state<T: Real>(
    dir: &Path,
    model: &Model<T>,
    cfg: &TrainConfig,
    data: &DataRecords,
) -> Result<TrainState> {
    let path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let doc: Value =
        serde_json::from_str(&text).map_err(|e| Error::format(&path, format!("not JSON: {e}")))?;
    if doc["format"] != FORMAT {
        return Err(Error::format(&path, format!("not an {FORMAT} checkpoint")));
    }
    let mut stored = doc["settings"].clone();
    if let Some(fields) = stored.as_object_mut() {
        // Checkpoints from before Gaussian augmentation trained without noise.
        fields.entry("noise_sd").or_insert(json!(0.0));
    }
    mismatch(&path, "settings", &stored, &cfg.to_json(false))?;
    check_data(&path, &doc["data"], data)?;
    mismatch(
        &path,
        "model setup",
        &doc["fingerprint"],
        &fingerprint(model),
    )?;
    let state: TrainState = serde_json::from_value(doc["state"].clone())
        .map_err(|e| Error::format(&path, format!("bad 'state': {e}")))?;
    if state.epochs_done > cfg.epochs {
        return Err(Error::format(
            &path,
            format!(
                "has {} epochs done, more than the {} asked for: resume needs --epochs ≥ {}",
                state.epochs_done, cfg.epochs, state.epochs_done
            ),
        ));
    }
    Ok(state)
}

/// [`Error::Format`] unless the checkpoint's data records describe the same images as `now`.
fn check_data(path: &Path, stored: &Value, now: &DataRecords) -> Result<()> {
    let stored: DataRecords = serde_json::from_value(stored.clone()).map_err(|_| {
        Error::format(
            path,
            "records no training data (written by nrpm before 0.2): it cannot be checked \
             against the data of this run, so it is not resumed",
        )
    })?;
    for (what, s, n) in [
        ("training", &stored.train, &now.train),
        ("evaluation", &stored.eval, &now.eval),
    ] {
        if !s.same_data(n) {
            return Err(Error::format(
                path,
                format!(
                    "resume needs the same {what} images as the checkpoint: it was made on {} \
                     ({} images, sha256 {}…), this run has {} ({} images, sha256 {}…)",
                    s.name,
                    s.n,
                    &s.sha256[..12.min(s.sha256.len())],
                    n.name,
                    n.n,
                    &n.sha256[..12.min(n.sha256.len())]
                ),
            ));
        }
    }
    Ok(())
}

/// [`Error::Format`] if `stored` and `given` differ, naming the differing fields.
fn mismatch(path: &Path, what: &str, stored: &Value, given: &Value) -> Result<()> {
    if stored == given {
        return Ok(());
    }
    let fields: Vec<String> = match (stored.as_object(), given.as_object()) {
        (Some(s), Some(g)) => g
            .iter()
            .filter(|(k, v)| s.get(*k) != Some(*v))
            .map(|(k, v)| {
                format!(
                    "{k}: checkpoint {}, now {v}",
                    s.get(k).unwrap_or(&Value::Null)
                )
            })
            .collect(),
        _ => vec![format!("checkpoint {stored}, now {given}")],
    };
    Err(Error::format(
        path,
        format!(
            "resume needs the same {what} as the checkpoint ({})",
            fields.join("; ")
        ),
    ))
}

/// Loads a checkpoint folder into `model` and `sgd` and returns the run's state.
///
/// # Errors
/// [`Error::Io`] for missing files; [`Error::Format`] when the settings (other than a growing
/// epoch count), the data or the model setup differ from the checkpoint's, or a file does not
/// fit the model.
pub fn load<T: Real>(
    dir: &Path,
    model: &mut Model<T>,
    sgd: &mut Sgd<T>,
    cfg: &TrainConfig,
    data: &DataRecords,
) -> Result<TrainState> {
    let state = read_state(dir, model, cfg, data)?;
    model.load_file(dir.join(MODEL_FILE), true)?;
    sgd.load_state(
        &TensorFile::read(dir.join(OPTIMIZER_FILE))?,
        model,
        cfg.paradigm,
    )?;
    Ok(state)
}
