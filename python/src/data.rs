//! Preparing, transcoding and checking datasets, and `Dataset`: a prepared folder's spec, sizes,
//! id maps and mappings as torch tensors.

use crate::errors::{raise, Kind, OrRaise};
use featurespec::ncf::NcfLayout;
use featurespec::FeatureSpec;
use preprocess::{PrepareOptions, RawFormat};
use pyo3::prelude::*;
use pyo3::sync::MutexExt;
use pyo3::types::{PyDict, PyList};
use pyo3_tch::PyTensor;
use spec_dataset::{IdIndex, IdMap, IdSide};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock, PoisonError};
use tch::{Device, Tensor};

/// Raw ratings -> a feature-spec dataset folder, as `ncf-prepare --path PATH --output OUTPUT`
/// (the reference's convert.py): sort, deduplicate, renumber, leave the latest item out for test,
/// draw `negatives` test negatives per user with `seed`.
///
/// format: "ml-20m" (MovieLens ratings.csv), "ml-1m", "ml-10m" (ratings.dat), "ml-100k"
///     (u.data), "like-movielens" (user,item,rating,timestamp without header) or None to detect it.
/// validation: also hold out each user's second-latest item as a validation mapping.
/// force: replace `output` if it holds a dataset already. Otherwise that dataset is checked and
///     reused with a warning, as ncf-prepare does (an error if validation=True and it has none).
///
/// Returns a dict: users, items, train_rows, test_rows, validation_rows, ratings, duplicates,
/// format, seconds, output, reused (a reused dataset: users, items, <mapping>_rows, output,
/// reused). The GIL is released while it runs.
#[pyfunction]
#[pyo3(signature = (path, output, format=None, validation=false, seed=1, negatives=100, force=false))]
#[allow(clippy::too_many_arguments)]
pub fn prepare<'py>(
    py: Python<'py>,
    path: PathBuf,
    output: PathBuf,
    format: Option<&str>,
    validation: bool,
    seed: u64,
    negatives: usize,
    force: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let format =
        format.map(|f| f.parse::<RawFormat>().map_err(|e| raise(Kind::Value, format!("format: {e}")))).transpose()?;
    let out = PyDict::new(py);
    out.set_item("output", output.display().to_string())?;
    if output.join("feature_spec.yaml").exists() && !force {
        // ncf-prepare's rule: a prepared folder is reused (checked first), as the reference does.
        let report = py.allow_threads(|| preprocess::verify(&output, None)).or_raise()?;
        let has_validation = report.rows.iter().any(|(m, _)| m == featurespec::ncf::VALIDATION_MAPPING);
        if validation && !has_validation {
            return Err(raise(
                Kind::Value,
                format!(
                    "{} holds a dataset prepared without validation=True; pass force=True to prepare it again",
                    output.display()
                ),
            ));
        }
        let message = format!("using the dataset already prepared at {} (force=True to rebuild)", output.display());
        py.import("warnings")?.getattr("warn")?.call1((message,))?;
        out.set_item("users", report.users)?;
        out.set_item("items", report.items)?;
        for (mapping, rows) in &report.rows {
            out.set_item(format!("{mapping}_rows"), rows)?;
        }
        out.set_item("reused", true)?;
        return Ok(out);
    }
    if output.exists() && !force && output.read_dir().map(|mut d| d.next().is_some()).unwrap_or(true) {
        return Err(raise(
            Kind::Value,
            format!(
                "{} exists and is not a prepared dataset; choose another output or pass force=True",
                output.display()
            ),
        ));
    }
    let options = PrepareOptions { format, negatives, seed, replace: true, validation };
    let s = py.allow_threads(|| preprocess::prepare(&path, &output, &options, |_| {})).or_raise()?;
    out.set_item("users", s.users)?;
    out.set_item("items", s.items)?;
    out.set_item("train_rows", s.train_rows)?;
    out.set_item("test_rows", s.test_rows)?;
    out.set_item("validation_rows", s.validation_rows)?;
    out.set_item("ratings", s.stats.ratings)?;
    out.set_item("duplicates", s.stats.duplicates)?;
    out.set_item("format", s.format.to_string())?;
    out.set_item("seconds", s.elapsed.as_secs_f64())?;
    out.set_item("reused", false)?;
    Ok(out)
}

