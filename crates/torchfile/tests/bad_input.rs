//! Broken and hostile files give a typed error that names the file: never a panic, an abort, or an
//! allocation sized by the file's claims.

use std::io::Write;
use std::path::{Path, PathBuf};
use torchfile::{save_tensor_map, TensorView, TorchFile, TorchFileError};
use zip::write::SimpleFileOptions;

/// Writes a zip laid out like torch.save's, with our own `data.pkl` and storage records.
fn archive(dir: &Path, name: &str, pickle: &[u8], records: &[(&str, &[u8])]) -> PathBuf {
    let path = dir.join(name);
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let opts = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", opts).unwrap();
    zip.write_all(pickle).unwrap();
    for (key, data) in records {
        zip.start_file(format!("archive/data/{key}"), opts).unwrap();
        zip.write_all(data).unwrap();
    }
    zip.finish().unwrap();
    path
}

/// A `_rebuild_tensor_v2` pickle of an int64 tensor with the given storage size, offset, size and
/// stride tuples, each given as already-encoded pickle bytes.
fn tensor_pickle(key: &str, storage_numel: &[u8], offset: &[u8], size: &[u8], stride: &[u8]) -> Vec<u8> {
    let mut p = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nLongStorage\n".to_vec();
    p.push(b'X');
    p.extend_from_slice(&(key.len() as u32).to_le_bytes());
    p.extend_from_slice(key.as_bytes());
    p.extend_from_slice(b"X\x03\x00\x00\x00cpu");
    p.extend_from_slice(storage_numel);
    p.extend_from_slice(b"tQ");
    p.extend_from_slice(offset);
    p.extend_from_slice(size);
    p.extend_from_slice(stride);
    p.extend_from_slice(b"\x89ccollections\nOrderedDict\n)RtR.");
    p
}

fn open_and_read(path: &Path) -> Result<(), TorchFileError> {
    let mut f = TorchFile::open(path)?;
    match f.tensor() {
        Ok(t) => f.read(&t).map(drop),
        Err(_) => {
            let entries = f.tensor_map()?;
            for (_, t) in entries {
                f.read(&t)?;
            }
            Ok(())
        }
    }
}

fn expect_err(path: &Path) -> String {
    let err = open_and_read(path).expect_err("this file must be refused");
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "the error must name the file: {msg}");
    msg
}

fn good_file(dir: &Path) -> PathBuf {
    let a: Vec<i64> = (0..1000).collect();
    let b: Vec<f32> = (0..300).map(|i| i as f32 * 0.5).collect();
    let path = dir.join("good.pth");
    save_tensor_map(&path, &[("a", TensorView::from_i64(&a, &[500, 2])), ("b", TensorView::from_f32(&b, &[3, 100]))])
        .unwrap();
    open_and_read(&path).unwrap();
    path
}

#[test]
fn not_an_archive() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in [
        ("empty.pt", &b""[..]),
        ("text.pt", b"user,item\n1,2\n"),
        ("legacy.pt", b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let msg = expect_err(&path);
        assert!(msg.contains("not a readable torch.save zip archive"), "{msg}");
    }
    let err = TorchFile::open(dir.path().join("missing.pt")).unwrap_err();
    assert!(matches!(err, TorchFileError::Io { .. }) && err.to_string().contains("missing.pt"), "{err}");
}

#[test]
fn every_truncation_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(good_file(dir.path())).unwrap();
    let cut = dir.path().join("cut.pth");
    for len in (0..good.len()).step_by(37).chain([good.len() - 1, good.len() - 22]) {
        std::fs::write(&cut, &good[..len]).unwrap();
        expect_err(&cut);
    }
}

#[test]
fn a_flipped_byte_anywhere_never_panics_and_storage_damage_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(good_file(dir.path())).unwrap();
    let bad = dir.path().join("bad.pth");
    let mut caught = 0;
    for at in (0..good.len()).step_by(11) {
        let mut bytes = good.clone();
        bytes[at] ^= 0x5a;
        std::fs::write(&bad, &bytes).unwrap();
        // Some bytes (zip timestamps, padding) carry no meaning; all others must be refused.
        if open_and_read(&bad).is_err() {
            caught += 1;
        }
    }
    assert!(caught > good.len() / 11 * 9 / 10, "only {caught} of {} damaged files refused", good.len() / 11);
    // Damage inside a storage record is caught by its CRC.
    let mut bytes = good.clone();
    let at = bytes.windows(8).position(|w| w == 500i64.to_le_bytes()).unwrap();
    bytes[at] ^= 1;
    std::fs::write(&bad, &bytes).unwrap();
    let msg = expect_err(&bad);
    assert!(msg.contains("CRC-32 mismatch") && msg.contains("data/0"), "{msg}");
}

