//! `Observer::should_stop`: a run stopped mid-epoch (Ctrl-C in `ncf_rs.train`) leaves the files as
//! the last finished epoch wrote them, and a resumed run continues from there.

use ncf_train::{Observer, TrainConfig, Trainer};
use std::path::Path;
use tch::Tensor;

/// Stops after `after` optimizer steps of epoch `epoch`.
struct StopAt {
    epoch: usize,
    after: u64,
    current: usize,
    done: u64,
}

impl Observer for StopAt {
    fn epoch_started(&mut self, epoch: usize, _batches: u64) {
        self.current = epoch;
    }
    fn batches_done(&mut self, done: u64) {
        self.done = done;
    }
    fn should_stop(&mut self) -> bool {
        self.current == self.epoch && self.done >= self.after
    }
}

fn config(data: &Path, checkpoints: &Path, epochs: usize) -> TrainConfig {
    TrainConfig {
        data: data.to_owned(),
        epochs,
        batch_size: 512,
        factors: 8,
        layers: vec![16, 8],
        learning_rate: 0.01,
        seed: Some(4),
        checkpoint_dir: Some(checkpoints.to_owned()),
        log_path: None,
        ..TrainConfig::default()
    }
}

fn state(path: &Path) -> Vec<(String, Tensor)> {
    tch_data::load_tch_map(path, tch::Device::Cpu).unwrap()
}

#[test]
fn a_run_stopped_mid_epoch_keeps_the_last_finished_epoch_and_resumes_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("ratings.csv");
    let synthetic = preprocess::SyntheticConfig { users: 120, items: 90, interactions: 6_000, ..Default::default() };
    preprocess::write_synthetic_ratings(&raw, &synthetic).unwrap();
    let data = dir.path().join("data");
    preprocess::prepare(&raw, &data, &preprocess::PrepareOptions::default(), |_| {}).unwrap();

    // One whole epoch, as the reference of what the stopped run must leave behind.
    let one = dir.path().join("one");
    let whole = Trainer::new(config(&data, &one, 1)).unwrap().run(&mut ncf_train::Quiet).unwrap();
    assert!(!whole.interrupted);

    // Three epochs asked, stopped after 3 steps of the second.
    let stopped_dir = dir.path().join("stopped");
    let mut stop = StopAt { epoch: 1, after: 3, current: 0, done: 0 };
    let stopped = Trainer::new(config(&data, &stopped_dir, 3)).unwrap().run(&mut stop).unwrap();
    assert!(stopped.interrupted);
    assert_eq!(stop.done, 3, "no step ran after the stop");
    assert_eq!(stopped.epochs.len(), 1, "the unfinished epoch is not reported");
    assert_eq!(stopped.epochs[0].eval.hr, whole.epochs[0].eval.hr);
    // model.pth is the first epoch's, bit for bit (the second's three steps were not saved).
    for ((k1, a), (k2, b)) in state(&one.join("model.pth")).iter().zip(&state(&stopped_dir.join("model.pth"))) {
        assert_eq!(k1, k2);
        assert!(a.equal(b), "{k1} differs from the one-epoch run's");
    }

    // Resuming runs epochs 2 and 3 only.
    let resumed = TrainConfig { resume: Some(stopped_dir.clone()), ..config(&data, &stopped_dir, 3) };
    let rest = Trainer::new(resumed).unwrap().run(&mut ncf_train::Quiet).unwrap();
    assert!(!rest.interrupted);
    assert_eq!(rest.epochs.iter().map(|e| e.epoch).collect::<Vec<_>>(), [1, 2]);
}
