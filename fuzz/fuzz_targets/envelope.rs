//! The envelope parser and opener on arbitrary bytes: never panic; whatever parses re-encodes to
//! the same bytes (binary and text form); nothing opens under a key that did not seal it.
#![no_main]

use coffer_crypto::{Aad, DataKey, Envelope, KdfParams, open, open_bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = DataKey::from_slice(&[0x5a; 32]).expect("32 bytes");
    let aad = Aad::new("fuzz");
    if let Ok(env) = Envelope::from_bytes(data) {
        assert_eq!(env.as_bytes(), data);
        let text = env.to_text();
        let again = Envelope::from_text(&text).expect("own text form parses");
        assert_eq!(again.as_bytes(), data);
        // Forging a tag for a fixed key is out of reach of a fuzzer: opening must fail.
        assert!(open(&key, &aad, &env).is_err());
    }
    let _ = open_bytes(&key, &aad, data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Envelope::from_text(text);
    }
    let _ = KdfParams::from_bytes(data);
});
