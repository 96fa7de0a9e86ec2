//! The data-parallel logic on the CPU, with threads playing ranks (the in-process collective):
//! W ranks x batch B/W step exactly like 1 rank x batch B, evaluation split over ranks equals
//! evaluation on one, a missing or failed rank is an error (not a hang), and a whole training run
//! on two ranks keeps them in lockstep.

use metrics::{RankSums, TestSeries};
use ncf_model::{NeuMf, NeuMfConfig};
use ncf_train::dist::{average_gradients, check_replicas, gather_rows, Collective, CollectiveError, ThreadGroup};
use ncf_train::{Adam, Quiet, ReplicaCheck, TrainConfig, Trainer};
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};

fn config() -> NeuMfConfig {
    NeuMfConfig { users: 30, items: 40, mf_dim: 8, mlp_layers: vec![16, 8], dropout: 0.0 }
}

fn batch(step: i64) -> (Tensor, Tensor, Tensor) {
    let i = Tensor::arange(512, (Kind::Int64, Device::Cpu)) + step * 512;
    let users = i.remainder(30);
    let items = (&i * 7).remainder(40);
    let labels = i.remainder(3).eq(0).to_kind(Kind::Double).view([-1, 1]);
    (users, items, labels)
}

fn loss(m: &NeuMf, users: &Tensor, items: &Tensor, labels: &Tensor) -> Tensor {
    m.forward(users, items).binary_cross_entropy_with_logits::<Tensor>(labels, None, None, tch::Reduction::Mean)
}

/// A prepared synthetic dataset (`ncf-prepare synthetic`'s generator) in `dir/data`.
fn synthetic_dataset(dir: &std::path::Path, users: usize, items: usize, interactions: usize) -> std::path::PathBuf {
    let raw = dir.join("ratings.csv");
    let synthetic = preprocess::SyntheticConfig { users, items, interactions, ..Default::default() };
    preprocess::write_synthetic_ratings(&raw, &synthetic).unwrap();
    let data = dir.join("data");
    preprocess::prepare(&raw, &data, &preprocess::PrepareOptions::default(), |_| {}).unwrap();
    data
}

fn copy_of(state: &[(String, Tensor)]) -> Vec<(String, Tensor)> {
    state.iter().map(|(k, v)| (k.clone(), v.copy())).collect()
}

/// A fresh model in float64, from libtorch's generator seeded with `seed`.
fn float64_model(seed: i64) -> NeuMf {
    tch::manual_seed(seed);
    let mut m = NeuMf::new(config(), Device::Cpu).unwrap();
    m.set_kind(Kind::Double);
    m
}

