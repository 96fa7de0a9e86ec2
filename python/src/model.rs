//! `Model`: a trained checkpoint of any kind, for scoring pairs, recommending and its state dict.

use crate::errors::{raise, to_py, without_gil, Kind};
use inference::{FoldInOptions, InferenceError, RawId, Recommender};
use ncf_model::runtime::DeviceChoice;
use ncf_model::{AnyModel, Model as _, ModelKind};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use pyo3_tch::PyTensor;
use std::path::PathBuf;
use std::sync::Mutex;
use tch::Device;

/// The model with the dataset it was trained on (recommending needs its id maps and train items),
/// or alone (scoring dataset ids and the state dict need nothing else).
enum Loaded {
    WithData(Box<Recommender>),
    Alone(AnyModel),
}

impl Loaded {
    fn model(&self) -> &dyn ncf_model::Model {
        match self {
            Loaded::WithData(r) => r.model(),
            Loaded::Alone(m) => m.as_ref(),
        }
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

/// A tensor from a torch.Tensor as is, or from anything `torch.as_tensor` takes (a numpy array
/// without a copy, a list).
fn tensor_of(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<tch::Tensor> {
    let torch = obj.py().import("torch")?;
    let obj = if obj.is_instance(&torch.getattr("Tensor")?)? {
        obj.clone()
    } else {
        torch
            .getattr("as_tensor")?
            .call1((obj,))
            .map_err(|e| raise(Kind::Type, format!("{what}: expected a torch.Tensor or an array of ids ({e})")))?
    };
    Ok(obj.extract::<PyTensor>()?.0)
}

impl Model {
    fn lock(&self) -> PyResult<std::sync::MutexGuard<'_, Loaded>> {
        self.loaded.lock().map_err(|_| raise(Kind::Value, "the model is unusable after a panic in another thread"))
    }

    fn with_data<'a>(&self, loaded: &'a Loaded, what: &str) -> PyResult<&'a Recommender> {
        match loaded {
            Loaded::WithData(r) => Ok(r),
            Loaded::Alone(_) => Err(raise(
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
        let (kind, loaded) = without_gil(py, || -> Result<(ModelKind, Loaded), InferenceError> {
            Ok(match &data {
                Some(dir) => {
                    let r = Recommender::open(dir, &checkpoint, device)?;
                    (r.model_kind(), Loaded::WithData(Box::new(r)))
                }
                None => {
                    let (kind, mut model) = ncf_model::load_any(&checkpoint, 0.0, device)?;
                    model.set_train(false);
                    (kind, Loaded::Alone(model))
                }
            })
        })
        .map_err(inference_err)?;
        Ok(Model { loaded: Mutex::new(loaded), kind, path: checkpoint, data })
    }

    /// The model's kind: "neumf", "gmf", "mlp" or "mf".
    #[getter]
    fn kind(&self) -> &'static str {
        self.kind.name()
    }

    /// Number of users the model has rows for.
    #[getter]
    fn users(&self) -> PyResult<i64> {
        Ok(self.lock()?.model().users())
    }

    /// Number of items.
    #[getter]
    fn items(&self) -> PyResult<i64> {
        Ok(self.lock()?.model().items())
    }

    /// Number of parameters.
    #[getter]
    fn parameter_count(&self) -> PyResult<i64> {
        Ok(self.lock()?.model().parameter_count())
    }

    /// The device the parameters live on ("cpu" or "cuda:N").
    #[getter]
    fn device(&self) -> PyResult<String> {
        Ok(match self.lock()?.model().device() {
            Device::Cuda(i) => format!("cuda:{i}"),
            _ => "cpu".to_owned(),
        })
    }

    /// Probabilities sigmoid(model(user, item)) for pairs of dataset ids (0-based, what
    /// Dataset.test holds): two int64 vectors of one length, torch tensors on the model's device
    /// (used as they are, no copy) or numpy arrays / lists. Returns a float32 tensor [N], equal to
    /// PyTorch's forward of the same state dict in eval mode. The GIL is released while it runs.
    fn score(&self, py: Python<'_>, users: &Bound<'_, PyAny>, items: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
        let (users, items) = (tensor_of(users, "users")?, tensor_of(items, "items")?);
        let guard = self.lock()?;
        let loaded: &Loaded = &guard;
        let out = without_gil(py, move || inference::score_tensors(loaded.model(), &users, &items));
        Ok(PyTensor(out.map_err(inference_err)?))
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
        let raw: Vec<String> =
            if users.is_instance_of::<pyo3::types::PyString>() || users.is_instance_of::<pyo3::types::PyInt>() {
                vec![users.str()?.to_string()]
            } else {
                users.try_iter()?.map(|u| Ok(u?.str()?.to_string())).collect::<PyResult<_>>()?
            };
        let guard = self.lock()?;
        let recommender = self.with_data(&guard, "recommend")?;
        let ids = recommender.users_by_raw_id(&raw).map_err(inference_err)?;
        let recs = without_gil(py, || recommender.recommend(&ids, k, !exclude_seen));
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
        let raw: Vec<String> = items.try_iter()?.map(|i| Ok(i?.str()?.to_string())).collect::<PyResult<_>>()?;
        let guard = self.lock()?;
        let recommender = self.with_data(&guard, "recommend_for_history")?;
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
        let top = without_gil(py, || recommender.recommend_for_history(user, &known, k, !exclude_seen, &options))
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
        let guard = self.lock()?;
        let ordered = py.import("collections")?.getattr("OrderedDict")?.call0()?;
        for (key, tensor) in guard.model().state_dict() {
            ordered.set_item(key, PyTensor(tensor.detach()))?;
        }
        Ok(ordered)
    }

    fn __repr__(&self) -> PyResult<String> {
        let guard = self.lock()?;
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
