//! The gloo backend across real processes on loopback: each test re-runs this test binary as the
//! ranks (`NCF_GLOO_TEST_RANK` set: the test body is then one rank's part). Two ranks sum and
//! broadcast; a rank that never starts, and a rank killed with SIGKILL mid-run, make the other
//! fail within the timeout with a message, never hang.

use ncf_train::dist::{Collective, GlooGroup, Meeting, RankEnv};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};

const RANK: &str = "NCF_GLOO_TEST_RANK";
const WORLD: &str = "NCF_GLOO_TEST_WORLD";
const PORT: &str = "NCF_GLOO_TEST_PORT";

/// This process's (rank, world, port) when it runs as a rank of a test.
fn as_rank() -> Option<(usize, usize, u16)> {
    let get = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    Some((get(RANK)? as usize, get(WORLD)? as usize, get(PORT)? as u16))
}

fn rank_env(rank: usize, world: usize, port: u16) -> RankEnv {
    RankEnv {
        rank,
        world_size: world,
        local_rank: rank,
        master_addr: "127.0.0.1".into(),
        master_port: port,
        meeting: Meeting::Listen,
    }
}

/// A port free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs this binary's test `test` as rank `rank` of `world`.
fn spawn_rank(test: &str, rank: usize, world: usize, port: u16) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads", "1"])
        .env(RANK, rank.to_string())
        .env(WORLD, world.to_string())
        .env(PORT, port.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finished(child: Child, what: &str) -> String {
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{what} failed ({:?}):\n{stdout}\n{stderr}", out.status);
    stdout.into_owned()
}

#[test]
fn two_processes_sum_and_broadcast_over_gloo() {
    let test = "two_processes_sum_and_broadcast_over_gloo";
    if let Some((rank, world, port)) = as_rank() {
        let mut group = GlooGroup::join(&rank_env(rank, world, port), Duration::from_secs(60)).unwrap();
        assert_eq!((group.rank(), group.world_size()), (rank, world));
        let r = rank as f64 + 1.0;
        let small = Tensor::from_slice(&[r as f32, 10.0 * r as f32]);
        group.all_reduce_sum(&small).unwrap();
        assert_eq!(Vec::<f32>::try_from(&small).unwrap(), [3.0, 30.0]);
        // A gradient-sized buffer (4M float32, 16 MB): every element summed, none lost.
        let n = 1 << 22;
        let big = Tensor::arange(n, (Kind::Float, Device::Cpu)).remainder(1000) * r;
        group.all_reduce_sum(&big).unwrap();
        let want = Tensor::arange(n, (Kind::Float, Device::Cpu)).remainder(1000) * 3.0;
        assert!(big.equal(&want), "rank {rank}: the sum differs");
        let mine = Tensor::full([5], r, (Kind::Double, Device::Cpu));
        group.broadcast(&mine, 1).unwrap();
        assert_eq!(Vec::<f64>::try_from(&mine).unwrap(), [2.0; 5]);
        println!("rank {rank} ok");
        return;
    }
    let port = free_port();
    let children: Vec<Child> = (0..2).map(|r| spawn_rank(test, r, 2, port)).collect();
    for (r, child) in children.into_iter().enumerate() {
        let out = finished(child, &format!("rank {r}"));
        assert!(out.contains(&format!("rank {r} ok")), "{out}");
    }
}

#[test]
fn a_rank_that_never_starts_is_an_error_within_the_timeout() {
    let test = "a_rank_that_never_starts_is_an_error_within_the_timeout";
    if let Some((rank, world, port)) = as_rank() {
        let err = GlooGroup::join(&rank_env(rank, world, port), Duration::from_secs(3)).unwrap_err();
        println!("error: {err}");
        return;
    }
    let port = free_port();
    let start = Instant::now();
    let out = finished(spawn_rank(test, 0, 2, port), "rank 0");
    let expected = format!("error: rank 0: joining the gloo group of 2 ranks at 127.0.0.1:{port} failed within 3 s");
    assert!(out.contains(&expected), "{out}");
    // The limit is 3 s; start-up and the test harness take a little more, never a hang.
    assert!(start.elapsed() < Duration::from_secs(30), "took {:?}", start.elapsed());
}

/// A rank's part in the kill tests: all-reduces until a collective fails (printing the error),
/// saying "rank R is running" after step 10; from then on it is `late` to each collective.
fn all_reduce_until_a_failure(rank: usize, world: usize, port: u16, timeout: Duration, late: Duration) {
    let mut group = GlooGroup::join(&rank_env(rank, world, port), timeout).unwrap();
    let t = Tensor::ones([1024], (Kind::Float, Device::Cpu));
    for step in 0..100_000 {
        if step > 10 {
            std::thread::sleep(late);
        }
        if let Err(e) = group.all_reduce_sum(&t) {
            println!("error at step {step}: {e}");
            return;
        }
        if step == 10 {
            println!("rank {rank} is running");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("rank {rank}: 100,000 steps and no error: no rank was killed");
}

/// Blocks until `rank` (spawned by `spawn_rank`) says it is running.
fn wait_until_running(rank: &mut Child) {
    for line in BufReader::new(rank.stdout.take().unwrap()).lines() {
        if line.unwrap().contains("is running") {
            break;
        }
    }
}

/// Starts two ranks of `test`, kills `victim` with SIGKILL once both are stepping, and returns
/// the survivor's output and how long it took to fail after the kill.
fn kill_one_of_two(test: &str, victim: usize) -> (String, Duration) {
    let port = free_port();
    let mut ranks: Vec<Child> = (0..2).map(|r| spawn_rank(test, r, 2, port)).collect();
    let mut killed = ranks.remove(victim);
    let survivor = ranks.remove(0);
    wait_until_running(&mut killed);
    let at = Instant::now();
    killed.kill().unwrap();
    let _ = killed.wait();
    let out = finished(survivor, "the survivor");
    (out, at.elapsed())
}

#[test]
fn a_rank_killed_mid_run_makes_the_other_fail_naming_it_not_hang() {
    let test = "a_rank_killed_mid_run_makes_the_other_fail_naming_it_not_hang";
    if let Some((rank, world, port)) = as_rank() {
        return all_reduce_until_a_failure(rank, world, port, Duration::from_secs(10), Duration::ZERO);
    }
    // Rank 1 killed: rank 0 (which serves the store) holds the roll call alone and names it.
    let (out, took) = kill_one_of_two(test, 1);
    assert!(out.contains("error at step") && out.contains("rank 0: lost rank 1 (killed"), "{out}");
    assert!(out.contains("gloo all-reduce failed"), "{out}");
    // Well within the 10 s timeout: a closed connection is noticed at once, then the roll call's
    // 5 s.
    assert!(took < Duration::from_secs(30), "rank 0 took {took:?} to fail");
    // Rank 0 killed: the store went with it, which names it.
    let (out, took) = kill_one_of_two(test, 0);
    assert!(out.contains("rank 1: lost rank 0 (killed"), "{out}");
    assert!(took < Duration::from_secs(30), "rank 1 took {took:?} to fail");
    println!("survivor failed {took:?} after the kill");
}

/// Three ranks; rank 2 killed while rank 0 is slow (it sleeps 2 s before each collective, as a
/// rank writing a checkpoint does): both survivors name rank 2 alone, rank 0 arriving late at the
/// roll call included.
#[test]
fn with_three_ranks_the_roll_call_names_only_the_killed_one_though_a_survivor_is_slow() {
    let test = "with_three_ranks_the_roll_call_names_only_the_killed_one_though_a_survivor_is_slow";
    if let Some((rank, world, port)) = as_rank() {
        let late = if rank == 0 { Duration::from_secs(2) } else { Duration::ZERO };
        return all_reduce_until_a_failure(rank, world, port, Duration::from_secs(20), late);
    }
    let port = free_port();
    let mut ranks: Vec<Child> = (0..3).map(|r| spawn_rank(test, r, 3, port)).collect();
    let mut victim = ranks.pop().unwrap();
    wait_until_running(&mut victim);
    victim.kill().unwrap();
    let _ = victim.wait();
    for (rank, survivor) in ranks.into_iter().enumerate() {
        let out = finished(survivor, &format!("rank {rank}"));
        assert!(out.contains(&format!("rank {rank}: lost rank 2 (killed")), "{out}");
    }
}
