// The libtorch rpath, so `import ncf_rs` works before `import torch` too; see crates/torch-link.
fn main() {
    torch_link::configure();
}
