//! `ncf_rs._ncf_rs`: the Python extension of ncf-rs, imported by the `ncf_rs` package.
//!
//! **What it is for.** Translating: Python arguments into the library crates' types (paths,
//! options, torch tensors shared through libtorch, not copied) and their results and errors back
//! into dicts, tensors, pandas DataFrames and exceptions. Each function is a thin face over the
//! same library call a binary makes: `prepare` over `preprocess::prepare` (ncf-prepare),
//! `transcode` over `transcode::transcode`, `train` over `ncf_train::Trainer` (ncf-train),
//! `Model` over `inference::Recommender` (ncf-infer).
//!
//! **What it is not.** No logic of its own: a behaviour that differs from the binaries' belongs in
//! the library crates, so that both faces keep giving the same answers.

mod data;
mod errors;
mod model;
mod train;

use pyo3::prelude::*;

#[pymodule]
fn _ncf_rs(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::register(m)?;
    m.add_function(wrap_pyfunction!(data::prepare, m)?)?;
    m.add_function(wrap_pyfunction!(data::transcode, m)?)?;
    m.add_function(wrap_pyfunction!(data::verify, m)?)?;
    m.add_function(wrap_pyfunction!(train::train, m)?)?;
    m.add_class::<data::Dataset>()?;
    m.add_class::<model::Model>()?;
    Ok(())
}
