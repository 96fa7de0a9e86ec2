//! The reference's own files (saved from `cuda:0` by a GPU run) read here, into plain bytes and into
//! tch tensors on the CPU, equal to what PyTorch loads from them.

use std::path::Path;
use tch::{Device, Kind, Tensor};
use tch_data::{load_tch_map, load_tch_tensor, save_tch_map, save_tch_tensor};
use test_support::{reference_prepared, run_python, tensor_manifest};
use torchfile::TorchFile;

const FILES: [&str; 5] =
    ["train_data_0.pt", "train_data_1.pt", "test_data_0.pt", "test_data_1.pt", "reference_model.pth"];

#[test]
fn reference_dataset_and_checkpoint_equal_pytorchs_view() {
    let dir = reference_prepared();
    let out = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/dump_files.py");
    let args = std::iter::once(out.path().to_owned()).chain(FILES.iter().map(|f| dir.join(f)));
    run_python(&script, args);
    let manifest = tensor_manifest(out.path());

    for file in FILES {
        let mut pt = TorchFile::open(dir.join(file)).unwrap();
        let tensors = if file.ends_with(".pth") {
            pt.tensor_map().unwrap().into_iter().map(|(k, t)| (Some(k), t)).collect()
        } else {
            vec![(None, pt.tensor().unwrap())]
        };
        let expected = &manifest[file];
        assert_eq!(tensors.len(), expected.len(), "{file}");
        for ((key, t), e) in tensors.iter().zip(expected) {
            assert_eq!(key, &e.key, "{file}: key order");
            assert_eq!(t.storage.location, "cuda:0", "{file}: the reference saved from the GPU");
            let data = pt.read(t).unwrap();
            assert_eq!((data.dtype.name(), &data.shape), (e.dtype.as_str(), &e.shape), "{file}[{key:?}]");
            assert!(data.data == std::fs::read(out.path().join(&e.bin)).unwrap(), "{file}[{key:?}] values");
        }
    }
}

#[test]
fn reference_files_load_as_tch_tensors_on_the_cpu() {
    let dir = reference_prepared();
    let test0 = load_tch_tensor(dir.join("test_data_0.pt"), Device::Cpu).unwrap();
    assert_eq!((test0.size(), test0.kind(), test0.device()), (vec![61_610, 2], Kind::Int64, Device::Cpu));
    // 610 users x 101 rows, user ids consecutive per list.
    let users = test0.select(1, 0).view([610, 101]);
    assert!(users.eq_tensor(&users.select(1, 0).unsqueeze(1)).all().int64_value(&[]) == 1);
    let labels = load_tch_tensor(dir.join("test_data_1.pt"), Device::Cpu).unwrap();
    assert_eq!(labels.sum(Kind::Float).double_value(&[]), 610.0);

    let model = load_tch_map(dir.join("reference_model.pth"), Device::Cpu).unwrap();
    let names: Vec<&str> = model.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        &names[..4],
        ["mf_user_embed.weight", "mf_item_embed.weight", "mlp_user_embed.weight", "mlp_item_embed.weight"]
    );
    assert_eq!(names.last(), Some(&"final.bias"));
    assert_eq!(model[0].1.size(), [610, 64]);
    let params: i64 = model.iter().map(|(_, t)| t.numel() as i64).sum();
    // (610 + 9724) x (64 + 128) embeddings + 256x256+256 + 256x128+128 + 128x64+64 + 128+1
    assert_eq!(params, 2_091_201, "NeuMF parameter count for 610 users x 9724 items");
}

#[test]
fn tch_tensors_round_trip_through_our_files() {
    let dir = tempfile::tempdir().unwrap();
    let kinds = [
        Kind::Int64,
        Kind::Int,
        Kind::Int16,
        Kind::Int8,
        Kind::Uint8,
        Kind::Bool,
        Kind::Float,
        Kind::Double,
        Kind::Half,
        Kind::BFloat16,
    ];
    let base = Tensor::arange(24, (Kind::Float, Device::Cpu)).view([4, 6]) - 7.0;
    let entries: Vec<(String, Tensor)> = kinds
        .iter()
        .map(|&k| (format!("{k:?}"), if k == Kind::Bool { base.gt(0.0) } else { base.to_kind(k) }))
        .collect();
    // A transposed (non-contiguous) tensor is written as its contiguous values.
    let entries: Vec<(String, Tensor)> = entries.into_iter().chain([("transposed".to_owned(), base.tr())]).collect();
    let path = dir.path().join("all.pt");
    save_tch_map(&path, &entries).unwrap();
    let back = load_tch_map(&path, Device::Cpu).unwrap();
    assert_eq!(back.len(), entries.len());
    for ((name, want), (got_name, got)) in entries.iter().zip(&back) {
        assert_eq!(name, got_name);
        assert_eq!((got.kind(), got.size()), (want.kind(), want.size()), "{name}");
        assert!(got.equal(want), "{name}: values");
    }
    let single = dir.path().join("one.pt");
    save_tch_tensor(&single, &base).unwrap();
    assert!(load_tch_tensor(&single, Device::Cpu).unwrap().equal(&base));
}
