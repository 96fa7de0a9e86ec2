//! Data-parallel runs on the CPU (gloo) that go wrong as they do for users, with real processes on
//! loopback: a training rank killed with SIGKILL mid-epoch (under our launcher, and started by
//! hand as a multi-machine user or another launcher does), a rank that hangs, a rank that never
//! starts, a port in use, a wrong MASTER_ADDR, and ranks started with different flags. Each ends
//! with a non-zero exit and a message naming the cause within --dist-timeout, no process left
//! behind; after a kill, the last checkpoint loads and --resume continues the run.

mod common;
use common::{evaluate_checkpoint, log_lines, ncf_train, ok, tiny_dataset};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ncf-train");

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A training command on `data` long enough to be killed mid-run (100 epochs of ~175 steps).
fn long_run(data: &Path, ckpt: &Path) -> Vec<String> {
    let mut args: Vec<String> = ["--device", "cpu", "--data"].map(String::from).to_vec();
    args.push(s(data));
    args.extend(
        ["-e", "100", "-b", "256", "--seed", "7", "--dist-timeout", "20", "--checkpoint_dir"].map(String::from),
    );
    args.push(s(ckpt));
    args.push("--log_path".into());
    args.push(s(&ckpt.join("log.json")));
    args
}

/// One rank started by hand, as torchrun or a user on another machine starts it.
fn spawn_rank(args: &[String], rank: usize, world: usize, port: u16, addr: &str) -> Child {
    Command::new(BIN)
        .args(args)
        .env("RANK", rank.to_string())
        .env("LOCAL_RANK", "0")
        .env("WORLD_SIZE", world.to_string())
        .env("MASTER_ADDR", addr)
        .env("MASTER_PORT", port.to_string())
        .env("OMP_NUM_THREADS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until `path` exists (a run's first epoch ended), failing the test after 120 s.
fn wait_for(path: &Path, running: &mut Child) {
    let start = Instant::now();
    while !path.exists() {
        if let Some(status) = running.try_wait().unwrap() {
            panic!("the run ended ({status}) before writing {}", path.display());
        }
        assert!(start.elapsed() < Duration::from_secs(120), "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn alive(pid: u32) -> bool {
    // A reaped process has no /proc entry; a zombie's state is Z.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')))
}

/// The pid of `parent`'s child whose environment holds `RANK={rank}` (from every process's
/// /proc/PID/stat: /proc/PID/task/PID/children is not in every kernel).
fn child_with_rank(parent: u32, rank: usize) -> Option<u32> {
    let ppid = |pid: u32| -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit(')').next()?.split_whitespace().nth(1)?.parse().ok()
    };
    let pids = std::fs::read_dir("/proc").ok()?.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok());
    pids.filter(|&pid| ppid(pid) == Some(parent)).find(|pid| {
        std::fs::read(format!("/proc/{pid}/environ"))
            .is_ok_and(|env| env.split(|&b| b == 0).any(|kv| kv == format!("RANK={rank}").as_bytes()))
    })
}

fn kill9(pid: u32) {
    let status = Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
    assert!(status.success());
}

fn epochs_logged(log: &Path) -> Vec<u64> {
    log_lines(log).iter().filter_map(|(step, _)| step.as_array().filter(|a| a.len() == 1)?[0].as_u64()).collect()
}

#[test]
fn a_rank_killed_under_the_launcher_stops_the_run_naming_it_and_resume_continues() {
    let dir = tempfile::tempdir().unwrap();
    let data = tiny_dataset(dir.path());
    let ckpt = dir.path().join("ckpt");
    let port = free_port().to_string();
    let mut launcher = Command::new(BIN)
        .args(["--nproc-per-node", "2", "--master-port", &port])
        .args(long_run(&data, &ckpt))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&ckpt.join("training_state.pt"), &mut launcher);
    let rank0 = child_with_rank(launcher.id(), 0).expect("rank 0 is a child of the launcher");
    let rank1 = child_with_rank(launcher.id(), 1).expect("rank 1 is a child of the launcher");
    kill9(rank1);
    let killed = Instant::now();
    let out = launcher.wait_with_output().unwrap();
    let took = killed.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("rank 1 failed (signal: 9 (SIGKILL))"), "{stderr}");
    // Rank 0 noticed on its own and named the lost rank, then stopped: nobody was killed for it.
    assert!(stderr.contains("rank 0: lost rank 1 (killed, crashed or hung"), "{stderr}");
    assert!(stderr.contains("the other ranks stopped"), "{stderr}");
    assert!(took < Duration::from_secs(20), "the run took {took:?} to stop (--dist-timeout 20)");
    assert!(!alive(rank0) && !alive(rank1), "a rank is still running");
    eprintln!("launcher stopped {took:?} after the kill");

    // The last checkpoint loads in a single process.
    evaluate_checkpoint(&data, &ckpt.join("model.pth"), "", &[]);
    // --resume with the same world size continues after the last finished epoch.
    let done = epochs_logged(&ckpt.join("log.json")).len() as u64;
    assert!(done >= 1);
    let resumed_log = dir.path().join("resumed.json");
    let mut args = long_run(&data, &ckpt);
    let e = args.iter().position(|a| a == "-e").unwrap();
    args[e + 1] = (done + 2).to_string();
    let l = args.iter().position(|a| a == "--log_path").unwrap();
    args[l + 1] = s(&resumed_log);
    let out = Command::new(BIN)
        .args(["--nproc-per-node", "2", "--master-port", &free_port().to_string(), "--resume", &s(&ckpt)])
        .args(&args)
        .output()
        .unwrap();
    ok(&out);
    assert_eq!(epochs_logged(&resumed_log), [done, done + 1], "the resumed run trains the epochs after the last saved");
}

