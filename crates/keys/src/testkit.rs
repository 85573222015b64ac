//! The key port's contract suite. Every adapter runs all of it:
//!
//! ```text
//! coffer_keys::key_provider_contract_tests!(|| async {
//!     // a provider with its own, fresh master key (a new key name, a temp key file…)
//!     coffer_keys::testkit::Subject::new(provider, guard)
//! });
//! ```
//!
//! The macro expands to one `#[tokio::test]` per case, each with a fresh [`Subject`], so the
//! cases run in parallel and one case's rotation never disturbs another.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::sync::Arc;

use crate::{
    KeyContext, KeyError, KeyProvider, RewrapRequest, VersionState, WrappedKey, rewrap_one,
};

coffer_macros::guarded_subject! {
    /// A provider under test plus whatever must live as long as it (a temp dir, a server handle).
    pub struct Subject {
        /// The provider, with a master key of its own.
        pub provider: dyn KeyProvider,
    }
}

fn ctx(wallet: &str) -> KeyContext {
    KeyContext::new()
        .with("purpose", "wallet-dek")
        .with("wallet_id", wallet)
}

#[doc(hidden)]
pub use coffer_macros::contract_cases;

/// Expands to one test per contract case. `$factory` is an expression that, called with no
/// arguments, returns a future of [`Subject`].
#[macro_export]
macro_rules! key_provider_contract_tests {
    ($factory:expr) => {
        $crate::testkit::contract_cases!(
            threads = 2, $factory, |subject| $crate::testkit(&subject);
            generate_then_unwrap_round_trips,
            wrapped_keys_survive_storage_encoding,
            unwrap_under_another_context_is_corrupt,
            tampered_ciphertext_is_corrupt,
            foreign_key_is_not_found,
            rotation_keeps_old_versions_readable_and_rewrap_moves_keys,
            batch_rewrap_keeps_order_and_reports_per_item,
            retiring_old_versions_refuses_them_by_name,
            health_and_status_are_consistent,
            concurrent_use_is_safe,
        );
    };
}

/// A generated key unwraps to the same bytes; the wrapped form names this provider, key and its
/// active version; two generated keys differ.
pub async fn generate_then_unwrap_round_trips(s: &Subject) {
    let p = &s.provider;
    let active = p.status().await.unwrap().active_version;
    let g = p.generate_data_key(&ctx("w1")).await.unwrap();
    assert_eq!(g.wrapped.provider, p.name());
    assert_eq!(g.wrapped.key_id, p.key_id());
    assert_eq!(g.wrapped.version, active);
    let k = p.unwrap_data_key(&g.wrapped, &ctx("w1")).await.unwrap();
    assert_eq!(k.expose_secret(), g.plaintext.expose_secret());
    assert_ne!(
        &g.wrapped.ciphertext[..],
        &g.plaintext.expose_secret()[..],
        "wrapped form must not be the key"
    );

    let g2 = p.generate_data_key(&ctx("w1")).await.unwrap();
    assert_ne!(g.plaintext.expose_secret(), g2.plaintext.expose_secret());
    assert_ne!(g.wrapped.ciphertext, g2.wrapped.ciphertext);
}

/// What the database stores (`WrappedKey::to_bytes`) unwraps after a round trip.
pub async fn wrapped_keys_survive_storage_encoding(s: &Subject) {
    let p = &s.provider;
    let g = p.generate_data_key(&ctx("w1")).await.unwrap();
    let stored = WrappedKey::from_bytes(&g.wrapped.to_bytes()).unwrap();
    let k = p.unwrap_data_key(&stored, &ctx("w1")).await.unwrap();
    assert_eq!(k.expose_secret(), g.plaintext.expose_secret());
}

/// A wrapped key copied to another wallet's row does not unwrap there.
pub async fn unwrap_under_another_context_is_corrupt(s: &Subject) {
    let p = &s.provider;
    let g = p.generate_data_key(&ctx("w1")).await.unwrap();
    for other in [ctx("w2"), KeyContext::new(), ctx("w1").with("extra", "x")] {
        let err = p.unwrap_data_key(&g.wrapped, &other).await.unwrap_err();
        assert!(matches!(err, KeyError::Corrupt(_)), "{other:?}: {err:?}");
    }
}

