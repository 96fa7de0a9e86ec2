//! A client of PyTorch's c10d `TCPStore`, enough to meet the other ranks through the store that
//! torchrun's agent already serves at `MASTER_ADDR:MASTER_PORT`.
//!
//! Why: under `torchrun` (static or c10d rendezvous) the agent owns that port and tells its workers
//! so with `TORCHELASTIC_USE_AGENT_STORE=True`; a worker that tried to listen there itself would
//! find the port taken. PyTorch's own workers connect to the store as clients, and so do we.
//!
//! The wire format is the one `torch/csrc/distributed/c10d/TCPStore.cpp` speaks (torch 2.x): a
//! one-byte command, then values in native byte order, strings and byte vectors as a `u64` length
//! and the bytes. A new connection is validated (`VALIDATE` + magic number) and pinged. Keys get
//! the `/` prefix `TCPStore` adds, so Python's `store.get("k")` reads what `set("k")` wrote here.
//!
//! **What it is not:** a store server, or a general c10d client (only set, check and get).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

const VALIDATE: u8 = 0;
const SET: u8 = 1;
const GET: u8 = 3;
const CHECK: u8 = 5;
const PING: u8 = 13;
const VALIDATION_MAGIC: u32 = 0x3C85_F7CE;
const CHECK_READY: u8 = 0;
const KEY_PREFIX: &str = "/";
/// The values exchanged here are ids of a few hundred bytes; a larger length is a broken stream.
const MAX_VALUE_BYTES: u64 = 1 << 20;

/// A connection to a c10d TCPStore.
#[derive(Debug)]
pub struct StoreClient {
    stream: TcpStream,
    addr: String,
}

impl StoreClient {
    /// Connects to the store at `host:port`, retrying until `timeout` (the server may not be up
    /// yet), then validates the connection and pings it.
    pub fn connect(host: &str, port: u16, timeout: Duration) -> Result<StoreClient, String> {
        let addr = format!("{host}:{port}");
        let deadline = Instant::now() + timeout;
        // Every address the name resolves to, resolved again on each round (the host may not be
        // known to DNS yet when a multi-node job starts).
        let stream = 'connected: loop {
            let mut last = String::from("the address does not resolve");
            match (host, port).to_socket_addrs() {
                Ok(targets) => {
                    for target in targets {
                        match TcpStream::connect_timeout(&target, Duration::from_secs(1)) {
                            Ok(stream) => break 'connected stream,
                            Err(e) => last = e.to_string(),
                        }
                    }
                }
                Err(e) => last = e.to_string(),
            }
            if Instant::now() >= deadline {
                return Err(format!("store {addr}: not reachable within {} s ({last})", timeout.as_secs()));
            }
            tracing::debug!(store = %addr, error = %last, "store not reachable yet");
            std::thread::sleep(Duration::from_millis(100));
        };
        stream.set_nodelay(true).ok();
        stream.set_read_timeout(Some(timeout.max(Duration::from_secs(1)))).map_err(|e| format!("store {addr}: {e}"))?;
        let mut client = StoreClient { stream, addr };
        let mut hello = vec![VALIDATE];
        hello.extend_from_slice(&VALIDATION_MAGIC.to_ne_bytes());
        let nonce = std::process::id();
        hello.push(PING);
        hello.extend_from_slice(&nonce.to_ne_bytes());
        client.send(&hello)?;
        let answer = u32::from_ne_bytes(client.receive::<4>("ping")?);
        if answer != nonce {
            return Err(format!(
                "store {}: the ping came back as {answer}, not {nonce}; is this a PyTorch TCPStore?",
                client.addr
            ));
        }
        Ok(client)
    }

    /// Stores `value` under `key`.
    pub fn set(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        let mut msg = vec![SET];
        put_bytes(&mut msg, format!("{KEY_PREFIX}{key}").as_bytes());
        put_bytes(&mut msg, value);
        self.send(&msg)
    }

    /// Whether `key` is set.
    pub fn check(&mut self, key: &str) -> Result<bool, String> {
        let mut msg = vec![CHECK];
        msg.extend_from_slice(&1u64.to_ne_bytes());
        put_bytes(&mut msg, format!("{KEY_PREFIX}{key}").as_bytes());
        self.send(&msg)?;
        Ok(self.receive::<1>("check")?[0] == CHECK_READY)
    }

    /// The value of `key`, waiting until it is set or `timeout` has passed.
    pub fn get(&mut self, key: &str, timeout: Duration) -> Result<Vec<u8>, String> {
        let deadline = Instant::now() + timeout;
        while !self.check(key)? {
            if Instant::now() >= deadline {
                return Err(format!("store {}: `{key}` was not set within {} s", self.addr, timeout.as_secs()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut msg = vec![GET];
        put_bytes(&mut msg, format!("{KEY_PREFIX}{key}").as_bytes());
        self.send(&msg)?;
        let len = u64::from_ne_bytes(self.receive::<8>("get")?);
        if len > MAX_VALUE_BYTES {
            return Err(format!("store {}: `{key}` claims {len} bytes; not a value this client wrote", self.addr));
        }
        let mut value = vec![0u8; len as usize];
        self.stream.read_exact(&mut value).map_err(|e| format!("store {}: reading `{key}`: {e}", self.addr))?;
        Ok(value)
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.stream.write_all(bytes).map_err(|e| format!("store {}: {e}", self.addr))
    }

    fn receive<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        let mut buf = [0u8; N];
        self.stream.read_exact(&mut buf).map_err(|e| format!("store {}: no answer to {what} ({e})", self.addr))?;
        Ok(buf)
    }
}

fn put_bytes(msg: &mut Vec<u8>, bytes: &[u8]) {
    msg.extend_from_slice(&(bytes.len() as u64).to_ne_bytes());
    msg.extend_from_slice(bytes);
}