/// Starts two ranks by hand on `data`, waits for the first epoch, then does `harm` to rank
/// `victim`; returns the survivor's output and how long after the harm it ended.
fn harm_one_of_two(victim: usize, harm: &str, timeout: u64) -> (Output, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let data = tiny_dataset(dir.path());
    let ckpt = dir.path().join("ckpt");
    let port = free_port();
    let mut args = long_run(&data, &ckpt);
    let t = args.iter().position(|a| a == "--dist-timeout").unwrap();
    args[t + 1] = timeout.to_string();
    let mut ranks: Vec<Child> = (0..2).map(|r| spawn_rank(&args, r, 2, port, "127.0.0.1")).collect();
    wait_for(&ckpt.join("training_state.pt"), &mut ranks[0]);
    let mut hurt = ranks.remove(victim);
    let survivor = ranks.remove(0);
    let status = Command::new("kill").args([harm, &hurt.id().to_string()]).status().unwrap();
    assert!(status.success());
    let at = Instant::now();
    let out = survivor.wait_with_output().unwrap();
    let took = at.elapsed();
    let _ = hurt.kill();
    let _ = hurt.wait();
    (out, took)
}

#[test]
fn a_rank_started_by_hand_killed_or_hung_stops_the_other_within_the_timeout_naming_it() {
    // Killed: the survivor notices the closed connection at once, names the rank after its roll
    // call (5 s), well within --dist-timeout 20.
    for victim in [1, 0] {
        let (out, took) = harm_one_of_two(victim, "-KILL", 20);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let survivor = 1 - victim;
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains(&format!("rank {survivor}: lost rank {victim} (killed")), "{stderr}");
        assert!(took < Duration::from_secs(20), "rank {survivor} took {took:?} (--dist-timeout 20)");
        eprintln!("rank {victim} killed: rank {survivor} exited {:?} after {took:?}", out.status.code());
    }
    // Hung (SIGSTOP): the survivor's collective times out after --dist-timeout (10 s), then the
    // roll call names the silent rank.
    let (out, took) = harm_one_of_two(1, "-STOP", 10);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("rank 0: lost rank 1 (killed, crashed or hung"), "{stderr}");
    assert!(took >= Duration::from_secs(10) && took < Duration::from_secs(10 + 30), "rank 0 took {took:?}");
    eprintln!("rank 1 stopped: rank 0 exited after {took:?}");
}

/// Runs one rank of a world of 2 by hand with `--dist-timeout 3`; returns its output and time.
fn lone_rank(rank: usize, port: u16, addr: &str) -> (Output, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let data = tiny_dataset(dir.path());
    let mut args = long_run(&data, &dir.path().join("ckpt"));
    let t = args.iter().position(|a| a == "--dist-timeout").unwrap();
    args[t + 1] = "3".into();
    let start = Instant::now();
    let out = spawn_rank(&args, rank, 2, port, addr).wait_with_output().unwrap();
    (out, start.elapsed())
}

