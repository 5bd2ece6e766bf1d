//! Any bytes as a torch zip archive (prefixed with the zip magic so the zip reader runs).
#![no_main]
use libfuzzer_sys::fuzz_target;
use uerzoo_fuzz::checkpoint::Checkpoint;

fuzz_target!(|data: &[u8]| {
    let mut bytes = b"PK\x03\x04".to_vec();
    bytes.extend_from_slice(data.strip_prefix(b"PK\x03\x04").unwrap_or(data));
    if let Ok(ck) = Checkpoint::from_bytes("fuzz.bin", &bytes) {
        for (_, t) in &ck.tensors {
            assert_eq!(t.bytes().len(), t.numel() * t.dtype.size());
        }
    }
});
