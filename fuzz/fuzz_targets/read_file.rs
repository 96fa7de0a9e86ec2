//! Any bytes as a `.pt` file: opening it and reading every tensor it describes must return `Ok` or a
//! typed error, never panic, abort or allocate beyond the file's size (libFuzzer's -rss_limit_mb).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::io::Write;
use torchfile::TorchFile;

fuzz_target!(|data: &[u8]| {
    let mut file = tempfile_in_shm();
    file.1.write_all(data).unwrap();
    file.1.flush().unwrap();
    if let Ok(mut pt) = TorchFile::open(&file.0) {
        let tensors = match pt.tensor() {
            Ok(t) => vec![t],
            Err(_) => pt.tensor_map().map(|m| m.into_iter().map(|(_, t)| t).collect()).unwrap_or_default(),
        };
        for t in tensors {
            let _ = pt.read(&t);
        }
    }
    let _ = std::fs::remove_file(&file.0);
});

fn tempfile_in_shm() -> (std::path::PathBuf, std::fs::File) {
    let dir = if std::path::Path::new("/dev/shm").is_dir() { "/dev/shm".into() } else { std::env::temp_dir() };
    let path = dir.join(format!("torchfile-fuzz-{}.pt", std::process::id()));
    let file = std::fs::File::create(&path).unwrap();
    (path, file)
}