#[test]
fn w_ranks_of_batch_b_over_w_step_like_one_rank_of_batch_b() {
    // In float64: the two split a batch's sums differently, and Adam divides by sqrt(v), so in
    // float32 a gradient within rounding of zero can move a weight by up to lr in one run and not
    // the other, by an amount that depends on the CPU's kernels. In float64 that rounding is 2^-53
    // and what is left to differ is the data-parallel arithmetic (a rank's share averaged wrongly,
    // e.g. summed, is off by the whole step).
    let single = float64_model(5);
    let init = copy_of(&single.state_dict());
    let params: Vec<Tensor> = single.state_dict().into_iter().map(|(_, t)| t).collect();
    let mut adam = Adam::new(&params, 0.01, 0.25, 0.5, 1e-8);
    for step in 0..3 {
        let (u, i, l) = batch(step);
        loss(&single, &u, &i, &l).backward();
        adam.step(&params, None);
        params.iter().for_each(|p| p.shallow_clone().zero_grad());
    }
    for world in [2i64, 4] {
        let share = 512 / world;
        let handles: Vec<_> = ThreadGroup::new(world as usize, Duration::from_secs(30))
            .into_iter()
            .map(|mut group| {
                let init = copy_of(&init);
                std::thread::spawn(move || {
                    let mut m = float64_model(6);
                    m.load_state_dict(init).unwrap();
                    let params: Vec<Tensor> = m.state_dict().into_iter().map(|(_, t)| t).collect();
                    let mut adam = Adam::new(&params, 0.01, 0.25, 0.5, 1e-8);
                    let r = group.rank() as i64;
                    for step in 0..3 {
                        let (u, i, l) = batch(step);
                        let mine = |t: &Tensor| t.narrow(0, r * share, share);
                        loss(&m, &mine(&u), &mine(&i), &mine(&l)).backward();
                        average_gradients(&params, &mut group).unwrap();
                        adam.step(&params, None);
                        adam.zero_grad(&params); // as the trainer: gradients set to None
                    }
                    copy_of(&m.state_dict())
                })
            })
            .collect();
        let ranks: Vec<Vec<(String, Tensor)>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        for (k, (name, a)) in single.state_dict().iter().enumerate() {
            for rank in &ranks[1..] {
                assert!(ranks[0][k].1.equal(&rank[k].1), "{name}: the ranks differ (world {world})");
            }
            let diff = (a - &ranks[0][k].1).abs().max().double_value(&[]);
            assert!(diff < 1e-10, "{name}: {world} ranks x {share} vs 1 rank x 512 differ by {diff}");
        }
    }
}

#[test]
fn evaluation_split_over_ranks_equals_evaluation_on_one_bit_for_bit() {
    // 2,001 lists: enough hits that float32 sums taken per rank, then added, would round
    // differently from one sum; 2 lists over 3 ranks: a rank with nothing to evaluate.
    for (lists, world) in [(2001i64, 3usize), (2, 3)] {
        let rows = lists * 5;
        let items = (Tensor::arange(rows, (Kind::Int64, Device::Cpu)) * 13).remainder(11);
        let labels = Tensor::arange(rows, (Kind::Int64, Device::Cpu)).remainder(5).eq(0).to_kind(Kind::Float);
        let scores = (Tensor::arange(rows, (Kind::Float, Device::Cpu)) * 0.37).sin().abs();
        let whole = TestSeries::new(&scores, &items, &labels, 5).unwrap();
        let expected = whole.rank_sums(&whole.users(), 2).unwrap();
        let handles: Vec<_> = ThreadGroup::new(world, Duration::from_secs(30))
            .into_iter()
            .map(|mut group| {
                let part = whole.shard(group.rank() as i64, world as i64);
                std::thread::spawn(move || {
                    let hits = part.top_k_hits(&part.users(), 2).unwrap();
                    RankSums::from_hits(&gather_rows(&hits, &mut group, Device::Cpu).unwrap().ge(0.5))
                })
            })
            .collect();
        for h in handles {
            let total = h.join().unwrap();
            assert_eq!((total.hits, total.lists), (expected.hits, expected.lists));
            assert_eq!(total.ndcg.to_bits(), expected.ndcg.to_bits(), "{} vs {}", total.ndcg, expected.ndcg);
        }
    }
}

#[test]
fn a_rank_that_never_arrives_or_leaves_is_an_error_within_the_timeout() {
    let mut groups = ThreadGroup::new(2, Duration::from_millis(300));
    let mut lonely = groups.remove(0);
    let t = Tensor::ones([4], (Kind::Float, Device::Cpu));
    let start = Instant::now();
    let err = lonely.all_reduce_sum(&t).unwrap_err();
    assert!(matches!(err, CollectiveError::Timeout { rank: 0, .. }), "{err}");
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(err.to_string().contains("crashed, hung or never started"));
    // After a failure the group is broken for every rank.
    assert!(groups[0].all_reduce_sum(&t).is_err());

    // A rank that fails (drops its handle) while another waits: the waiter hears of it at once.
    let mut fresh = ThreadGroup::new(2, Duration::from_secs(30));
    let (mut waiting, failing) = (fresh.remove(0), fresh.remove(0));
    let start = Instant::now();
    let waiter = std::thread::spawn(move || waiting.all_reduce_sum(&Tensor::ones([4], (Kind::Float, Device::Cpu))));
    std::thread::sleep(Duration::from_millis(50));
    drop(failing);
    let err = waiter.join().unwrap().unwrap_err();
    assert!(matches!(err, CollectiveError::PeerLeft { left: 1, .. }), "{err}");
    assert!(start.elapsed() < Duration::from_secs(5), "not the 30 s timeout");
}

