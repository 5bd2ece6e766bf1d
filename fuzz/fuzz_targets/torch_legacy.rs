//! Any bytes after the legacy torch magic number, read as a legacy (torch ≤ 1.5) stream.
#![no_main]
use libfuzzer_sys::fuzz_target;
use uerzoo_fuzz::checkpoint::Checkpoint;

const MAGIC: [u8; 14] = [
    0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19,
];

fuzz_target!(|data: &[u8]| {
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(data.strip_prefix(&MAGIC[..]).unwrap_or(data));
    if let Ok(ck) = Checkpoint::from_bytes("fuzz.bin", &bytes) {
        for (_, t) in &ck.tensors {
            assert_eq!(t.bytes().len(), t.numel() * t.dtype.size());
        }
    }
});
