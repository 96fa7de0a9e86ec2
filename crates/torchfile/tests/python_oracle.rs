//! Real PyTorch as the oracle, both ways: files `torch.save` wrote (every dtype, views with offsets
//! and strides, shared storages, state dicts, parameters) read back here byte for byte; files we
//! write load in `torch.load(weights_only=True)` with the same dtypes, shapes, values and key order.

use std::path::{Path, PathBuf};
use test_support::{run_python, tensor_manifest};
use torchfile::{save_tensor, save_tensor_map, strip_module_prefix, Dtype, TensorView, TorchFile};

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py").join(name)
}

#[test]
fn reads_every_file_torch_save_wrote() {
    let dir = tempfile::tempdir().unwrap();
    run_python(&script("write_cases.py"), [dir.path()]);
    let cases = tensor_manifest(dir.path());
    assert!(cases.len() >= 30, "the oracle wrote {} files", cases.len());
    for (file, expected) in cases {
        let mut pt = TorchFile::open(dir.path().join(&file)).unwrap_or_else(|e| panic!("{e}"));
        let tensors = match expected[0].key {
            None => vec![(None, pt.tensor().unwrap())],
            Some(_) => strip_module_prefix(pt.tensor_map().unwrap()).into_iter().map(|(k, t)| (Some(k), t)).collect(),
        };
        let keys: Vec<_> = tensors.iter().map(|(k, _)| k.clone()).collect();
        let want_keys: Vec<_> = expected
            .iter()
            .map(|e| e.key.as_ref().map(|k| k.strip_prefix("module.").unwrap_or(k).to_owned()))
            .collect();
        assert_eq!(keys, want_keys, "{file}: keys");
        for ((key, t), e) in tensors.iter().zip(&expected) {
            let data = pt.read(t).unwrap_or_else(|err| panic!("{file}[{key:?}]: {err}"));
            assert_eq!(data.dtype.name(), e.dtype, "{file}[{key:?}]");
            assert_eq!(data.shape, e.shape, "{file}[{key:?}]");
            let want = std::fs::read(dir.path().join(&e.bin)).unwrap();
            assert!(data.data == want, "{file}[{key:?}]: values differ from torch's");
        }
        if file.contains("state_dict") {
            assert!(pt.metadata().is_some(), "{file}: the state dict's _metadata is kept");
        }
    }
}

#[test]
fn files_we_write_load_in_torch_with_weights_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut manifest = serde_json::Map::new();
    let mut expect = |file: &str, entries: &[(Option<&str>, &TensorView<'_>)]| {
        let items: Vec<_> = entries
            .iter()
            .enumerate()
            .map(|(i, (key, t))| {
                let bin = format!("{file}.{i}.bin");
                std::fs::write(dir.path().join(&bin), t.data).unwrap();
                serde_json::json!({"key": key, "dtype": t.dtype.name(), "shape": t.shape, "bin": bin})
            })
            .collect();
        manifest.insert(file.to_owned(), items.into());
    };
    // One tensor per dtype, with bytes that cover the type's whole range.
    let bytes: Vec<u8> = (0..48u32).map(|i| (i * 37 + 11) as u8).collect();
    let bools: Vec<u8> = (0..48u32).map(|i| (i % 3 == 0) as u8).collect();
    for dtype in Dtype::ALL {
        let data = if dtype == Dtype::Bool { &bools[..48] } else { &bytes[..] };
        let n = data.len() / dtype.size();
        let view = TensorView::from_bytes(dtype, &[2, n / 2], data);
        let file = format!("{}.pt", dtype.name().trim_start_matches("torch."));
        save_tensor(dir.path().join(&file), &view).unwrap();
        expect(&file, &[(None, &view)]);
    }
    // Large ids (BININT / LONG1 sizes in the pickle) and a 3-D shape.
    let ids: Vec<i64> = (0..70_000).map(|i| i * 1_000_003).collect();
    let big = TensorView::from_i64(&ids, &[35_000, 2]);
    save_tensor(dir.path().join("ids.pt"), &big).unwrap();
    expect("ids.pt", &[(None, &big)]);
    let cube: Vec<f32> = (0..24).map(|i| i as f32 / 7.0).collect();
    let cube = TensorView::from_f32(&cube, &[2, 3, 4]);
    let scalar = [42.0f64];
    let scalar = TensorView::from_f64(&scalar, &[]);
    let empty = TensorView::from_i64(&[], &[0, 2]);
    let entries = [("mlp.0.weight", cube.clone()), ("final.bias", scalar.clone()), ("a_empty", empty.clone())];
    save_tensor_map(dir.path().join("model.pth"), &entries).unwrap();
    expect("model.pth", &[(Some("mlp.0.weight"), &cube), (Some("final.bias"), &scalar), (Some("a_empty"), &empty)]);
    std::fs::write(dir.path().join("manifest.json"), serde_json::Value::Object(manifest).to_string()).unwrap();

    let out = run_python(&script("check_written.py"), [dir.path()]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("checked 12 files, 0 problems"), "{report}");
}

#[test]
fn what_we_write_reads_back_here() {
    let dir = tempfile::tempdir().unwrap();
    let users: Vec<i64> = vec![0, 5, 1, 7, 2, 9];
    let path = dir.path().join("train_data_0.pt");
    save_tensor(&path, &TensorView::from_i64(&users, &[3, 2])).unwrap();
    let mut f = TorchFile::open(&path).unwrap();
    let t = f.tensor().unwrap();
    assert_eq!((t.shape.as_slice(), t.storage.location.as_str()), (&[3usize, 2][..], "cpu"));
    assert_eq!(f.read(&t).unwrap().to_i64(), users);
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["train_data_0.pt"], "no temporary file is left behind");
}