#[test]
fn a_two_rank_training_run_keeps_the_ranks_in_lockstep() {
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic_dataset(dir.path(), 200, 150, 6_000);
    let log = dir.path().join("log.json");
    let handles: Vec<_> = ThreadGroup::new(2, Duration::from_secs(60))
        .into_iter()
        .map(|group| {
            let config = TrainConfig {
                data: data.clone(),
                epochs: 2,
                batch_size: 4096,
                seed: Some(3),
                checkpoint_dir: None,
                log_path: Some(log.clone()),
                replica_check: ReplicaCheck::Step,
                ..TrainConfig::default()
            };
            std::thread::spawn(move || {
                let mut trainer = Trainer::in_group(config, Some(Box::new(group))).unwrap();
                let steps = trainer.batches_per_epoch() as u64 * 2;
                let summary = trainer.run(&mut Quiet).unwrap();
                // Every step's check passed (and ran: a check that never runs passes too).
                assert_eq!(summary.replica_checks, steps);
                (copy_of(&trainer.model().state_dict()), summary.best_hr)
            })
        })
        .collect();
    let ranks: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for ((name, a), (_, b)) in ranks[0].0.iter().zip(&ranks[1].0) {
        assert!(a.equal(b), "{name} differs between the ranks after training");
    }
    assert_eq!(ranks[0].1, ranks[1].1, "both ranks report the same (summed) HR");
    assert!(ranks[0].1 > 0.2, "the run learned something: HR@10 {}", ranks[0].1);
    assert!(std::fs::read_to_string(&log).unwrap().lines().count() > 3, "rank 0 wrote the log");
}

