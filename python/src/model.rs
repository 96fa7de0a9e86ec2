//! `Model`: a trained checkpoint of any kind, for scoring pairs, recommending and its state dict.

use crate::errors::{raise, to_py, Kind};
use inference::{FoldInOptions, InferenceError, RawId, Recommender};
use ncf_model::runtime::DeviceChoice;
use ncf_model::{AnyModel, Model as _, ModelKind, PairTables};
use pyo3::prelude::*;
use pyo3::sync::MutexExt;
use pyo3::types::{PyDict, PyInt, PyList, PyString};
use pyo3_tch::PyTensor;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};
use tch::Device;

/// The model with the dataset it was trained on (recommending needs its id maps and train items),
/// or alone (scoring dataset ids and the state dict need nothing else).
enum Source {
    WithData(Box<Recommender>),
    Alone(AnyModel),
}

/// The model and what scoring pairs keeps between calls.
struct Loaded {
    source: Source,
    /// [`ncf_model::Model::pair_tables`], made on the first `score`: `None` until then.
    tables: Option<Option<PairTables>>,
    /// Set once `state_dict` has handed out views of the parameters: they may change at any time
    /// after, so tables made from them could be stale and are not used again.
    views_out: bool,
}

impl Loaded {
    fn model(&self) -> &dyn ncf_model::Model {
        match &self.source {
            Source::WithData(r) => r.model(),
            Source::Alone(m) => m.as_ref(),
        }
    }

    /// Makes the pair tables on first use (not once views are out).
    fn make_tables(&mut self) {
        if !self.views_out && self.tables.is_none() {
            self.tables = Some(self.model().pair_tables());
        }
    }

    /// The pair tables to score with, if made and still valid.
    fn tables(&self) -> Option<&PairTables> {
        if self.views_out {
            return None;
        }
        self.tables.as_ref().and_then(Option::as_ref)
    }
}

/// A trained model: NeuMF, GMF, MLP or MF, its kind and widths read from the checkpoint itself.
///
/// Load it with `Model.load(checkpoint, data=None, device="cpu")`; give `data` (the prepared
/// dataset folder it was trained on) to recommend in raw ids.
#[pyclass(module = "ncf_rs", frozen)]
pub struct Model {
    loaded: Mutex<Loaded>,
    kind: ModelKind,
    path: PathBuf,
    data: Option<PathBuf>,
}

fn py_raw(py: Python<'_>, id: &RawId) -> PyResult<PyObject> {
    Ok(match id {
        RawId::Int(i) => i.into_pyobject(py)?.into_any().unbind(),
        RawId::Text(s) => s.into_pyobject(py)?.into_any().unbind(),
    })
}

/// Inference errors as Python exceptions; an unknown user is a KeyError.
fn inference_err(e: InferenceError) -> PyErr {
    match e {
        InferenceError::UnknownUser(_) => raise(Kind::Key, e.to_string()),
        InferenceError::TensorArgument(_) => raise(Kind::Type, e.to_string()),
        other => to_py(&other),
    }
}

/// How PyTorch spells a device.
fn device_name(device: Device) -> String {
    match device {
        Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".to_owned(),
    }
}

/// A tensor from a torch.Tensor as is, or from anything `torch.as_tensor` takes (a numpy array,
/// whose memory it shares on the CPU; a list), placed on `device`.
fn tensor_of(obj: &Bound<'_, PyAny>, what: &str, device: Device) -> PyResult<tch::Tensor> {
    let torch = obj.py().import("torch")?;
    let obj = if obj.is_instance(&torch.getattr("Tensor")?)? {
        obj.clone()
    } else {
        let kwargs = PyDict::new(obj.py());
        kwargs.set_item("device", device_name(device))?;
        torch
            .getattr("as_tensor")?
            .call((obj,), Some(&kwargs))
            .map_err(|e| raise(Kind::Type, format!("{what}: expected a torch.Tensor or an array of ids ({e})")))?
    };
    Ok(obj.extract::<PyTensor>()?.0)
}

