//! What the ranks of a data-parallel run must agree on, checked through the group itself: at
//! start-up, the dataset, the flags that change the math and the model ([`check_agreement`]); while
//! training, that every rank still holds bit-identical parameters ([`check_replicas`]).
//!
//! Why through the collective rather than a side channel: it works the same over gloo, NCCL and
//! the in-process [`super::ThreadGroup`], and it fails (never hangs) within the group's timeout.
//! Why it matters: ranks that load different files, or run with another learning rate, do not
//! fail on their own; they average gradients of different problems and train a model nobody asked
//! for, or (another batch size: another number of steps) call collectives out of step.

use super::{Collective, CollectiveError};
use tch::{Device, Kind, Tensor};

/// At most this many differences are named in a disagreement's message.
const NAMED_DIFFERENCES: usize = 6;

/// Checks that every rank passed the same `entries` (`(what, value)` pairs, e.g.
/// `("--learning_rate", "0.0045")`), in a few collectives. On a difference every rank returns the
/// same [`CollectiveError::Disagreement`], naming the entries and the ranks' values, so all stop
/// together. `device`: where the group's tensors live (CUDA for NCCL).
pub fn check_agreement(
    entries: &[(String, String)],
    group: &mut dyn Collective,
    device: Device,
) -> Result<(), CollectiveError> {
    let (rank, world) = (group.rank(), group.world_size());
    let mine = encode(entries);
    // Each rank's length, then each rank's bytes broadcast from it: every rank ends with all.
    let lengths = one_hot(world, rank, mine.len() as f64, device);
    group.all_reduce_sum(&lengths)?;
    let lengths: Vec<f64> = to_vec(&lengths);
    let mut described = Vec::with_capacity(world);
    for (root, &len) in lengths.iter().enumerate() {
        let buffer = if root == rank {
            Tensor::from_slice(&mine.iter().map(|&b| f64::from(b)).collect::<Vec<_>>()).to_device(device)
        } else {
            Tensor::zeros([len as i64], (Kind::Double, device))
        };
        group.broadcast(&buffer, root)?;
        let bytes: Vec<u8> = to_vec(&buffer).into_iter().map(|b| b as u8).collect();
        described.push(decode(&bytes));
    }
    match differences(&described) {
        None => Ok(()),
        Some(message) => Err(CollectiveError::Disagreement(message)),
    }
}

/// Checks that every rank holds bit-identical `params` (rank 0's checksum, broadcast, against
/// each rank's own); `when` says at what point (e.g. "after step 12 of epoch 3"), for the message.
/// Every rank returns the same result, so all stop together when replicas drift apart.
pub fn check_replicas(
    params: &[Tensor],
    group: &mut dyn Collective,
    device: Device,
    when: &str,
) -> Result<(), CollectiveError> {
    let (rank, world) = (group.rank(), group.world_size());
    let sum = checksum(params);
    // Two 32-bit halves: exact in float64, which every backend sums and broadcasts.
    let halves = [(sum >> 32) as f64, (sum & 0xFFFF_FFFF) as f64];
    let root = Tensor::from_slice(&halves).to_device(device);
    group.broadcast(&root, 0)?;
    let differs = to_vec(&root) != halves;
    let flags = one_hot(world, rank, if differs { 1.0 } else { 0.0 }, device);
    group.all_reduce_sum(&flags)?;
    let drifted: Vec<usize> = to_vec(&flags).iter().enumerate().filter(|(_, &f)| f != 0.0).map(|(r, _)| r).collect();
    if drifted.is_empty() {
        return Ok(());
    }
    Err(CollectiveError::Disagreement(format!(
        "the parameters of rank(s) {} are no longer bit-identical to rank 0's {when}: the replicas drifted apart (a rank computed on other data, or a backend summed differently); the run is not data-parallel SGD any more (ranks on machines whose CPUs round Adam's arithmetic differently cannot stay bit-identical: there, --check-replicas off)",
        drifted.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")
    )))
}

/// A 64-bit checksum of the bits of `tensors` (any kinds and devices), in order: equal for
/// bit-identical tensors, and different, but for a 2^-64 chance, otherwise.
pub fn checksum(tensors: &[Tensor]) -> u64 {
    tensors.iter().fold(FNV_OFFSET, |hash, t| checksum_bytes(hash, &tensor_bytes(t)))
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// Folds `bytes` (and their length, so concatenations differ) into `hash`: FNV-1a over 8-byte
/// words, fast enough for ML-20m's 127 MB of parameters (tens of ms). Start from [`FNV_OFFSET`].
pub(crate) fn checksum_bytes(mut hash: u64, bytes: &[u8]) -> u64 {
    let mut mix = |word: u64| {
        hash ^= word;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    };
    mix(bytes.len() as u64);
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        mix(u64::from_le_bytes(w.try_into().unwrap_or([0; 8])));
    }
    let mut tail = [0u8; 8];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    mix(u64::from_le_bytes(tail));
    hash
}

