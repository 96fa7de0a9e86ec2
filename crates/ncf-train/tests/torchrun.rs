//! Meeting the other ranks under torchrun, with PyTorch's own pieces as the oracle: our c10d
//! TCPStore client against `torch.distributed.TCPStore`, and a real `torchrun --no-python` launch
//! (static and c10d rendezvous) whose workers are this test binary, exchanging rank 0's NCCL id
//! through the store torchrun's agent serves at MASTER_ADDR:MASTER_PORT. (torch 2.11, pinned: its
//! c10d rendezvous shares its store with the workers too, as releases since about 2.4 do.)

use ncf_train::dist::{rendezvous, Meeting, RankEnv, StoreClient};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// `torchrun` is `python -m torch.distributed.run` (the venv's `bin/torchrun` script may name
/// the folder the venv was built in, before setup-libtorch.sh renamed it).
fn torchrun() -> Command {
    let mut cmd = Command::new(test_support::python());
    cmd.args(["-m", "torch.distributed.run"]);
    cmd
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn the_store_client_speaks_pytorchs_tcpstore_protocol() {
    // PyTorch's TCPStore server: prints its port, sets a key, then waits for ours and prints it.
    let code = r#"
import datetime, sys
from torch.distributed import TCPStore
s = TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False, timeout=datetime.timedelta(seconds=60))
print(s.port, flush=True)
s.set("from-python", bytes([0, 1, 255]) + b"abc")
print(s.get("from-rust").hex(), flush=True)
s.wait(["done"])
"#;
    let mut server = Command::new(test_support::python())
        .args(["-c", code])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python starts");
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let port: u16 = lines.next().unwrap().unwrap().trim().parse().unwrap();

    let mut client = StoreClient::connect("127.0.0.1", port, Duration::from_secs(30)).unwrap();
    assert_eq!(client.get("from-python", Duration::from_secs(30)).unwrap(), b"\x00\x01\xffabc");
    assert!(!client.check("never-set").unwrap());
    let start = std::time::Instant::now();
    let err = client.get("never-set", Duration::from_millis(300)).unwrap_err();
    assert!(err.contains("`never-set` was not set within"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(5));
    let id: Vec<u8> = (0..128u8).collect();
    client.set("from-rust", &id).unwrap();
    assert_eq!(lines.next().unwrap().unwrap().trim(), id.iter().map(|b| format!("{b:02x}")).collect::<String>());
    client.set("done", b"1").unwrap();
    assert!(server.wait().unwrap().success());
}

#[test]
fn connecting_to_a_port_that_is_not_a_store_is_a_clear_error() {
    // A listener that accepts and answers nothing like a TCPStore.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            use std::io::Write;
            let _ = s.write_all(&[0xAB; 4]);
            std::thread::sleep(Duration::from_secs(3));
        }
    });
    let err = StoreClient::connect("127.0.0.1", port, Duration::from_secs(2)).unwrap_err();
    assert!(err.contains("is this a PyTorch TCPStore?"), "{err}");
    // Nothing listening: an error within the timeout.
    let err = StoreClient::connect("127.0.0.1", free_port(), Duration::from_millis(500)).unwrap_err();
    assert!(err.contains("not reachable within"), "{err}");
}

#[test]
fn a_store_that_answers_a_get_with_an_absurd_length_is_an_error_not_an_allocation() {
    use std::io::{Read, Write};
    // Speaks the handshake and CHECK correctly, then claims a 2^60-byte value.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut hello = [0u8; 10]; // VALIDATE + magic, PING + nonce
        s.read_exact(&mut hello).unwrap();
        s.write_all(&hello[6..10]).unwrap();
        let key_request = |s: &mut std::net::TcpStream, counted: bool| {
            let mut head = vec![0u8; if counted { 17 } else { 9 }]; // command, [count,] key length
            s.read_exact(&mut head).unwrap();
            let len = u64::from_ne_bytes(head[head.len() - 8..].try_into().unwrap()) as usize;
            s.read_exact(&mut vec![0u8; len]).unwrap();
        };
        key_request(&mut s, true); // CHECK
        s.write_all(&[0]).unwrap(); // ready
        key_request(&mut s, false); // GET
        s.write_all(&(1u64 << 60).to_ne_bytes()).unwrap();
        std::thread::sleep(Duration::from_secs(2));
    });
    let mut client = StoreClient::connect("127.0.0.1", port, Duration::from_secs(5)).unwrap();
    let err = client.get("id", Duration::from_secs(5)).unwrap_err();
    assert!(err.contains("`id` claims 1152921504606846976 bytes"), "{err}");
}

/// The worker torchrun starts in `ranks_meet_through_torchruns_agent_store`: reads the torchrun
/// environment, meets the other ranks with rank 0's (fake) NCCL id, and writes what it got.
#[test]
#[ignore = "a worker process: torchrun starts it in ranks_meet_through_torchruns_agent_store"]
fn torchrun_worker() {
    let Ok(out) = std::env::var("NCF_TORCHRUN_TEST_OUT") else {
        return eprintln!("a worker of ranks_meet_through_torchruns_agent_store; nothing to do on its own");
    };
    let env = RankEnv::from_env().unwrap().expect("torchrun sets WORLD_SIZE");
    let id: [u8; 128] = std::array::from_fn(|i| (i as u8).wrapping_mul(31).wrapping_add(env.rank as u8));
    let got = rendezvous(&env, Some(id), Duration::from_secs(60)).unwrap();
    let meeting = match &env.meeting {
        Meeting::AgentStore { .. } => "agent-store",
        Meeting::Listen => "listen",
    };
    let hex: String = got.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(Path::new(&out).join(format!("rank-{}", env.rank)), format!("{meeting} {hex}")).unwrap();
}

#[test]
fn ranks_meet_through_torchruns_agent_store() {
    let exe = std::env::current_exe().unwrap();
    let port = free_port().to_string();
    let static_rdzv = ["--nnodes", "1", "--master-addr", "127.0.0.1", "--master-port", port.as_str()];
    for (name, rdzv) in [("static", &static_rdzv[..]), ("c10d (--standalone)", &["--standalone"][..])] {
        let out = tempfile::tempdir().unwrap();
        let status = torchrun()
            .args(["--no-python", "--nproc-per-node", "3"])
            .args(rdzv)
            .arg(&exe)
            .args(["--exact", "torchrun_worker", "--ignored", "--nocapture", "--test-threads", "1"])
            .env("NCF_TORCHRUN_TEST_OUT", out.path())
            .status()
            .unwrap();
        assert!(status.success(), "{name}: torchrun failed");
        // Rank 0's id, as the worker builds it.
        let id0: String = (0..128usize).map(|i| format!("{:02x}", (i as u8).wrapping_mul(31))).collect();
        for rank in 0..3 {
            let got = std::fs::read_to_string(out.path().join(format!("rank-{rank}"))).unwrap();
            assert_eq!(got, format!("agent-store {id0}"), "{name}: rank {rank}");
        }
    }
}