/// A CSV feature-spec dataset in folder `path` -> PyTorch tensor files in `output`, as
/// `ncf-transcode` (the reference's transcode.py). `output` is written whole and renamed into
/// place. Returns a dict: rows (per mapping), users, items, spec (the written spec's path).
#[pyfunction]
#[pyo3(signature = (path, output, feature_spec_in="feature_spec.yaml", feature_spec_out="feature_spec.yaml"))]
pub fn transcode<'py>(
    py: Python<'py>,
    path: PathBuf,
    output: PathBuf,
    feature_spec_in: &str,
    feature_spec_out: &str,
) -> PyResult<Bound<'py, PyDict>> {
    if path.canonicalize().ok().is_some_and(|p| output.canonicalize().ok() == Some(p)) {
        return Err(raise(
            Kind::Value,
            "output must be another folder than path (it is written whole and renamed into place)",
        ));
    }
    let spec_in = path.join(feature_spec_in);
    let s = py.allow_threads(|| ::transcode::transcode(&spec_in, &output, feature_spec_out)).or_raise()?;
    let out = PyDict::new(py);
    out.set_item("rows", s.rows.into_iter().collect::<HashMap<_, _>>())?;
    out.set_item("users", s.user_cardinality)?;
    out.set_item("items", s.item_cardinality)?;
    out.set_item("spec", output.join(feature_spec_out).display().to_string())?;
    Ok(out)
}

/// Checks a prepared dataset as `ncf-prepare verify` (the reference's correctness test): the
/// spec's rules, every file's dtype and shape, ids below their cardinality, test series of equal
/// length and, with `template`, the spec equal to it. Returns a dict: rows (per mapping), users,
/// items, test_samples_per_series; raises NcfValueError naming what is wrong.
#[pyfunction]
#[pyo3(signature = (dir, template=None))]
pub fn verify<'py>(py: Python<'py>, dir: PathBuf, template: Option<PathBuf>) -> PyResult<Bound<'py, PyDict>> {
    let r = py.allow_threads(|| preprocess::verify(&dir, template.as_deref())).or_raise()?;
    let out = PyDict::new(py);
    out.set_item("rows", r.rows.into_iter().collect::<HashMap<_, _>>())?;
    out.set_item("users", r.users)?;
    out.set_item("items", r.items)?;
    out.set_item("test_samples_per_series", r.test_samples_per_series)?;
    Ok(out)
}

/// One side's id map both ways.
struct Ids {
    map: IdMap,
    index: IdIndex,
}

/// A prepared dataset folder (what ncf_rs.prepare or ncf-prepare wrote): its feature spec, sizes,
/// raw <-> index id maps, and its mappings (train, test, validation) as torch tensors.
///
/// Dataset(dir, feature_spec="feature_spec.yaml")
///
/// The mappings are read on first use and kept: `ds.train["user"]` is the loaded tensor itself,
/// not a copy (the same memory on every access; modify it and you modify the dataset in memory).
#[pyclass(module = "ncf_rs", frozen)]
pub struct Dataset {
    dir: PathBuf,
    spec: FeatureSpec,
    layout: NcfLayout,
    users: u64,
    items: u64,
    user_ids: Option<Ids>,
    item_ids: Option<Ids>,
    mappings: Mutex<HashMap<String, Vec<(String, Tensor)>>>,
    spec_json: OnceLock<String>,
}

fn ids(spec: &FeatureSpec, side: IdSide, len: u64) -> PyResult<Option<Ids>> {
    let map = IdMap::find(spec, side, Some(len as usize)).or_raise()?;
    Ok(map.map(|map| {
        let index = map.index();
        Ids { map, index }
    }))
}

impl Dataset {
    fn mapping<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Option<Bound<'py, PyDict>>> {
        if !self.spec.source_spec.contains_key(name) {
            return Ok(None);
        }
        // Waiting for the lock without the GIL: a thread loading a mapping holds it meanwhile.
        let mut cache = self.mappings.lock_py_attached(py).unwrap_or_else(PoisonError::into_inner);
        if !cache.contains_key(name) {
            let loaded = py.allow_threads(|| tch_data::load_mapping(&self.spec, name, Device::Cpu)).or_raise()?;
            cache.insert(name.to_owned(), loaded.features.into_iter().collect());
        }
        let out = PyDict::new(py);
        for (feature, tensor) in &cache[name] {
            out.set_item(feature, PyTensor(tensor.shallow_clone()))?;
        }
        Ok(Some(out))
    }

    fn raw_ids<'py>(py: Python<'py>, ids: &Option<Ids>) -> PyResult<PyObject> {
        Ok(match ids.as_ref().map(|i| &i.map) {
            None => py.None(),
            Some(IdMap::Int(v)) => PyTensor(Tensor::from_slice(v)).into_pyobject(py)?.unbind(),
            Some(IdMap::Text(v)) => PyList::new(py, v)?.into_any().unbind(),
        })
    }

    fn lookup(ids: &Option<Ids>, what: &str, count: u64, raw: &Bound<'_, PyAny>) -> PyResult<i64> {
        let text = raw.str()?.to_string();
        match ids {
            Some(i) => i.index.get(&text).map(|k| k as i64),
            None => text.parse::<i64>().ok().filter(|k| (0..count as i64).contains(k)),
        }
        .ok_or_else(|| raise(Kind::Key, format!("{what} {text} is not in the dataset")))
    }
}

