//! Any bytes as a `.uzds` dataset file: the header, the length check and every record,
//! as `DatasetFile::open` checks them. A record that parses must hold what the header
//! promises (row-long ids inside the vocabulary, segment ends inside the row).
#![no_main]
use libfuzzer_sys::fuzz_target;
use uerzoo_fuzz::dataset_format::{HEADER_LEN, Header, Record};

fuzz_target!(|data: &[u8]| {
    let Ok(h) = Header::parse(data) else { return };
    assert!(h.seq_length >= 1 && (h.id_bytes == 2 || h.id_bytes == 4));
    if h.check_len(data.len() as u64).is_err() {
        return;
    }
    let rl = h.record_len();
    for i in 0..h.instances as usize {
        let start = HEADER_LEN + i * rl;
        let Ok(r) = Record::parse(&h, i, start, &data[start..start + rl]) else {
            return;
        };
        assert_eq!(r.ids.len(), h.row);
        assert!(r.ids.iter().all(|&id| (id as usize) < h.vocab_size));
        if let Some(t) = &r.targets {
            assert_eq!(t.len(), h.row);
        }
        assert!(r.seg_a as usize <= h.row && r.seg_b as usize <= h.row);
    }
});