/// A checksum of `bytes` alone (e.g. a file's text).
pub(crate) fn checksum_of(bytes: &[u8]) -> u64 {
    checksum_bytes(FNV_OFFSET, bytes)
}

/// The raw bytes of a tensor (copied to a contiguous CPU tensor first).
fn tensor_bytes(t: &Tensor) -> Vec<u8> {
    let cpu = t.detach().to_device(Device::Cpu).contiguous();
    let mut bytes = vec![0u8; cpu.numel() * cpu.kind().elt_size_in_bytes()];
    // `numel` counts elements; the slice holds their bytes.
    cpu.copy_data_u8(&mut bytes, cpu.numel());
    bytes
}

/// `world` zeros but `value` at `rank`: summed over ranks, every rank's value.
fn one_hot(world: usize, rank: usize, value: f64, device: Device) -> Tensor {
    let mut v = vec![0.0; world];
    v[rank] = value;
    Tensor::from_slice(&v).to_device(device)
}

fn to_vec(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(&t.to_device(Device::Cpu).to_kind(Kind::Double)).unwrap_or_default()
}

/// One `what\tvalue` line per entry (tabs and newlines inside become spaces).
fn encode(entries: &[(String, String)]) -> Vec<u8> {
    let clean = |s: &str| s.replace(['\t', '\n'], " ");
    entries.iter().map(|(k, v)| format!("{}\t{}\n", clean(k), clean(v))).collect::<String>().into_bytes()
}

fn decode(bytes: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The message naming where ranks differ from rank 0, or `None` when all agree.
fn differences(described: &[Vec<(String, String)>]) -> Option<String> {
    let first = described.first()?;
    let value = |entries: &[(String, String)], key: &str| {
        entries.iter().find(|(k, _)| k == key).map_or("(not set)".to_owned(), |(_, v)| v.clone())
    };
    let mut found = Vec::new();
    for (rank, entries) in described.iter().enumerate().skip(1) {
        let mut keys: Vec<&str> = first.iter().map(|(k, _)| k.as_str()).collect();
        keys.extend(entries.iter().map(|(k, _)| k.as_str()).filter(|k| !first.iter().any(|(f, _)| f == k)));
        for key in keys {
            let (v0, v) = (value(first, key), value(entries, key));
            if v0 != v {
                found.push(format!("{key}: rank 0 has {v0}, rank {rank} has {v}"));
            }
        }
    }
    if found.is_empty() {
        return None;
    }
    let more = found.len().saturating_sub(NAMED_DIFFERENCES);
    found.truncate(NAMED_DIFFERENCES);
    Some(format!(
        "the ranks disagree, so none of them trains: {}{}. Every rank must read the same dataset and run with the same flags and model",
        found.join("; "),
        if more > 0 { format!("; and {more} more difference(s)") } else { String::new() }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn descriptions_round_trip_through_bytes() {
        let e = entries(&[("--layers", "256 256"), ("file a\tb", "1\n2")]);
        assert_eq!(decode(&encode(&e)), entries(&[("--layers", "256 256"), ("file a b", "1 2")]));
    }

    #[test]
    fn a_difference_names_the_entry_the_rank_and_both_values() {
        let same = entries(&[("--learning_rate", "0.0045"), ("data", "3 files")]);
        assert_eq!(differences(&[same.clone(), same.clone()]), None);
        let other = entries(&[("--learning_rate", "0.001"), ("data", "3 files"), ("--amp", "on")]);
        let message = differences(&[same.clone(), same, other]).unwrap();
        assert!(message.contains("--learning_rate: rank 0 has 0.0045, rank 2 has 0.001"), "{message}");
        assert!(message.contains("--amp: rank 0 has (not set), rank 2 has on"), "{message}");
        assert!(!message.contains("data:"), "{message}");
    }

    #[test]
    fn checksums_see_one_flipped_bit_and_the_boundary_between_tensors() {
        let a = Tensor::from_slice(&[1.0f32, 2.0, 3.0]);
        let flipped = Tensor::from_slice(&[1.0f32, 2.0, f32::from_bits(3.0f32.to_bits() ^ 1)]);
        assert_eq!(checksum(&[a.copy()]), checksum(&[a.copy()]));
        assert_ne!(checksum(&[a.copy()]), checksum(&[flipped]));
        let (x, y) = (Tensor::from_slice(&[1.0f32]), Tensor::from_slice(&[2.0f32, 3.0]));
        assert_ne!(checksum(&[a]), checksum(&[x, y]));
    }
}