#[test]
fn bad_starts_fail_within_the_timeout_with_a_message_never_hang() {
    // A rank that never starts: rank 0 waits 3 s for it, then says so.
    let port = free_port();
    let (out, took) = lone_rank(0, port, "127.0.0.1");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && took < Duration::from_secs(30), "{took:?} {stderr}");
    assert!(
        stderr.contains(&format!("joining the gloo group of 2 ranks at 127.0.0.1:{port} failed within 3 s")),
        "{stderr}"
    );
    eprintln!("missing rank: {took:?}, {:?}", out.status.code());

    // The port rank 0 would serve the store on is taken.
    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (out, took) = lone_rank(0, port, "127.0.0.1");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && took < Duration::from_secs(30), "{took:?} {stderr}");
    assert!(stderr.contains("address already in use") || stderr.contains("EADDRINUSE"), "{stderr}");
    eprintln!("port in use: {took:?}, {:?}", out.status.code());

    // A MASTER_ADDR nobody serves (TEST-NET-1, RFC 5737: never routed; an address rather than
    // an unresolvable name, whose lookup can itself block for long where no nameserver answers).
    let (out, took) = lone_rank(1, free_port(), "192.0.2.1");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && took < Duration::from_secs(30), "{took:?} {stderr}");
    assert!(stderr.contains("no store to meet the other ranks at: store 192.0.2.1:"), "{stderr}");
    assert!(stderr.contains("not reachable within 3 s"), "{stderr}");
    eprintln!("wrong MASTER_ADDR: {took:?}, {:?}", out.status.code());

    // The launcher's own check of its port.
    let out = ncf_train(["--nproc-per-node", "2", "--master-port", &port.to_string(), "--data", "x"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains(&format!("port {port} is in use")), "{stderr}");
    drop(taken);

    // A machine placed outside the job.
    let out = ncf_train(["--nnodes", "2", "--node-rank", "2", "--nproc-per-node", "1", "--data", "x"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("--node-rank 2 must be below --nnodes 2"), "{stderr}");
}

#[test]
fn ranks_started_with_different_flags_all_stop_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let data = tiny_dataset(dir.path());
    let port = free_port();
    let args = |lr: &str| -> Vec<String> {
        let mut a = long_run(&data, &dir.path().join(format!("ckpt-{lr}")));
        a.extend(["-l".into(), lr.into()]);
        a
    };
    let ranks =
        [spawn_rank(&args("0.0045"), 0, 2, port, "127.0.0.1"), spawn_rank(&args("0.01"), 1, 2, port, "127.0.0.1")];
    for (rank, child) in ranks.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "rank {rank}: {stderr}");
        assert!(stderr.contains("--learning_rate: rank 0 has 0.0045, rank 1 has 0.01"), "rank {rank}: {stderr}");
    }
}

/// PyTorch's own launcher, from the set-up venv (`python -m torch.distributed.run`: the venv's
/// `torchrun` script is the same module).
#[test]
fn torchrun_launches_the_gloo_ranks() {
    let dir = tempfile::tempdir().unwrap();
    let data = tiny_dataset(dir.path());
    let ckpt = dir.path().join("ckpt");
    let log = ckpt.join("log.json");
    let out = Command::new(test_support::python())
        .args(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "--no-python", BIN])
        .args(["--device", "cpu", "--data", &s(&data), "-e", "2", "-b", "1024", "--seed", "1"])
        .args(["--checkpoint_dir", &s(&ckpt), "--log_path", &s(&log), "--dist-timeout", "60"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for rank in 0..2 {
        assert!(stderr.contains(&format!("rank {rank} of 2 joined the gloo group on the CPU")), "{stderr}");
    }
    assert!(stderr.contains("torchrun's agent store"), "{stderr}");
    assert_eq!(epochs_logged(&log), [0, 1], "rank 0 logged both epochs");
    assert!(ckpt.join("model.pth").exists());
}

/// torchrun's multi-machine flags on our launcher: two "machines" on loopback, one rank each.
#[test]
fn two_nodes_meet_through_node_0s_address() {
    let dir = tempfile::tempdir().unwrap();
    let data = tiny_dataset(dir.path());
    let port = free_port().to_string();
    let node = |rank: &str, ckpt: PathBuf| {
        Command::new(BIN)
            .args(["--nnodes", "2", "--node-rank", rank, "--nproc-per-node", "1", "--master-addr", "127.0.0.1"])
            .args(["--master-port", &port, "--device", "cpu", "--data", &s(&data), "-e", "1", "-b", "1024"])
            .args(["--seed", "1", "--checkpoint_dir", &s(&ckpt), "--log_path", &s(&ckpt.join("log.json"))])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Node 1 first: it waits for node 0's store.
    let second = node("1", dir.path().join("node1"));
    std::thread::sleep(Duration::from_millis(500));
    let first = node("0", dir.path().join("node0"));
    for (name, child) in [("node 0", first), ("node 1", second)] {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
    }
    // Rank 0 (node 0) alone writes; node 1's rank 1 writes nothing.
    assert_eq!(epochs_logged(&dir.path().join("node0/log.json")), [0]);
    assert!(!dir.path().join("node1/log.json").exists() && !dir.path().join("node1/model.pth").exists());
}