/// Damaged ciphertext is reported as corrupt, never as success or a panic.
pub async fn tampered_ciphertext_is_corrupt(s: &Subject) {
    let p = &s.provider;
    let g = p.generate_data_key(&ctx("w1")).await.unwrap();
    let n = g.wrapped.ciphertext.len();
    for at in [n / 2, n - 1] {
        let mut bad = g.wrapped.clone();
        bad.ciphertext[at] ^= 0x01;
        let err = p.unwrap_data_key(&bad, &ctx("w1")).await.unwrap_err();
        assert!(matches!(err, KeyError::Corrupt(_)), "byte {at}: {err:?}");
    }
    let mut empty = g.wrapped.clone();
    empty.ciphertext.clear();
    let err = p.unwrap_data_key(&empty, &ctx("w1")).await.unwrap_err();
    assert!(matches!(err, KeyError::Corrupt(_)), "empty: {err:?}");
}

/// A key wrapped by another provider or master key is refused as not found here.
pub async fn foreign_key_is_not_found(s: &Subject) {
    let p = &s.provider;
    let g = p.generate_data_key(&ctx("w1")).await.unwrap();
    let mut other_key = g.wrapped.clone();
    other_key.key_id = format!("{}-other", g.wrapped.key_id);
    let err = p.unwrap_data_key(&other_key, &ctx("w1")).await.unwrap_err();
    assert!(
        matches!(&err, KeyError::NotFound { key_id, .. } if *key_id == other_key.key_id),
        "{err:?}"
    );
    let mut other_provider = g.wrapped.clone();
    other_provider.provider = "some-other-provider".into();
    let err = p
        .unwrap_data_key(&other_provider, &ctx("w1"))
        .await
        .unwrap_err();
    assert!(matches!(err, KeyError::NotFound { .. }), "{err:?}");
}

/// After a rotation: new keys use the new version, old keys still unwrap, and re-wrapping moves
/// an old key to the new version with the same plaintext and context.
pub async fn rotation_keeps_old_versions_readable_and_rewrap_moves_keys(s: &Subject) {
    let p = &s.provider;
    let old = p.generate_data_key(&ctx("w1")).await.unwrap();
    if !p.capabilities().rotate {
        let err = p.rotate().await.unwrap_err();
        assert!(matches!(err, KeyError::Unsupported { .. }), "{err:?}");
        return;
    }
    let new_version = p.rotate().await.unwrap();
    assert!(new_version > old.wrapped.version);
    let status = p.status().await.unwrap();
    assert_eq!(status.active_version, new_version);
    let state_of = |v: u32| {
        status
            .versions
            .iter()
            .find(|i| i.version == v)
            .map(|i| i.state)
    };
    assert_eq!(state_of(new_version), Some(VersionState::Active));
    assert_eq!(
        state_of(old.wrapped.version),
        Some(VersionState::DecryptOnly)
    );

    let fresh = p.generate_data_key(&ctx("w2")).await.unwrap();
    assert_eq!(fresh.wrapped.version, new_version);

    let still = p.unwrap_data_key(&old.wrapped, &ctx("w1")).await.unwrap();
    assert_eq!(still.expose_secret(), old.plaintext.expose_secret());

    let moved = rewrap_one(p.as_ref(), &old.wrapped, &ctx("w1"))
        .await
        .unwrap();
    assert_eq!(moved.version, new_version);
    assert_eq!(moved.key_id, old.wrapped.key_id);
    let k = p.unwrap_data_key(&moved, &ctx("w1")).await.unwrap();
    assert_eq!(k.expose_secret(), old.plaintext.expose_secret());
    let err = p.unwrap_data_key(&moved, &ctx("w2")).await.unwrap_err();
    assert!(matches!(err, KeyError::Corrupt(_)), "{err:?}");

    // Re-wrapping a key already at the active version is harmless.
    let again = rewrap_one(p.as_ref(), &moved, &ctx("w1")).await.unwrap();
    assert_eq!(again.version, new_version);
    let k = p.unwrap_data_key(&again, &ctx("w1")).await.unwrap();
    assert_eq!(k.expose_secret(), old.plaintext.expose_secret());
}

