//! Property tests: the envelope parser and opener never panic and never accept a modified
//! envelope, whatever the bytes.

#![allow(clippy::unwrap_used)]
use coffer_crypto::{Aad, DataKey, Envelope, KeyRef, OpenError, open, open_bytes, seal};
use proptest::prelude::*;

fn aad_strategy() -> impl Strategy<Value = Aad> {
    (
        "[a-z.]{1,16}",
        proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..24), 0..4),
    )
        .prop_map(|(purpose, parts)| parts.into_iter().fold(Aad::new(&purpose), Aad::with))
}

fn key_ref_strategy() -> impl Strategy<Value = KeyRef> {
    ("[A-Za-z0-9._:/-]{0,64}", any::<u32>()).prop_map(|(id, v)| KeyRef::new(&id, v).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let key = DataKey::from_slice(&[7; 32]).unwrap();
        let _ = Envelope::from_bytes(&bytes);
        let _ = open_bytes(&key, &Aad::new("x"), &bytes);
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,256}") {
        let _ = Envelope::from_text(&text);
        let _ = Envelope::from_text(&format!("cfe1.{text}"));
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_header_never_panic(
        tail in proptest::collection::vec(any::<u8>(), 0..128),
    ) {
        // A valid prefix steers the parser past the version and algorithm checks.
        let mut bytes = vec![1u8, 1, 0];
        bytes.extend_from_slice(&tail);
        let _ = Envelope::from_bytes(&bytes);
    }

    #[test]
    fn seal_open_round_trips(
        plaintext in proptest::collection::vec(any::<u8>(), 0..2048),
        aad in aad_strategy(),
        key_ref in key_ref_strategy(),
    ) {
        let key = DataKey::generate();
        let env = seal(&key, &key_ref, &aad, &plaintext).unwrap();
        prop_assert_eq!(env.key_ref(), &key_ref);
        let parsed = Envelope::from_text(&env.to_text()).unwrap();
        let opened = open(&key, &aad, &parsed).unwrap();
        prop_assert_eq!(opened.expose_secret(), &plaintext[..]);
    }

    #[test]
    fn any_modification_is_rejected(
        plaintext in proptest::collection::vec(any::<u8>(), 0..256),
        aad in aad_strategy(),
        key_ref in key_ref_strategy(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
        cut in proptest::option::of(any::<prop::sample::Index>()),
        extra in proptest::collection::vec(any::<u8>(), 0..3),
    ) {
        let key = DataKey::generate();
        let env = seal(&key, &key_ref, &aad, &plaintext).unwrap();
        let mut bytes = env.as_bytes().to_vec();
        for (at, xor) in &edits {
            let i = at.index(bytes.len());
            bytes[i] ^= xor;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len()));
        }
        bytes.extend_from_slice(&extra);
        prop_assume!(bytes != env.as_bytes());
        let result = open_bytes(&key, &aad, &bytes);
        prop_assert!(result.is_err(), "modified envelope opened");
    }

    #[test]
    fn another_context_is_rejected(
        plaintext in proptest::collection::vec(any::<u8>(), 0..64),
        a in aad_strategy(),
        b in aad_strategy(),
    ) {
        prop_assume!(a != b);
        let key = DataKey::generate();
        let env = seal(&key, &KeyRef::version_only(1), &a, &plaintext).unwrap();
        prop_assert_eq!(open(&key, &b, &env).unwrap_err(), OpenError::Authentication);
    }
}
