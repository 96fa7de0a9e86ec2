// Compiles cpp/ops.cpp (and cpp/amx.cpp, cpp/gloo.cpp) against the headers of the libtorch tch links (LIBTORCH, which
// .cargo/config.toml points at the checkout's .libtorch), with libtorch's C++ ABI.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=cpp/ops.cpp");
    println!("cargo:rerun-if-changed=cpp/amx.cpp");
    println!("cargo:rerun-if-changed=cpp/bridge.h");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let libtorch = PathBuf::from(
        std::env::var("LIBTORCH").expect("LIBTORCH must point at libtorch (run scripts/setup-libtorch.sh)"),
    );
    // PyTorch's PyPI wheels (2.7 and later) are built with the C++11 ABI.
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    // The gloo headers ProcessGroupGloo.hpp includes (Debian's libgloo-dev; the wheel lacks them):
    // with them cpp/gloo.cpp binds libtorch's gloo process group, without them it builds stubs
    // that say what to install.
    println!("cargo:rerun-if-changed=cpp/gloo.cpp");
    println!("cargo:rerun-if-env-changed=NCF_GLOO_INCLUDE");
    let gloo_include = PathBuf::from(std::env::var("NCF_GLOO_INCLUDE").unwrap_or_else(|_| "/usr/include".into()));
    let gloo_header = gloo_include.join("gloo/rendezvous/store.h");
    println!("cargo:rerun-if-changed={}", gloo_header.display());
    let mut build = cc::Build::new();
    if gloo_header.exists() {
        build.define("NCF_WITH_GLOO", None).define("USE_C10D_GLOO", None);
        // Not /usr/include itself: as an -I folder it would break libstdc++'s #include_next.
        if gloo_include != std::path::Path::new("/usr/include") {
            build.include(&gloo_include);
        }
    } else {
        println!("cargo:warning=no gloo headers at {}: ncf-rs's gloo backend is left out (install libgloo-dev; `make setup` does)", gloo_header.display());
    }
    build
        .cpp(true)
        .file("cpp/ops.cpp")
        .file("cpp/amx.cpp")
        .file("cpp/gloo.cpp")
        .include(libtorch.join("include"))
        .include(libtorch.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        // at::parallel_for is inline (ATen/ParallelOpenMP.h): without OpenMP it would run serially.
        .flag("-fopenmp")
        // No fused multiply-adds the source does not write: the AVX-512 clones of a function
        // (`target_clones`) would fuse `a * b + c` where the AVX2 ones cannot, and a seeded run
        // would then give other numbers on an AVX2-only CPU.
        .flag("-ffp-contract=off")
        .flag_if_supported("-Wno-unused-parameter")
        .warnings(false)
        .compile("ncf_torch_ops");
    // The OpenMP runtime libtorch itself loads (the wheel's libgomp.so.1, one pool for both).
    println!("cargo:rustc-link-search=native={}", libtorch.join("lib").display());
    println!("cargo:rustc-link-lib=dylib:+verbatim=libgomp.so.1");
    torch_link::configure();
}