/// A batch re-wrap answers item by item, in order; one bad item does not fail the others.
pub async fn batch_rewrap_keeps_order_and_reports_per_item(s: &Subject) {
    let p = &s.provider;
    let mut batch = Vec::new();
    let mut plaintexts = Vec::new();
    for i in 0..12 {
        let c = ctx(&format!("w{i}"));
        let g = p.generate_data_key(&c).await.unwrap();
        plaintexts.push(g.plaintext);
        batch.push(RewrapRequest {
            wrapped: g.wrapped,
            context: c,
        });
    }
    if p.capabilities().rotate {
        p.rotate().await.unwrap();
    }
    let active = p.status().await.unwrap().active_version;
    // Item 5 carries the wrong context.
    batch[5].context = ctx("somebody-else");
    let results = p.rewrap_data_keys(&batch).await.unwrap();
    assert_eq!(results.len(), batch.len());
    for (i, r) in results.into_iter().enumerate() {
        if i == 5 {
            assert!(matches!(r, Err(KeyError::Corrupt(_))), "item 5: {r:?}");
            continue;
        }
        let w = r.unwrap();
        assert_eq!(w.version, active);
        let k = p.unwrap_data_key(&w, &batch[i].context).await.unwrap();
        assert_eq!(k.expose_secret(), plaintexts[i].expose_secret(), "item {i}");
    }
    assert!(p.rewrap_data_keys(&[]).await.unwrap().is_empty());
}

/// Retiring versions below the active one makes their keys refuse to unwrap or re-wrap with an
/// error naming the version; the active version cannot be retired.
pub async fn retiring_old_versions_refuses_them_by_name(s: &Subject) {
    let p = &s.provider;
    let caps = p.capabilities();
    if !caps.retire {
        let err = p.retire_versions_below(1).await.unwrap_err();
        assert!(matches!(err, KeyError::Unsupported { .. }), "{err:?}");
        return;
    }
    assert!(caps.rotate, "retiring without rotating makes no sense");
    let old = p.generate_data_key(&ctx("w1")).await.unwrap();
    let keep = p.generate_data_key(&ctx("w2")).await.unwrap();
    let new_version = p.rotate().await.unwrap();
    let kept = rewrap_one(p.as_ref(), &keep.wrapped, &ctx("w2"))
        .await
        .unwrap();

    // The active version cannot be retired.
    assert!(p.retire_versions_below(new_version + 1).await.is_err());

    p.retire_versions_below(new_version).await.unwrap();
    let err = p
        .unwrap_data_key(&old.wrapped, &ctx("w1"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, KeyError::Retired { version, .. } if *version == old.wrapped.version),
        "{err:?}"
    );
    let err = rewrap_one(p.as_ref(), &old.wrapped, &ctx("w1"))
        .await
        .unwrap_err();
    assert!(matches!(err, KeyError::Retired { .. }), "{err:?}");

    let status = p.status().await.unwrap();
    let old_state = status
        .versions
        .iter()
        .find(|v| v.version == old.wrapped.version)
        .map(|v| v.state);
    assert_eq!(old_state, Some(VersionState::Retired));

    let k = p.unwrap_data_key(&kept, &ctx("w2")).await.unwrap();
    assert_eq!(k.expose_secret(), keep.plaintext.expose_secret());
}

/// `health` succeeds and `status` describes exactly one active version.
pub async fn health_and_status_are_consistent(s: &Subject) {
    let p = &s.provider;
    p.health().await.unwrap();
    let status = p.status().await.unwrap();
    assert_eq!(status.provider, p.name());
    assert_eq!(status.key_id, p.key_id());
    let active: Vec<_> = status
        .versions
        .iter()
        .filter(|v| v.state == VersionState::Active)
        .collect();
    assert_eq!(active.len(), 1, "{status:?}");
    assert_eq!(active[0].version, status.active_version);
    let mut seen = HashSet::new();
    assert!(
        status.versions.iter().all(|v| seen.insert(v.version)),
        "duplicate versions: {status:?}"
    );
}

/// Many tasks generating and unwrapping at once all get their own keys back.
pub async fn concurrent_use_is_safe(s: &Subject) {
    let mut tasks = Vec::new();
    for i in 0..32 {
        let p = s.provider.clone();
        tasks.push(tokio::spawn(async move {
            let c = ctx(&format!("w{i}"));
            let g = p.generate_data_key(&c).await.unwrap();
            for _ in 0..4 {
                let k = p.unwrap_data_key(&g.wrapped, &c).await.unwrap();
                assert_eq!(k.expose_secret(), g.plaintext.expose_secret());
            }
            *g.plaintext.expose_secret()
        }));
    }
    let mut distinct = HashSet::new();
    for t in tasks {
        distinct.insert(t.await.unwrap());
    }
    assert_eq!(distinct.len(), 32);
}