#[test]
fn ranks_without_a_seed_share_rank_0s() {
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic_dataset(dir.path(), 50, 40, 1_000);
    let seeds: Vec<u64> = ThreadGroup::new(3, Duration::from_secs(60))
        .into_iter()
        .enumerate()
        .map(|(rank, group)| {
            let config = TrainConfig {
                data: data.clone(),
                batch_size: 256,
                seed: None,
                checkpoint_dir: None,
                log_path: None,
                ..TrainConfig::default()
            };
            std::thread::spawn(move || {
                // Ranks start at different times, so their own fresh seeds would differ.
                std::thread::sleep(Duration::from_millis(7 * rank as u64));
                Trainer::in_group(config, Some(Box::new(group))).unwrap().seed()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    assert_eq!(seeds[0], seeds[1]);
    assert_eq!(seeds[0], seeds[2]);
}

#[test]
fn the_torchrun_environment_is_read_and_checked() {
    use ncf_train::dist::RankEnv;
    let env = |vars: &'static [(&'static str, &'static str)]| {
        RankEnv::from_lookup(move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string()))
    };
    assert_eq!(env(&[]).unwrap(), None, "no WORLD_SIZE: a single process");
    let e = env(&[
        ("WORLD_SIZE", "4"),
        ("RANK", "2"),
        ("LOCAL_RANK", "0"),
        ("MASTER_ADDR", "10.0.0.1"),
        ("MASTER_PORT", "1234"),
    ])
    .unwrap()
    .unwrap();
    assert_eq!(
        (e.rank, e.world_size, e.local_rank, e.master_addr.as_str(), e.master_port),
        (2, 4, 0, "10.0.0.1", 1234)
    );
    assert_eq!(e.meeting, ncf_train::dist::Meeting::Listen, "no agent store: rank 0 listens");
    let under_torchrun = env(&[
        ("WORLD_SIZE", "2"),
        ("RANK", "1"),
        ("TORCHELASTIC_USE_AGENT_STORE", "True"),
        ("TORCHELASTIC_RUN_ID", "job7"),
        ("TORCHELASTIC_RESTART_COUNT", "2"),
    ])
    .unwrap()
    .unwrap();
    assert_eq!(
        under_torchrun.meeting,
        ncf_train::dist::Meeting::AgentStore { key: "ncf-rs/job7/2/nccl-unique-id".into() }
    );
    let opted_out = env(&[("WORLD_SIZE", "2"), ("RANK", "1"), ("TORCHELASTIC_USE_AGENT_STORE", "False")]);
    assert_eq!(opted_out.unwrap().unwrap().meeting, ncf_train::dist::Meeting::Listen);
    assert!(env(&[("WORLD_SIZE", "2"), ("RANK", "2")]).unwrap_err().contains("RANK=2 must be below WORLD_SIZE=2"));
    assert!(env(&[("WORLD_SIZE", "2")]).unwrap_err().contains("RANK is not set"));
    assert!(env(&[("WORLD_SIZE", "two"), ("RANK", "0")]).is_err());
}

#[test]
fn ranks_meet_over_tcp_and_a_port_in_use_or_a_missing_rank_is_an_error() {
    use ncf_train::dist::{rendezvous, Meeting, RankEnv};
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let env = move |rank| RankEnv {
        rank,
        world_size: 3,
        local_rank: rank,
        master_addr: "127.0.0.1".into(),
        master_port: port,
        meeting: Meeting::Listen,
    };
    let id = [7u8; 128];
    let handles: Vec<_> = (0..3)
        .map(|rank| {
            std::thread::spawn(move || rendezvous(&env(rank), (rank == 0).then_some(id), Duration::from_secs(20)))
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap().unwrap(), id);
    }
    // A port in use.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = RankEnv { master_port: busy.local_addr().unwrap().port(), ..env(0) };
    let err = rendezvous(&taken, Some(id), Duration::from_secs(1)).unwrap_err().to_string();
    assert!(err.contains("is the port in use"), "{err}");
    // Rank 0 waiting for ranks that never come.
    let start = Instant::now();
    let err = rendezvous(&env(0), Some(id), Duration::from_millis(500)).unwrap_err().to_string();
    assert!(err.contains("only 0 of 2 other rank(s) arrived"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn joining_an_nccl_group_of_one_runs_the_real_library_up_to_the_device() {
    use ncf_train::dist::{Meeting, NcclGroup, RankEnv};
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let env = RankEnv {
        rank: 0,
        world_size: 1,
        local_rank: 0,
        master_addr: "127.0.0.1".into(),
        master_port: port,
        meeting: Meeting::Listen,
    };
    // The wheel's libnccl.so.2 is loaded, rank 0 draws its id (ncclGetUniqueId needs no GPU) and
    // listens, then ncclCommInitRank needs the device.
    match NcclGroup::join(&env, Duration::from_secs(60)) {
        Ok(mut group) => {
            // A machine with a GPU: a group of one sums to itself.
            let t = Tensor::ones([8], (Kind::Float, Device::Cuda(0)));
            group.all_reduce_sum(&t).unwrap();
            assert_eq!(Vec::<f32>::try_from(&t.to_device(Device::Cpu)).unwrap(), vec![1.0; 8]);
        }
        Err(e) => {
            assert!(!tch::Cuda::is_available(), "NCCL failed with a GPU present: {e}");
            let e = e.to_string();
            assert!(e.starts_with("ncclCommInitRank failed: NCCL error 1: unhandled cuda error"), "{e}");
        }
    }
}

/// Runs `Trainer::in_group` on two thread-ranks whose configs differ by `change` (on rank 1);
/// returns each rank's error message.
fn start_two_ranks_differing(change: impl Fn(&mut TrainConfig) + Send + Sync + 'static) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let data = synthetic_dataset(dir.path(), 50, 40, 1_000);
    let change = std::sync::Arc::new(change);
    let handles: Vec<_> = ThreadGroup::new(2, Duration::from_secs(30))
        .into_iter()
        .enumerate()
        .map(|(rank, group)| {
            let mut config = TrainConfig {
                data: data.clone(),
                batch_size: 256,
                seed: Some(1),
                checkpoint_dir: None,
                log_path: None,
                ..TrainConfig::default()
            };
            if rank == 1 {
                change(&mut config);
            }
            std::thread::spawn(move || match Trainer::in_group(config, Some(Box::new(group))) {
                Ok(_) => String::new(),
                Err(e) => e.to_string(),
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn ranks_with_another_flag_both_stop_at_start_up_naming_it() {
    let errors = start_two_ranks_differing(|c| c.learning_rate = 0.001);
    for e in &errors {
        assert!(e.contains("--learning_rate: rank 0 has 0.0045, rank 1 has 0.001"), "{errors:?}");
    }
    assert_eq!(errors[0], errors[1], "every rank stops with the same message");
}

#[test]
fn ranks_with_another_model_width_stop_naming_the_parameter_shapes() {
    // -f changes the model as well as the flag: both are named.
    let errors = start_two_ranks_differing(|c| c.factors = 4);
    for e in &errors {
        assert!(e.contains("--factors: rank 0 has 64, rank 1 has 4"), "{errors:?}");
    }
}

#[test]
fn ranks_reading_another_dataset_stop_naming_the_file() {
    let other = tempfile::tempdir().unwrap();
    let other_data = synthetic_dataset(other.path(), 50, 40, 1_200);
    let errors = start_two_ranks_differing(move |c| c.data = other_data.clone());
    for e in &errors {
        assert!(e.contains("dataset: train file"), "{errors:?}");
        assert!(e.contains("bytes, rank 1 has"), "{errors:?}");
    }
}

#[test]
fn replicas_that_drift_apart_stop_every_rank_naming_the_rank() {
    let handles: Vec<_> = ThreadGroup::new(3, Duration::from_secs(30))
        .into_iter()
        .enumerate()
        .map(|(rank, mut group)| {
            std::thread::spawn(move || {
                let params = vec![
                    Tensor::ones([5, 3], (Kind::Float, Device::Cpu)),
                    Tensor::zeros([4], (Kind::Float, Device::Cpu)),
                ];
                let same = check_replicas(&params, &mut group, Device::Cpu, "at the start");
                if rank == 2 {
                    // One ulp in one element of rank 2's copy.
                    let bumped = Tensor::from(f32::from_bits(1.0f32.to_bits() + 1));
                    params[0].get(4).get(2).copy_(&bumped);
                }
                let drifted = check_replicas(&params, &mut group, Device::Cpu, "after step 7 of epoch 2");
                (same, drifted)
            })
        })
        .collect();
    for h in handles {
        let (same, drifted) = h.join().unwrap();
        assert_eq!(same, Ok(()));
        let message = drifted.unwrap_err().to_string();
        assert!(
            message.contains("rank(s) 2 are no longer bit-identical to rank 0's after step 7 of epoch 2"),
            "{message}"
        );
    }
}

#[test]
fn a_rank_that_fails_before_the_agreement_is_a_clear_error_for_the_other() {
    let errors = start_two_ranks_differing(|c| c.data = "/nonexistent/ncf-rs-data".into());
    assert!(errors[1].contains("/nonexistent/ncf-rs-data"), "{errors:?}");
    assert!(errors[0].contains("rank 1 left the group") || errors[0].contains("waited"), "{errors:?}");
}
