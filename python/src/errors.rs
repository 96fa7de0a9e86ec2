//! Our errors as Python exceptions: every one derives from `ncf_rs.NcfError` and from the builtin a
//! Python user would catch for it (`FileNotFoundError`, `OSError`, `ValueError`, `KeyError`,
//! `TypeError`), with the library's message, which names the file, line, key or argument.

use pyo3::exceptions::{PyException, PyFileNotFoundError, PyKeyError, PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyDict, PyTuple, PyType};
use std::error::Error;

/// The exception classes, made once when the module is imported.
struct Classes {
    base: Py<PyType>,
    not_found: Py<PyType>,
    os: Py<PyType>,
    value: Py<PyType>,
    key: Py<PyType>,
    type_: Py<PyType>,
}

static CLASSES: GILOnceCell<Classes> = GILOnceCell::new();

/// Which builtin an error is, for Python.
#[derive(Clone, Copy)]
pub enum Kind {
    NotFound,
    Os,
    Value,
    Key,
    Type,
}

fn class(py: Python<'_>, name: &str, bases: &[Bound<'_, PyType>], doc: &str) -> PyResult<Py<PyType>> {
    let dict = PyDict::new(py);
    dict.set_item("__doc__", doc)?;
    dict.set_item("__module__", "ncf_rs")?;
    let bases = PyTuple::new(py, bases)?;
    let made = py.import("builtins")?.getattr("type")?.call1((name, bases, dict))?;
    Ok(made.downcast_into::<PyType>()?.unbind())
}

/// Adds `NcfError` and its subclasses to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let base = class(py, "NcfError", &[py.get_type::<PyException>()], "Base class of every error ncf_rs raises.")?;
    let b = base.bind(py).clone();
    let classes = Classes {
        not_found: class(
            py,
            "NcfFileNotFoundError",
            &[b.clone(), py.get_type::<PyFileNotFoundError>()],
            "A file or folder ncf_rs was given does not exist.",
        )?,
        os: class(py, "NcfOSError", &[b.clone(), py.get_type::<PyOSError>()], "Reading or writing a file failed.")?,
        value: class(
            py,
            "NcfValueError",
            &[b.clone(), py.get_type::<PyValueError>()],
            "Bad input: a malformed file, an option out of range, a model that does not fit its dataset.",
        )?,
        key: class(
            py,
            "NcfKeyError",
            &[b.clone(), py.get_type::<PyKeyError>()],
            "An id the dataset does not know (a user, an item).",
        )?,
        type_: class(
            py,
            "NcfTypeError",
            &[b.clone(), py.get_type::<PyTypeError>()],
            "An argument of the wrong type (e.g. a tensor of another dtype).",
        )?,
        base,
    };
    for (name, c) in [
        ("NcfError", &classes.base),
        ("NcfFileNotFoundError", &classes.not_found),
        ("NcfOSError", &classes.os),
        ("NcfValueError", &classes.value),
        ("NcfKeyError", &classes.key),
        ("NcfTypeError", &classes.type_),
    ] {
        m.add(name, c.clone_ref(py))?;
    }
    let _ = CLASSES.set(py, classes);
    Ok(())
}

/// A Python exception of `kind` with `message`.
pub fn raise(kind: Kind, message: impl Into<String>) -> PyErr {
    let message = message.into();
    Python::with_gil(|py| match CLASSES.get(py) {
        Some(c) => {
            let t = match kind {
                Kind::NotFound => &c.not_found,
                Kind::Os => &c.os,
                Kind::Value => &c.value,
                Kind::Key => &c.key,
                Kind::Type => &c.type_,
            };
            PyErr::from_type(t.bind(py).clone(), message)
        }
        None => PyValueError::new_err(message),
    })
}

/// A library error as the exception a Python user expects: an I/O error by its kind (a missing
/// file is `FileNotFoundError`), anything else `ValueError`; the message is the library's.
pub fn to_py(err: &(dyn Error + 'static)) -> PyErr {
    let mut cause: Option<&(dyn Error + 'static)> = Some(err);
    let mut kind = Kind::Value;
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            kind = if io.kind() == std::io::ErrorKind::NotFound { Kind::NotFound } else { Kind::Os };
            break;
        }
        cause = e.source();
    }
    raise(kind, err.to_string())
}

/// `?` on a library result inside a binding.
pub trait OrRaise<T> {
    fn or_raise(self) -> PyResult<T>;
}

impl<T, E: Error + 'static> OrRaise<T> for Result<T, E> {
    fn or_raise(self) -> PyResult<T> {
        self.map_err(|e| to_py(&e))
    }
}
