// Bakes libtorch's folder into the binary's rpath (and links libtorch_cuda where libtorch has CUDA,
// so CUDA is visible): the one line every package whose binaries use tch needs.
fn main() {
    torch_link::configure();
}