/// The data-key call an [`Intercepted`] provider is about to pass on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKeyCall {
    /// `generate_data_key`.
    Generate,
    /// `unwrap_data_key`.
    Unwrap,
    /// `rewrap_data_keys`.
    Rewrap,
}

/// A test decorator: passes every call on to `inner`, but first runs `before` on its state for
/// each data-key call (generate, unwrap, rewrap); an error from it fails the call instead. Tests
/// count calls with it or inject failures, and read the state through `Deref`.
pub struct Intercepted<S> {
    inner: Arc<dyn KeyProvider>,
    state: S,
    before: fn(&S, DataKeyCall) -> Result<(), KeyError>,
}

impl<S> Intercepted<S> {
    /// Wraps `inner`, with `state` for `before` to keep its counts in.
    pub fn new(
        inner: Arc<dyn KeyProvider>,
        state: S,
        before: fn(&S, DataKeyCall) -> Result<(), KeyError>,
    ) -> Self {
        Self {
            inner,
            state,
            before,
        }
    }
}

impl<S> std::ops::Deref for Intercepted<S> {
    type Target = S;

    fn deref(&self) -> &S {
        &self.state
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for Intercepted<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intercepted")
            .field("inner", &self.inner)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl<S: std::fmt::Debug + Send + Sync> KeyProvider for Intercepted<S> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn key_id(&self) -> &str {
        self.inner.key_id()
    }
    fn capabilities(&self) -> crate::Capabilities {
        self.inner.capabilities()
    }
    async fn generate_data_key(
        &self,
        context: &KeyContext,
    ) -> Result<crate::GeneratedDataKey, KeyError> {
        (self.before)(&self.state, DataKeyCall::Generate)?;
        self.inner.generate_data_key(context).await
    }
    async fn unwrap_data_key(
        &self,
        wrapped: &WrappedKey,
        context: &KeyContext,
    ) -> Result<coffer_crypto::DataKey, KeyError> {
        (self.before)(&self.state, DataKeyCall::Unwrap)?;
        self.inner.unwrap_data_key(wrapped, context).await
    }
    async fn rewrap_data_keys(
        &self,
        batch: &[RewrapRequest],
    ) -> Result<Vec<Result<WrappedKey, KeyError>>, KeyError> {
        (self.before)(&self.state, DataKeyCall::Rewrap)?;
        self.inner.rewrap_data_keys(batch).await
    }
    async fn status(&self) -> Result<crate::KeyStatus, KeyError> {
        self.inner.status().await
    }
    async fn rotate(&self) -> Result<u32, KeyError> {
        self.inner.rotate().await
    }
    async fn retire_versions_below(&self, min_version: u32) -> Result<(), KeyError> {
        self.inner.retire_versions_below(min_version).await
    }
    async fn health(&self) -> Result<(), KeyError> {
        self.inner.health().await
    }
    fn forget(&self, context: &KeyContext) {
        self.inner.forget(context);
    }
}

/// A `mockall` mock of the port, `MockProvider`, for tests that script a provider's answers.
#[allow(missing_docs)]
mod mock {
    use async_trait::async_trait;
    use coffer_crypto::DataKey;

    use crate::{
        Capabilities, GeneratedDataKey, KeyContext, KeyError, KeyProvider, KeyStatus,
        RewrapRequest, WrappedKey,
    };

    mockall::mock! {
        #[derive(Debug)]
        pub Provider {}
        #[async_trait]
        impl KeyProvider for Provider {
            fn name(&self) -> &str;
            fn key_id(&self) -> &str;
            fn capabilities(&self) -> Capabilities;
            async fn generate_data_key(&self, context: &KeyContext) -> Result<GeneratedDataKey, KeyError>;
            async fn unwrap_data_key(&self, wrapped: &WrappedKey, context: &KeyContext) -> Result<DataKey, KeyError>;
            async fn rewrap_data_keys(&self, batch: &[RewrapRequest]) -> Result<Vec<Result<WrappedKey, KeyError>>, KeyError>;
            async fn status(&self) -> Result<KeyStatus, KeyError>;
            async fn rotate(&self) -> Result<u32, KeyError>;
            async fn retire_versions_below(&self, min_version: u32) -> Result<(), KeyError>;
            async fn health(&self) -> Result<(), KeyError>;
        }
    }
}

pub use mock::MockProvider;
