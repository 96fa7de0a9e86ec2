//! What a rank of a data-parallel run is about to compute, as `(what, value)` pairs the ranks
//! compare at start-up ([`crate::dist::check_agreement`]): the dataset (its feature spec, as
//! parsed, and every file's size), the flags that change the math, and the model (its parameters' names and
//! shapes; when a training state is resumed, a checksum of the state each rank loaded).
//!
//! Left out on purpose: paths (another machine may mount the data elsewhere), evaluation batch
//! sizes, the log and checkpoint places (only rank 0 writes), and `--cpu-matmul` (machines may
//! differ in it; averaged gradients keep the replicas identical either way).

use crate::adam::Adam;
use crate::config::{EvalProtocol, TrainConfig};
use crate::dist::{agree, checksum};
use crate::error::TrainError;
use crate::state::Progress;
use featurespec::FeatureSpec;
use ncf_model::Model;
use std::path::Path;

/// The dataset and the flags that change the math.
pub(crate) fn job(config: &TrainConfig, spec: &FeatureSpec) -> Result<Vec<(String, String)>, TrainError> {
    let io = |path: &Path, source| TrainError::Io { path: path.to_path_buf(), source };
    // The spec as parsed, written out again: layout and comments do not count, paths as written do.
    let canonical = spec.to_yaml_string()?;
    let mut entries = vec![(
        "dataset: feature spec (checksum of its content)".to_owned(),
        format!("{:016x}", agree::checksum_of(canonical.as_bytes())),
    )];
    for (mapping, chunks) in &spec.source_spec {
        for file in chunks.iter().flat_map(|c| &c.files) {
            let path = spec.resolve_file(file)?;
            let bytes = std::fs::metadata(&path).map_err(|e| io(&path, e))?.len();
            entries.push((format!("dataset: {mapping} file {file}"), format!("{bytes} bytes")));
        }
    }
    let c = config;
    let flag = |name: &str, value: String| (name.to_owned(), value);
    entries.extend([
        flag("--mode", format!("{:?}", c.mode).to_lowercase()),
        flag("--model", c.model.map_or("from the checkpoint, else neumf".into(), |m| format!("{m:?}").to_lowercase())),
        flag("--epochs", c.epochs.to_string()),
        flag("--batch_size", c.batch_size.to_string()),
        flag("--factors", c.factors.to_string()),
        flag("--layers", format!("{:?}", c.layers)),
        flag("--negative_samples", c.negative_samples.to_string()),
        flag("--learning_rate", c.learning_rate.to_string()),
        flag("--beta1", c.beta1.to_string()),
        flag("--beta2", c.beta2.to_string()),
        flag("--eps", c.eps.to_string()),
        flag("--dropout", c.dropout.to_string()),
        flag("--topk", c.topk.to_string()),
        flag("--seed", c.seed.map_or("drawn by rank 0".into(), |s| s.to_string())),
        flag("--threshold", c.threshold.to_string()),
        flag("--patience", format!("{:?}", c.patience)),
        flag("--grads_accumulated", c.grads_accumulated.to_string()),
        flag("--amp", c.amp.to_string()),
        flag("--no-tf32", (!c.tf32).to_string()),
        flag("--eval", if c.eval == EvalProtocol::Full { "full".into() } else { "sampled".into() }),
        flag("--eval-users", format!("{:?}", c.eval_users)),
        flag(
            "--pretrained-gmf/--pretrained-mlp",
            c.pretrained.as_ref().map_or("no".into(), |p| format!("yes, --alpha {}", p.alpha)),
        ),
        flag("--resume", if c.resume.is_some() { "yes".into() } else { "no".into() }),
        flag("--check-replicas", format!("{:?}", c.replica_check).to_lowercase()),
    ]);
    Ok(entries)
}

/// The model each rank built; with a resumed state, which state it loaded.
pub(crate) fn model(model: &dyn Model, resumed: Option<(&Progress, &Adam)>) -> Vec<(String, String)> {
    let dict = model.state_dict();
    let mut entries = vec![("model".to_owned(), model.name().to_owned())];
    entries.extend(dict.iter().map(|(name, t)| (format!("model parameter {name}"), format!("shape {:?}", t.size()))));
    if let Some((progress, adam)) = resumed {
        let tensors: Vec<_> =
            dict.into_iter().map(|(_, t)| t).chain(adam.state().into_iter().map(|(_, t)| t)).collect();
        entries.push((
            "--resume: the training state loaded".to_owned(),
            format!(
                "next epoch {}, seed {}, checksum {:016x}",
                progress.next_epoch + 1,
                progress.seed,
                checksum(&tensors)
            ),
        ));
    }
    entries
}
