//! The CUDA-linking trap: with the linker's default `--as-needed`, `libtorch_cuda.so` is dropped from
//! a tch executable and CUDA is never available, even on a GPU machine. The `torch-link` build helper
//! links it explicitly; this test executable is built the same way, so it checks at run time that the
//! library is really mapped into the process whenever the libtorch in use ships it.

use ncf_model::runtime::RuntimeInfo;
use std::path::Path;

#[test]
fn libtorch_cuda_is_loaded_when_libtorch_has_it() {
    // Touch libtorch so the process has certainly loaded it.
    let _ = tch::Tensor::from_slice(&[1i64, 2, 3]).sum(tch::Kind::Int64);
    let info = RuntimeInfo::current();
    let dir = info.libtorch_dir.clone().expect("libtorch_cpu.so must be mapped in a tch process");
    let ships_cuda = Path::new(&dir).join("libtorch_cuda.so").exists();
    assert_eq!(
        info.libtorch_cuda_loaded, ships_cuda,
        "libtorch at {dir} ships libtorch_cuda.so: {ships_cuda}, but it is mapped: {}",
        info.libtorch_cuda_loaded
    );
}
