//! Loading an ML-20m-sized prepared dataset (four files, ~677 MB: train 19,861,770 x 2 int64 +
//! labels, test 138,493 x 101 rows) from the page cache.
//!
//! `cargo bench -p tch-data --bench load`. Criterion prints time and throughput (bytes of
//! tensor data per second) for the raw `.pt` reader and for the full dataset loader (dtype, shape
//! and id-range checks included).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use featurespec::FeatureSpec;
use std::path::Path;
use tch::Device;
use torchfile::{save_tensor, TensorView, TorchFile};

const USERS: i64 = 138_493;
const ITEMS: i64 = 26_744;
const TRAIN_ROWS: usize = 19_861_770;
const TEST_ROWS: usize = 138_493 * 101;

/// Full size under `cargo bench`; a hundredth when `cargo test --benches` only checks it runs.
fn scale() -> usize {
    if std::env::args().any(|a| a == "--bench") {
        1
    } else {
        100
    }
}

fn ids(rows: usize, seed: u64) -> Vec<i64> {
    let mut state = seed;
    (0..rows * 2)
        .map(|i| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let r = (state >> 33) as i64;
            if i % 2 == 0 {
                r % USERS
            } else {
                r % ITEMS
            }
        })
        .collect()
}

fn write_dataset(dir: &Path) -> u64 {
    let (train_rows, test_rows) = (TRAIN_ROWS / scale(), TEST_ROWS / scale() / 101 * 101);
    let train = ids(train_rows, 1);
    save_tensor(dir.join("train_data_0.pt"), &TensorView::from_i64(&train, &[train_rows, 2])).unwrap();
    drop(train);
    let test = ids(test_rows, 2);
    save_tensor(dir.join("test_data_0.pt"), &TensorView::from_i64(&test, &[test_rows, 2])).unwrap();
    drop(test);
    let ones = vec![1f32; train_rows];
    save_tensor(dir.join("train_data_1.pt"), &TensorView::from_f32(&ones, &[train_rows, 1])).unwrap();
    save_tensor(dir.join("test_data_1.pt"), &TensorView::from_f32(&ones[..test_rows], &[test_rows, 1])).unwrap();
    let spec = format!(
        "feature_spec:
  user: {{dtype: torch.int64, cardinality: {USERS}}}
  item: {{dtype: torch.int64, cardinality: {ITEMS}}}
  label: {{dtype: torch.float32}}
metadata: {{test_samples_per_series: 101}}
source_spec:
  train:
  - {{type: torch_tensor, features: [user, item], files: [train_data_0.pt]}}
  - {{type: torch_tensor, features: [label], files: [train_data_1.pt]}}
  test:
  - {{type: torch_tensor, features: [user, item], files: [test_data_0.pt]}}
  - {{type: torch_tensor, features: [label], files: [test_data_1.pt]}}
channel_spec: {{user_ch: [user], item_ch: [item], label_ch: [label]}}
"
    );
    std::fs::write(dir.join("feature_spec.yaml"), spec).unwrap();
    ((train_rows + test_rows) * (16 + 4)) as u64
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let bytes = write_dataset(dir.path());
    let mut group = c.benchmark_group("ml20m_sized_dataset");
    group.sample_size(10).throughput(Throughput::Bytes(bytes));
    group.bench_function("torchfile_read_4_files", |b| {
        b.iter(|| {
            for f in ["train_data_0.pt", "train_data_1.pt", "test_data_0.pt", "test_data_1.pt"] {
                let mut file = TorchFile::open(dir.path().join(f)).unwrap();
                let t = file.tensor().unwrap();
                std::hint::black_box(file.read(&t).unwrap());
            }
        })
    });
    let spec = FeatureSpec::from_yaml_file(dir.path().join("feature_spec.yaml")).unwrap();
    group.bench_function("load_mapping_train_and_test_cpu", |b| {
        b.iter(|| {
            let train = tch_data::load_mapping(&spec, "train", Device::Cpu).unwrap();
            let test = tch_data::load_mapping(&spec, "test", Device::Cpu).unwrap();
            std::hint::black_box((train.rows, test.rows))
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
