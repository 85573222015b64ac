//! The stored wrapped-key format on arbitrary bytes: never panics; whatever parses re-encodes to
//! the same bytes.
#![no_main]

use coffer_keys::WrappedKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(w) = WrappedKey::from_bytes(data) {
        assert_eq!(w.to_bytes(), data);
    }
});
