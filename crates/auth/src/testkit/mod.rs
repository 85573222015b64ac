//! Contract suites: the revocation port's here, the user store's in [`accounts`].
//!
//! The revocation port's: every adapter runs it through
//! [`revocation_list_contract_tests!`](crate::revocation_list_contract_tests), one
//! `#[tokio::test]` per case, each on a fresh, empty list. The factory answers a
//! [`ListUnderTest`] (or a bare `Arc<dyn RevocationList>`, which runs in real time): a list on a
//! [`ManualClock`] the test holds sees its entries expire the moment the clock is moved on. What
//! a case may still have to wait for, it polls, within a bound: a list that keeps its own time
//! (Redis's key expiry), or a Postgres announcement reaching a cached list.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use coffer_clock::{Clock as _, ManualClock};

use crate::revocation::{RevocationError, RevocationList};

pub mod accounts;

/// A principal of a new user with `roles`, whose token shows `amr`, as the use cases' tests
/// hand them in (the token's other claims are placeholders).
#[must_use]
pub fn principal(roles: &[&str], amr: &[&str]) -> crate::Principal {
    let user = crate::user::UserId::new();
    crate::Principal {
        user,
        claims: crate::token::AccessClaims {
            iss: "coffer".into(),
            sub: user.to_string(),
            aud: "coffer-api".into(),
            exp: u64::MAX,
            iat: 0,
            jti: "jti".into(),
            client_id: "test".into(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            amr: amr.iter().map(|m| (*m).to_owned()).collect(),
            uep: 0,
            gep: 0,
            sid: None,
        },
        external: None,
        api_key: None,
    }
}

/// A revocation list under test, and its clock when the test holds it. Dereferences to the list.
#[derive(Debug, Clone)]
pub struct ListUnderTest {
    /// The list.
    pub list: Arc<dyn RevocationList>,
    clock: Option<Arc<ManualClock>>,
}

impl ListUnderTest {
    /// A list that keeps its own time: the cases run in real time.
    pub fn new(list: Arc<dyn RevocationList>) -> Self {
        Self { list, clock: None }
    }

    /// A list reading its time from `clock`: the cases move it instead of waiting.
    pub fn with_clock(list: Arc<dyn RevocationList>, clock: Arc<ManualClock>) -> Self {
        Self {
            list,
            clock: Some(clock),
        }
    }

    /// The list's wall-clock time.
    pub fn now(&self) -> SystemTime {
        self.clock
            .as_ref()
            .map_or_else(SystemTime::now, |c| c.now())
    }

    /// Lets `by` pass for the list: moves its clock on when the test holds it, then asks
    /// `reached` every 20 ms until it holds (for at most `by` and 5 s more; the case's own
    /// assertion then says what went wrong).
    async fn wait(&self, by: Duration, reached: impl AsyncFn() -> bool) {
        if let Some(clock) = &self.clock {
            clock.advance(by);
        }
        let deadline = Instant::now() + by + Duration::from_secs(5);
        while Instant::now() < deadline && !reached().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl From<Arc<dyn RevocationList>> for ListUnderTest {
    fn from(list: Arc<dyn RevocationList>) -> Self {
        Self::new(list)
    }
}

impl std::ops::Deref for ListUnderTest {
    type Target = dyn RevocationList;

    fn deref(&self) -> &Self::Target {
        self.list.as_ref()
    }
}

#[doc(hidden)]
pub use coffer_macros::contract_cases;

/// Expands to one test per contract case.
#[macro_export]
macro_rules! revocation_list_contract_tests {
    ($factory:expr) => {
        $crate::testkit::contract_cases!(
            threads = 2, $factory, |list| $crate::testkit(list.into());
            a_revoked_token_is_denied_until_it_would_expire,
            revoking_an_expired_token_denies_nothing,
            user_epochs_move_one_user_at_a_time,
            the_global_epoch_moves_for_everyone,
            concurrent_revocations_are_never_lost,
            bad_arguments_are_refused,
        );
    };
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7())
}

/// Logout: denied now, forgotten once the token would have expired anyway.
pub async fn a_revoked_token_is_denied_until_it_would_expire(list: ListUnderTest) {
    let (jti, other, user) = (unique("jti"), unique("jti"), unique("user"));
    list.revoke_token(&jti, list.now() + Duration::from_secs(2))
        .await
        .unwrap();
    assert!(list.status(&jti, &user).await.unwrap().token_revoked);
    assert!(!list.status(&other, &user).await.unwrap().token_revoked);
    list.wait(Duration::from_millis(3_100), async || {
        !list.status(&jti, &user).await.unwrap().token_revoked
    })
    .await;
    assert!(
        !list.status(&jti, &user).await.unwrap().token_revoked,
        "the entry lives only as long as the token"
    );
}

/// Revoking a token that expired already denies nothing (both adapters also skip storing it).
pub async fn revoking_an_expired_token_denies_nothing(list: ListUnderTest) {
    let (jti, user) = (unique("jti"), unique("user"));
    list.revoke_token(&jti, list.now() - Duration::from_secs(5))
        .await
        .unwrap();
    assert!(!list.status(&jti, &user).await.unwrap().token_revoked);
}

/// Revoke-all of one user moves that user's epoch only.
pub async fn user_epochs_move_one_user_at_a_time(list: ListUnderTest) {
    let (a, b) = (unique("user"), unique("user"));
    let (before_a, global) = list.epochs(&a).await.unwrap();
    let (before_b, _) = list.epochs(&b).await.unwrap();
    let after = list.revoke_user(&a).await.unwrap();
    assert!(after > before_a);
    assert_eq!(list.epochs(&a).await.unwrap(), (after, global));
    assert_eq!(list.epochs(&b).await.unwrap().0, before_b);
    let status = list.status(&unique("jti"), &a).await.unwrap();
    assert_eq!((status.user_epoch, status.token_revoked), (after, false));
}

/// The emergency revoke moves the global epoch that every token carries.
pub async fn the_global_epoch_moves_for_everyone(list: ListUnderTest) {
    let user = unique("user");
    let (_, before) = list.epochs(&user).await.unwrap();
    let after = list.revoke_everyone().await.unwrap();
    assert!(after > before);
    assert_eq!(list.epochs(&unique("user")).await.unwrap().1, after);
    assert_eq!(
        list.status(&unique("jti"), &user)
            .await
            .unwrap()
            .global_epoch,
        after
    );
}

/// Fifty concurrent revoke-alls of one user move its epoch fifty times.
pub async fn concurrent_revocations_are_never_lost(list: ListUnderTest) {
    let user = unique("user");
    let (before, _) = list.epochs(&user).await.unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (list, user) = (list.clone(), user.clone());
            tokio::spawn(async move { list.revoke_user(&user).await.unwrap() })
        })
        .collect();
    let mut seen = Vec::new();
    for t in tasks {
        seen.push(t.await.unwrap());
    }
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 50, "each bump saw its own epoch");
    assert_eq!(list.epochs(&user).await.unwrap().0, before + 50);
}

/// Empty ids are refused with a typed error.
pub async fn bad_arguments_are_refused(list: ListUnderTest) {
    assert!(matches!(
        list.revoke_token("", SystemTime::now()).await,
        Err(RevocationError::Invalid(_))
    ));
    assert!(matches!(
        list.revoke_user("").await,
        Err(RevocationError::Invalid(_))
    ));
    assert!(matches!(
        list.status("x", "").await,
        Err(RevocationError::Invalid(_))
    ));
}
