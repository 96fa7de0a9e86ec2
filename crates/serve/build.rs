// Bakes the libtorch rpath (and the explicit libtorch_cuda link) into this package's examples and
// benches; see crates/torch-link.
fn main() {
    torch_link::configure();
}
