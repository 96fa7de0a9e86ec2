//! Read throughput of `.pt` files from the page cache (placeholder, filled below).
fn main() {}