/// Raw ids from one id (an int or a str) or an iterable of them.
fn raw_ids(obj: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    if obj.is_instance_of::<PyString>() || obj.is_instance_of::<PyInt>() {
        return Ok(vec![obj.str()?.to_string()]);
    }
    obj.try_iter()?.map(|u| Ok(u?.str()?.to_string())).collect()
}

impl Model {
    /// The model, waiting for it without holding the GIL (a thread scoring with the GIL released
    /// holds it meanwhile). A panic in another call cannot have left it half-changed (no call
    /// changes the parameters under the lock), so a poisoned lock is taken as it is.
    fn lock(&self, py: Python<'_>) -> MutexGuard<'_, Loaded> {
        self.loaded.lock_py_attached(py).unwrap_or_else(PoisonError::into_inner)
    }

    fn with_data<'a>(&self, loaded: &'a mut Loaded, what: &str) -> PyResult<&'a mut Recommender> {
        match &mut loaded.source {
            Source::WithData(r) => Ok(r),
            Source::Alone(_) => Err(raise(
                Kind::Value,
                format!(
                    "{what} needs the dataset the model was trained on: Model.load('{}', data='path/to/dataset')",
                    self.path.display()
                ),
            )),
        }
    }

    fn frame<'py>(py: Python<'py>, columns: Vec<(&str, Bound<'py, PyList>)>) -> PyResult<Bound<'py, PyAny>> {
        let dict = PyDict::new(py);
        for (name, values) in columns {
            dict.set_item(name, values)?;
        }
        py.import("pandas")?.getattr("DataFrame")?.call1((dict,))
    }
}

#[pymethods]
impl Model {
    /// Loads a checkpoint (`model.pth` from ncf_rs.train, ncf-train or the PyTorch reference) of
    /// any kind. `data`: the prepared dataset folder it was trained on (needed to recommend; its
    /// sizes must match the checkpoint's). `device`: "cpu", "cuda", "cuda:N" or "auto".
    #[staticmethod]
    #[pyo3(signature = (checkpoint, data=None, device="cpu"))]
    fn load(py: Python<'_>, checkpoint: PathBuf, data: Option<PathBuf>, device: &str) -> PyResult<Model> {
        let device: Device = device
            .parse::<DeviceChoice>()
            .and_then(|d| d.resolve())
            .map_err(|e| raise(Kind::Value, format!("device: {e}")))?;
        let (kind, source) = py
            .allow_threads(|| -> Result<(ModelKind, Source), InferenceError> {
                Ok(match &data {
                    Some(dir) => {
                        let r = Recommender::open(dir, &checkpoint, device)?;
                        (r.model_kind(), Source::WithData(Box::new(r)))
                    }
                    None => {
                        let (kind, mut model) = ncf_model::load_any(&checkpoint, 0.0, device)?;
                        model.set_train(false);
                        (kind, Source::Alone(model))
                    }
                })
            })
            .map_err(inference_err)?;
        let loaded = Loaded { source, tables: None, views_out: false };
        Ok(Model { loaded: Mutex::new(loaded), kind, path: checkpoint, data })
    }