#[test]
fn a_global_outside_the_allow_list_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pkl = b"\x80\x02cbuiltins\neval\nq\x00X\x0b\x00\x00\x00print('hi')\x85R.";
    let path = archive(dir.path(), "eval.pt", pkl, &[]);
    let msg = expect_err(&path);
    assert!(msg.contains("global `builtins.eval` is not allowed") && msg.contains("byte 2"), "{msg}");
    let pkl = b"\x80\x04\x8c\x02os\x8c\x06system\x93.";
    let msg = expect_err(&archive(dir.path(), "stack_global.pt", pkl, &[]));
    assert!(msg.contains("global `os.system` is not allowed"), "{msg}");
}

#[test]
fn a_disallowed_opcode_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // INST (protocol 0 object construction)
    let msg = expect_err(&archive(dir.path(), "inst.pt", b"\x80\x02(ios\nsystem\n.", &[]));
    assert!(msg.contains("opcode 0x69 is not allowed"), "{msg}");
}

#[test]
fn storage_shorter_than_the_tensor_needs() {
    let dir = tempfile::tempdir().unwrap();
    // storage declares 6 elements, the tensor 2x3 needs 6, but the record has only 2 elements.
    let pkl = tensor_pickle("0", b"K\x06", b"K\x00", b"K\x02K\x03\x86", b"K\x03K\x01\x86");
    let record = [0u8; 16];
    let msg = expect_err(&archive(dir.path(), "short.pt", &pkl, &[("0", &record)]));
    assert!(msg.contains("data/0") && msg.contains("holds 16 bytes"), "{msg}");
    // The tensor reaches past the storage it declares.
    let pkl = tensor_pickle("0", b"K\x04", b"K\x01", b"K\x02K\x03\x86", b"K\x03K\x01\x86");
    let msg = expect_err(&archive(dir.path(), "past.pt", &pkl, &[("0", &[0u8; 32])]));
    assert!(msg.contains("needs 7 element(s) but its storage declares 4"), "{msg}");
}

#[test]
fn negative_and_absurd_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let record = [0u8; 48];
    // size (-2, 3) as LONG1
    let pkl = tensor_pickle("0", b"K\x06", b"K\x00", b"\x8a\x01\xfeK\x03\x86", b"K\x03K\x01\x86");
    let msg = expect_err(&archive(dir.path(), "negative.pt", &pkl, &[("0", &record)]));
    assert!(msg.contains("size is negative (-2)"), "{msg}");
    // size (2^62, 2^62): overflows
    let huge = b"\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x40";
    let mut size = huge.to_vec();
    size.extend_from_slice(huge);
    size.push(0x86);
    let pkl = tensor_pickle("0", b"K\x06", b"K\x00", &size, b"K\x01K\x01\x86");
    let msg = expect_err(&archive(dir.path(), "absurd.pt", &pkl, &[("0", &record)]));
    assert!(msg.contains("overflows") || msg.contains("storage declares"), "{msg}");
    // A storage that claims 2^60 elements with a tiny record: refused before any allocation.
    let pkl = tensor_pickle(
        "0",
        b"\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x10",
        b"K\x00",
        b"\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x10\x85",
        b"K\x01\x85",
    );
    let msg = expect_err(&archive(dir.path(), "claims.pt", &pkl, &[("0", &record)]));
    assert!(msg.contains("holds 48 bytes"), "{msg}");
    // A stride-0 view that would expand a 1-element storage to 2^40 elements.
    let pkl = tensor_pickle("0", b"K\x01", b"K\x00", b"\x8a\x06\x00\x00\x00\x00\x00\x01\x85", b"K\x00\x85");
    let msg = expect_err(&archive(dir.path(), "expand.pt", &pkl, &[("0", &[0u8; 8])]));
    assert!(msg.contains("over the 1073741824-byte limit"), "{msg}");
}

#[test]
fn huge_declared_string_length() {
    let dir = tempfile::tempdir().unwrap();
    let msg = expect_err(&archive(dir.path(), "len.pt", b"\x80\x02X\xf0\xff\xff\xffabc", &[]));
    assert!(msg.contains("declared length 4294967280 exceeds"), "{msg}");
}

#[test]
fn storage_key_cannot_name_another_record() {
    let dir = tempfile::tempdir().unwrap();
    let pkl = tensor_pickle("../data.pkl", b"K\x01", b"K\x00", b"K\x01\x85", b"K\x01\x85");
    let msg = expect_err(&archive(dir.path(), "key.pt", &pkl, &[]));
    assert!(msg.contains("not a plain record name"), "{msg}");
}

#[test]
fn missing_record_and_wrong_content() {
    let dir = tempfile::tempdir().unwrap();
    let pkl = tensor_pickle("7", b"K\x01", b"K\x00", b"K\x01\x85", b"K\x01\x85");
    let msg = expect_err(&archive(dir.path(), "norecord.pt", &pkl, &[]));
    assert!(msg.contains("data/7"), "{msg}");
    let good = good_file(dir.path());
    let err = TorchFile::open(&good).unwrap().tensor().unwrap_err();
    assert!(
        matches!(err, TorchFileError::Content { .. })
            && err.to_string().contains("expected a single tensor, found a dict"),
        "{err}"
    );
}
