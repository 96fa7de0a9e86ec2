//! The full training checkpoint behind `--resume`: model, Adam state, the next epoch, the seed and
//! the run's history, in one `.pt` map (`training_state.pt`) that PyTorch can also open.

use crate::adam::Adam;
use crate::TrainError;
use ncf_model::Model;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// File name of the training state inside a checkpoint folder.
pub const TRAINING_STATE: &str = "training_state.pt";

/// What a run has done so far, beyond the parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Progress {
    /// The next epoch to train.
    pub next_epoch: usize,
    pub seed: u64,
    /// The best selection metric so far (HR@k of validation when the dataset has it, else of
    /// test; full-ranking HR@k with `--eval full`).
    pub best_hr: f64,
    /// The test set's sampled HR@k at the best epoch (`best_accuracy` in the log).
    pub best_test_hr: f64,
    pub best_epoch: Option<usize>,
    pub train_throughputs: Vec<f64>,
    pub eval_throughputs: Vec<f64>,
    /// Seconds from the run's start to the best model, and the time trained so far.
    pub time_to_best: f64,
    pub elapsed: f64,
}

pub(crate) fn save(path: &Path, model: &dyn Model, adam: &Adam, progress: &Progress) -> Result<(), TrainError> {
    let mut entries: Vec<(String, Tensor)> =
        model.state_dict().into_iter().map(|(k, v)| (format!("model.{k}"), v)).collect();
    entries.extend(adam.state().into_iter().map(|(k, v)| (format!("adam.{k}"), v)));
    let scalar_f = |v: f64| Tensor::from(v).to_kind(Kind::Double);
    entries.push(("progress.next_epoch".into(), Tensor::from(progress.next_epoch as i64)));
    entries.push(("progress.seed".into(), Tensor::from(progress.seed as i64)));
    entries.push(("progress.best_hr".into(), scalar_f(progress.best_hr)));
    entries.push(("progress.best_test_hr".into(), scalar_f(progress.best_test_hr)));
    entries.push(("progress.best_epoch".into(), Tensor::from(progress.best_epoch.map_or(-1, |e| e as i64))));
    entries.push(("progress.train_throughputs".into(), Tensor::from_slice(&progress.train_throughputs)));
    entries.push(("progress.eval_throughputs".into(), Tensor::from_slice(&progress.eval_throughputs)));
    entries.push(("progress.time_to_best".into(), scalar_f(progress.time_to_best)));
    entries.push(("progress.elapsed".into(), scalar_f(progress.elapsed)));
    tch_data::save_tch_map(path, &entries)?;
    Ok(())
}

pub(crate) fn load(path: &Path, model: &mut dyn Model, adam: &mut Adam) -> Result<Progress, TrainError> {
    let bad = |message: String| TrainError::Resume { path: path.to_owned(), message };
    let entries = tch_data::load_tch_map(path, Device::Cpu)?;
    let get = |key: &str| entries.iter().find(|(k, _)| k == key).map(|(_, t)| t.shallow_clone());
    let model_entries: Vec<(String, Tensor)> = entries
        .iter()
        .filter_map(|(k, t)| k.strip_prefix("model.").map(|name| (name.to_owned(), t.shallow_clone())))
        .collect();
    model.load_state_dict(model_entries).map_err(|e| bad(e.to_string()))?;
    let device = model.device();
    adam.restore(|k| get(&format!("adam.{k}")).map(|t| t.to_device(device)))
        .ok_or_else(|| bad("the optimizer state is missing or of another shape".into()))?;
    let need = |key: &str| get(key).ok_or_else(|| bad(format!("`{key}` is missing")));
    let list = |t: Tensor| Vec::<f64>::try_from(t.to_kind(Kind::Double)).unwrap_or_default();
    let best_epoch = need("progress.best_epoch")?.int64_value(&[]);
    Ok(Progress {
        next_epoch: need("progress.next_epoch")?.int64_value(&[]) as usize,
        seed: need("progress.seed")?.int64_value(&[]) as u64,
        best_hr: need("progress.best_hr")?.double_value(&[]),
        // States written before validation selection existed: the selection metric was test HR.
        best_test_hr: get("progress.best_test_hr")
            .or_else(|| get("progress.best_hr"))
            .map_or(0.0, |t| t.double_value(&[])),
        best_epoch: (best_epoch >= 0).then_some(best_epoch as usize),
        train_throughputs: list(need("progress.train_throughputs")?),
        eval_throughputs: list(need("progress.eval_throughputs")?),
        time_to_best: need("progress.time_to_best")?.double_value(&[]),
        elapsed: need("progress.elapsed")?.double_value(&[]),
    })
}
