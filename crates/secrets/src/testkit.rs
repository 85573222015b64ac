//! The [`SecretStore`] contract suite. Every adapter runs all of it:
//!
//! ```text
//! coffer_secrets::secret_store_contract_tests!(|| async {
//!     coffer_secrets::testkit::Subject::new(Arc::new(store), guard)
//! });
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use crate::{RotationPolicy, SecretMeta, SecretName, SecretRecord, SecretStore, SecretStoreError};

coffer_macros::guarded_subject! {
    /// A store under test plus whatever must outlive it (a temp dir, a schema).
    pub struct Subject {
        /// The store, empty.
        pub store: dyn SecretStore,
    }
}

#[doc(hidden)]
pub use coffer_macros::contract_cases;

/// Expands to one `#[tokio::test]` per case, each with a fresh [`Subject`].
#[macro_export]
macro_rules! secret_store_contract_tests {
    ($factory:expr) => {
        $crate::testkit::contract_cases!(
            threads = 2, $factory, |subject| $crate::testkit(&subject);
            first_version_is_active_and_names_are_unique,
            rotation_moves_the_active_version_and_keeps_the_old,
            a_stale_rotation_conflicts_and_changes_nothing,
            concurrent_rotations_from_one_version_have_one_winner,
            listing_and_export_cover_every_version_in_order,
            restore_adds_what_is_missing_and_never_two_active,
            rewrap_replaces_only_the_wrapped_key,
        );
    };
}

fn name(s: &str) -> SecretName {
    SecretName::parse(s).unwrap()
}

/// A record with recognisable bytes (the store never looks inside them).
pub fn record(n: &str, version: u32, active: bool) -> SecretRecord {
    SecretRecord {
        meta: SecretMeta {
            name: name(n),
            version,
            active,
            created_at: 1_700_000_000 + u64::from(version),
            expires_at: version.is_multiple_of(2).then_some(1_800_000_000),
            rotation: if version == 1 {
                RotationPolicy::Manual
            } else {
                RotationPolicy::EveryDays(90)
            },
            tags: BTreeMap::from([("service".to_owned(), format!("svc-{n}"))]),
        },
        wrapped_key: format!("wrapped-{n}-{version}").into_bytes(),
        kek_version: 1,
        sealed: format!("sealed-{n}-{version}").into_bytes(),
    }
}

/// `insert_first` stores version 1 active, readable as active and by number; a second
/// `insert_first` of the name is `Exists`.
pub async fn first_version_is_active_and_names_are_unique(s: &Subject) {
    let r = record("api-key", 1, true);
    s.store.insert_first(&r).await.unwrap();
    assert_eq!(
        s.store.get(&name("api-key"), None).await.unwrap(),
        Some(r.clone())
    );
    assert_eq!(
        s.store.get(&name("api-key"), Some(1)).await.unwrap(),
        Some(r.clone())
    );
    assert_eq!(s.store.get(&name("api-key"), Some(2)).await.unwrap(), None);
    assert_eq!(s.store.get(&name("other"), None).await.unwrap(), None);
    let err = s
        .store
        .insert_first(&record("api-key", 1, true))
        .await
        .unwrap_err();
    assert!(matches!(err, SecretStoreError::Exists(_)), "{err:?}");
}

/// `rotate` makes the new version active and the old one inactive but readable.
pub async fn rotation_moves_the_active_version_and_keeps_the_old(s: &Subject) {
    s.store.insert_first(&record("db", 1, true)).await.unwrap();
    let v2 = record("db", 2, true);
    s.store.rotate(1, &v2).await.unwrap();
    assert_eq!(s.store.get(&name("db"), None).await.unwrap(), Some(v2));
    let old = s.store.get(&name("db"), Some(1)).await.unwrap().unwrap();
    assert!(!old.meta.active);
    assert_eq!(old.sealed, record("db", 1, true).sealed);
    let err = s
        .store
        .rotate(1, &record("nothing", 2, true))
        .await
        .unwrap_err();
    assert!(matches!(err, SecretStoreError::NotFound(_)), "{err:?}");
}