    /// The model's kind: "neumf", "gmf", "mlp" or "mf".
    #[getter]
    fn kind(&self) -> &'static str {
        self.kind.name()
    }

    /// Number of users the model has rows for.
    #[getter]
    fn users(&self, py: Python<'_>) -> PyResult<i64> {
        Ok(self.lock(py).model().users())
    }

    /// Number of items.
    #[getter]
    fn items(&self, py: Python<'_>) -> PyResult<i64> {
        Ok(self.lock(py).model().items())
    }

    /// Number of parameters.
    #[getter]
    fn parameter_count(&self, py: Python<'_>) -> PyResult<i64> {
        Ok(self.lock(py).model().parameter_count())
    }

    /// The device the parameters live on ("cpu" or "cuda:N").
    #[getter]
    fn device(&self, py: Python<'_>) -> PyResult<String> {
        Ok(device_name(self.lock(py).model().device()))
    }

    /// Two-stage ranking for recommend and recommend_for_history (False by default): all-item
    /// scoring in bfloat16 (AMX tiles where the CPU has them, else oneDNN; NeuMF 2-3x faster)
    /// picks each user's best 4k+32 items and float32 ranks them, so the scores are float32's and
    /// the lists float32's unless an item falls outside the candidates. With AMX, the fold-in of
    /// recommend_for_history also fits in bfloat16 (~6x faster). Setting True raises
    /// ValueError for MF and GMF, off the CPU, on a CPU without bfloat16 instructions, and
    /// without `data`.
    #[getter]
    fn bf16_candidates(&self, py: Python<'_>) -> bool {
        match &self.lock(py).source {
            Source::WithData(r) => r.bf16_candidates(),
            Source::Alone(_) => false,
        }
    }

    #[setter]
    fn set_bf16_candidates(&self, py: Python<'_>, on: bool) -> PyResult<()> {
        let mut guard = self.lock(py);
        let recommender = self.with_data(&mut guard, "bf16_candidates")?;
        recommender.set_bf16_candidates(on).map_err(|e| raise(Kind::Value, e.to_string()))
    }

    /// Probabilities sigmoid(model(user, item)) for pairs of dataset ids (0-based, what
    /// Dataset.test holds): two int64 vectors of one length, torch tensors on the model's device
    /// (used as they are, no copy) or numpy arrays / lists (through torch.as_tensor). Returns a
    /// float32 tensor [N], equal to PyTorch's forward of the same state dict in eval mode; with
    /// `out` (a float32 tensor [N] on the model's device) the probabilities are written into it
    /// and `out` itself is returned. NeuMF and MLP read their first layer from per-user and
    /// per-item tables made on the first call (until state_dict() hands out views). The GIL is
    /// released while it runs.
    #[pyo3(signature = (users, items, out=None))]
    fn score<'py>(
        &self,
        py: Python<'py>,
        users: &Bound<'py, PyAny>,
        items: &Bound<'py, PyAny>,
        out: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let mut guard = self.lock(py);
        let device = guard.model().device();
        let (users, items) = (tensor_of(users, "users", device)?, tensor_of(items, "items", device)?);
        let loaded: &mut Loaded = &mut guard;
        let scores = py
            .allow_threads(move || {
                loaded.make_tables();
                let loaded: &Loaded = loaded;
                inference::score_tensors(loaded.model(), &users, &items, loaded.tables())
            })
            .map_err(inference_err)?;
        match out {
            None => Ok(PyTensor(scores).into_pyobject(py)?),
            Some(target) => {
                let mut t = target.extract::<PyTensor>()?.0;
                if t.kind() != tch::Kind::Float || t.size() != scores.size() || t.device() != scores.device() {
                    return Err(raise(
                        Kind::Type,
                        format!(
                            "out: expected a float32 tensor of shape [{}] on {}, got {:?} of shape {:?} on {}",
                            scores.size()[0],
                            device_name(scores.device()),
                            t.kind(),
                            t.size(),
                            device_name(t.device())
                        ),
                    ));
                }
                t.f_copy_(&scores).map_err(|e| raise(Kind::Value, format!("out: {e}")))?;
                Ok(target)
            }
        }
    }

    /// The top `k` items for each of `users` (raw user ids as in the ratings file: an id or a
    /// list), best first, their train items left out unless exclude_seen=False. Returns a pandas
    /// DataFrame with columns user, rank (1 = best), item (raw id) and score (probability).
    /// Needs the dataset (Model.load(..., data=...)); an unknown user raises NcfKeyError.
    #[pyo3(signature = (users, k=10, exclude_seen=true))]
    fn recommend<'py>(
        &self,
        py: Python<'py>,
        users: &Bound<'py, PyAny>,
        k: usize,
        exclude_seen: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let raw = raw_ids(users)?;
        let mut guard = self.lock(py);
        let recommender = self.with_data(&mut guard, "recommend")?;
        let ids = recommender.users_by_raw_id(&raw).map_err(inference_err)?;
        let recs = {
            let recommender = &mut *recommender;
            py.allow_threads(move || recommender.recommend(&ids, k, !exclude_seen))
        };
        let (user, rank, item, score) = (PyList::empty(py), PyList::empty(py), PyList::empty(py), PyList::empty(py));
        for rec in &recs {
            let u = py_raw(py, &rec.user)?;
            for (r, (i, s)) in rec.items.iter().enumerate() {
                user.append(u.clone_ref(py))?;
                rank.append(r + 1)?;
                item.append(py_raw(py, i)?)?;
                score.append(*s)?;
            }
        }
        Model::frame(py, vec![("user", user), ("rank", rank), ("item", item), ("score", score)])
    }

    /// The top `k` for a person the model may not know, given the raw ids of the items they
    /// touched: their user rows are fitted to those items with the model fixed (fold-in: `steps`
    /// Adam steps on the training loss with `negatives` fresh negatives per item, a Gaussian prior
    /// from the trained users), as `ncf-infer recommend --history`. With `user` (a known raw id)
    /// that user is refreshed from their own rows instead. Their items are left out unless
    /// exclude_seen=False. Items the dataset does not know are skipped with a warning. Returns a
    /// DataFrame with columns rank, item, score. Deterministic for a given seed.
    #[pyo3(signature = (items, k=10, user=None, exclude_seen=true, steps=30, negatives=4, learning_rate=0.1, prior_weight=1.0, seed=0))]
    #[allow(clippy::too_many_arguments)]
    fn recommend_for_history<'py>(
        &self,
        py: Python<'py>,
        items: &Bound<'py, PyAny>,
        k: usize,
        user: Option<&Bound<'py, PyAny>>,
        exclude_seen: bool,
        steps: usize,
        negatives: usize,
        learning_rate: f64,
        prior_weight: f64,
        seed: u64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let raw = raw_ids(items)?;
        let mut guard = self.lock(py);
        let recommender = self.with_data(&mut guard, "recommend_for_history")?;
        let user = match user {
            Some(u) => Some(recommender.users_by_raw_id(&[u.str()?.to_string()]).map_err(inference_err)?[0]),
            None => None,
        };
        let (known, unknown) = recommender.items_by_raw_id(&raw);
        if !unknown.is_empty() {
            let shown: Vec<&str> = unknown.iter().take(10).map(String::as_str).collect();
            let message = format!(
                "{} of {} items are not in the dataset and were skipped: {}{}",
                unknown.len(),
                raw.len(),
                shown.join(", "),
                if unknown.len() > shown.len() { ", ..." } else { "" }
            );
            py.import("warnings")?.getattr("warn")?.call1((message,))?;
        }
        let options = FoldInOptions { steps, negatives, learning_rate, prior_weight, seed };
        let top = {
            let recommender = &mut *recommender;
            py.allow_threads(move || recommender.recommend_for_history(user, &known, k, !exclude_seen, &options))
        }
        .map_err(inference_err)?;
        let (rank, item, score) = (PyList::empty(py), PyList::empty(py), PyList::empty(py));
        for (r, (i, s)) in top.iter().enumerate() {
            rank.append(r + 1)?;
            item.append(py_raw(py, i)?)?;
            score.append(*s)?;
        }
        Model::frame(py, vec![("rank", rank), ("item", item), ("score", score)])
    }

    /// The parameters as an OrderedDict of torch tensors, keyed and ordered as PyTorch's
    /// `model.state_dict()` for the same model, so `module.load_state_dict(m.state_dict())`
    /// takes them. Detached views of the model's own memory (no copy): clone them to keep a
    /// snapshot.
    fn state_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let mut guard = self.lock(py);
        guard.views_out = true;
        guard.tables = None;
        let ordered = py.import("collections")?.getattr("OrderedDict")?.call0()?;
        for (key, tensor) in guard.model().state_dict() {
            ordered.set_item(key, PyTensor(tensor.detach()))?;
        }
        Ok(ordered)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let guard = self.lock(py);
        let m = guard.model();
        Ok(format!(
            "Model(kind='{}', users={}, items={}, parameters={}, checkpoint='{}'{})",
            self.kind.name(),
            m.users(),
            m.items(),
            m.parameter_count(),
            self.path.display(),
            self.data.as_ref().map(|d| format!(", data='{}'", d.display())).unwrap_or_default()
        ))
    }
}
