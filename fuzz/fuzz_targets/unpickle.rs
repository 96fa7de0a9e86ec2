//! Any bytes as a `data.pkl`: the restricted unpickler returns a value or an error, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = torchfile::unpickle(data);
});