/// A rotation from a version that is no longer active is a `Conflict` and writes nothing.
pub async fn a_stale_rotation_conflicts_and_changes_nothing(s: &Subject) {
    s.store.insert_first(&record("jwt", 1, true)).await.unwrap();
    s.store.rotate(1, &record("jwt", 2, true)).await.unwrap();
    let err = s
        .store
        .rotate(1, &record("jwt", 3, true))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SecretStoreError::Conflict { expected: 1, .. }),
        "{err:?}"
    );
    assert_eq!(s.store.get(&name("jwt"), Some(3)).await.unwrap(), None);
    assert_eq!(
        s.store
            .get(&name("jwt"), None)
            .await
            .unwrap()
            .unwrap()
            .meta
            .version,
        2
    );
}

/// Eight rotations from the same version at once: one wins, the others conflict, one version
/// is active.
pub async fn concurrent_rotations_from_one_version_have_one_winner(s: &Subject) {
    s.store
        .insert_first(&record("race", 1, true))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..8u8 {
        let store = s.store.clone();
        tasks.push(tokio::spawn(async move {
            let mut r = record("race", 2, true);
            r.sealed = vec![i];
            store.rotate(1, &r).await
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => won += 1,
            Err(SecretStoreError::Conflict { .. }) => {}
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(won, 1);
    let active: Vec<_> = s
        .store
        .list()
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.active)
        .collect();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].version, 2);
}

/// `list` answers metadata of every version ordered by name and version; `export` the same
/// records with their sealed values.
pub async fn listing_and_export_cover_every_version_in_order(s: &Subject) {
    for n in ["b", "a"] {
        s.store.insert_first(&record(n, 1, true)).await.unwrap();
        s.store.rotate(1, &record(n, 2, true)).await.unwrap();
    }
    let listed: Vec<_> = s
        .store
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.name.to_string(), m.version, m.active))
        .collect();
    assert_eq!(
        listed,
        [
            ("a".into(), 1, false),
            ("a".into(), 2, true),
            ("b".into(), 1, false),
            ("b".into(), 2, true)
        ]
    );
    let exported = s.store.export().await.unwrap();
    assert_eq!(exported.len(), 4);
    assert_eq!(exported[1], record("a", 2, true));
    assert_eq!(exported[0].meta.tags, record("a", 1, true).meta.tags);
}

/// `restore` stores missing versions as they were, skips present ones, and never leaves two
/// active versions of a name.
pub async fn restore_adds_what_is_missing_and_never_two_active(s: &Subject) {
    assert!(s.store.restore(&record("r", 1, false)).await.unwrap());
    assert!(s.store.restore(&record("r", 2, true)).await.unwrap());
    assert!(!s.store.restore(&record("r", 2, true)).await.unwrap());
    assert_eq!(
        s.store.get(&name("r"), None).await.unwrap(),
        Some(record("r", 2, true))
    );
    // A backup's active version 3 next to an active version 2 here: stored, inactive.
    assert!(s.store.restore(&record("r", 3, true)).await.unwrap());
    let v3 = s.store.get(&name("r"), Some(3)).await.unwrap().unwrap();
    assert!(!v3.meta.active);
    assert_eq!(
        s.store
            .get(&name("r"), None)
            .await
            .unwrap()
            .unwrap()
            .meta
            .version,
        2
    );
}

/// `rewrap` changes the wrapped key and its master key version, nothing else.
pub async fn rewrap_replaces_only_the_wrapped_key(s: &Subject) {
    s.store.insert_first(&record("w", 1, true)).await.unwrap();
    s.store
        .rewrap(&name("w"), 1, b"rewrapped", 7)
        .await
        .unwrap();
    let r = s.store.get(&name("w"), Some(1)).await.unwrap().unwrap();
    assert_eq!(r.wrapped_key, b"rewrapped");
    assert_eq!(r.kek_version, 7);
    assert_eq!(r.sealed, record("w", 1, true).sealed);
    assert_eq!(r.meta, record("w", 1, true).meta);
    let err = s.store.rewrap(&name("w"), 9, b"x", 7).await.unwrap_err();
    assert!(matches!(err, SecretStoreError::NotFound(_)), "{err:?}");
}
