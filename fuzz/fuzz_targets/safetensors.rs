//! Any bytes as a safetensors file.
#![no_main]
use libfuzzer_sys::fuzz_target;
use uerzoo_fuzz::checkpoint::Checkpoint;

fuzz_target!(|data: &[u8]| {
    if let Ok(ck) = Checkpoint::from_bytes("fuzz.safetensors", data) {
        for (_, t) in &ck.tensors {
            assert_eq!(t.bytes().len(), t.numel() * t.dtype.size());
        }
    }
});