#[pymethods]
impl Dataset {
    #[new]
    #[pyo3(signature = (dir, feature_spec="feature_spec.yaml"))]
    fn new(dir: PathBuf, feature_spec: &str) -> PyResult<Self> {
        let spec = FeatureSpec::from_yaml_file(dir.join(feature_spec)).or_raise()?;
        let layout = NcfLayout::from_spec(&spec).or_raise()?;
        let (users, items) = layout.cardinalities(&spec).or_raise()?;
        let user_ids = ids(&spec, IdSide::User, users)?;
        let item_ids = ids(&spec, IdSide::Item, items)?;
        Ok(Dataset {
            dir,
            spec,
            layout,
            users,
            items,
            user_ids,
            item_ids,
            mappings: Mutex::new(HashMap::new()),
            spec_json: OnceLock::new(),
        })
    }

    /// The dataset's folder.
    #[getter]
    fn path(&self) -> String {
        self.dir.display().to_string()
    }

    /// Number of users (the user feature's cardinality).
    #[getter]
    fn users(&self) -> u64 {
        self.users
    }

    /// Number of items (the item feature's cardinality).
    #[getter]
    fn items(&self) -> u64 {
        self.items
    }

    /// Test lists' length: one positive and its negatives (101 in the reference's protocol).
    #[getter]
    fn test_samples_per_series(&self) -> u64 {
        self.layout.test_samples_per_series
    }

    /// The feature spec (feature_spec.yaml) as a dict.
    #[getter]
    fn spec<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let text = match self.spec_json.get() {
            Some(t) => t,
            None => {
                let t = serde_json::to_string(&self.spec).map_err(|e| raise(Kind::Value, e.to_string()))?;
                self.spec_json.get_or_init(|| t)
            }
        };
        py.import("json")?.getattr("loads")?.call1((text,))
    }

    /// The mappings the spec declares (e.g. ["train", "test"], with "validation" when prepared
    /// with validation=True).
    #[getter]
    fn mappings(&self) -> Vec<String> {
        self.spec.source_spec.keys().cloned().collect()
    }

    /// The train mapping: {feature name: int64 tensor [rows]} (user, item, label...).
    #[getter]
    fn train<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        self.mapping(py, "train")
    }

    /// The test mapping: {feature name: tensor [users * test_samples_per_series]}.
    #[getter]
    fn test<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        self.mapping(py, "test")
    }

    /// The validation mapping, or None when the dataset has none.
    #[getter]
    fn validation<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        self.mapping(py, featurespec::ncf::VALIDATION_MAPPING)
    }

    /// Any mapping the spec declares, by name: {feature name: tensor}.
    fn mapping_tensors<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyDict>> {
        self.mapping(py, name)?.ok_or_else(|| {
            raise(Kind::Key, format!("the dataset has no mapping `{name}`; it has {:?}", self.mappings()))
        })
    }

    /// Raw user ids by index: an int64 tensor (MovieLens ids), a list of str (text ids), or None
    /// when the dataset has no id maps (its ids are the indices).
    #[getter]
    fn user_ids(&self, py: Python<'_>) -> PyResult<PyObject> {
        Dataset::raw_ids(py, &self.user_ids)
    }

    /// Raw item ids by index, as `user_ids`.
    #[getter]
    fn item_ids(&self, py: Python<'_>) -> PyResult<PyObject> {
        Dataset::raw_ids(py, &self.item_ids)
    }

    /// The index (0-based, what the tensors hold) of a raw user id; NcfKeyError when unknown.
    fn user_index(&self, raw: &Bound<'_, PyAny>) -> PyResult<i64> {
        Dataset::lookup(&self.user_ids, "user", self.users, raw)
    }

    /// The index of a raw item id; NcfKeyError when unknown.
    fn item_index(&self, raw: &Bound<'_, PyAny>) -> PyResult<i64> {
        Dataset::lookup(&self.item_ids, "item", self.items, raw)
    }

    fn __repr__(&self) -> String {
        format!(
            "Dataset('{}', users={}, items={}, mappings={:?})",
            self.dir.display(),
            self.users,
            self.items,
            self.mappings()
        )
    }
}
