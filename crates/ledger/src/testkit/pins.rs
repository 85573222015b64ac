//! The PIN cases of the ledger contract: the attempt count, its audit records, the lock, the
//! PIN's own use cases, and the weakest PINs refused.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use coffer_audit::{Action, AuditQuery};
use futures_util::future::join_all;

use super::{
    Backend, Client, PIN, Watched, assert_verifies, balance, config, funded, ledger, observed, req,
};
use crate::{Caller, Error, Ledger, LedgerError, UserId, WalletId};

/// Five wrong PINs lock money-out, the count is in the database, an admin unlocks.
pub async fn wrong_pins_lock_money_out_and_the_count_survives_a_restart(backend: &dyn Backend) {
    let l = ledger(backend).await;
    let (alice, admin) = (UserId::new(), UserId::new());
    let a = funded(&l, alice, 1_000).await;
    let b = funded(&l, UserId::new(), 0).await;
    // A wrong PIN, then the right one: the run of failures ends.
    assert!(matches!(
        l.withdraw(alice, a, "000000", &req(1, "p0")).await,
        Err(Error::WrongPin { attempts_left: 4 })
    ));
    l.withdraw(alice, a, PIN, &req(1, "p1")).await.unwrap();
    assert_eq!(
        l.wallet(Caller::User(alice), a).await.unwrap().failed_pins,
        0
    );
    for left in (1..=4).rev() {
        let r = l
            .transfer(alice, a, b, "640271", &req(1, &format!("q{left}")))
            .await;
        assert!(
            matches!(r, Err(Error::WrongPin { attempts_left }) if attempts_left == left),
            "{r:?}"
        );
    }
    // A restart in the middle: a new process reads the count.
    let l = ledger(backend).await;
    assert!(matches!(
        l.transfer(alice, a, b, "305918", &req(1, "q0")).await,
        Err(Error::WrongPin { attempts_left: 0 })
    ));
    let l = ledger(backend).await;
    for (i, pin) in [PIN, "333333"].into_iter().enumerate() {
        assert!(matches!(
            l.withdraw(alice, a, pin, &req(1, &format!("locked{i}")))
                .await,
            Err(Error::Rejected(LedgerError::PinLocked))
        ));
    }
    assert_eq!(
        l.wallet(Caller::User(alice), a).await.unwrap().failed_pins,
        5
    );
    // Money still comes in.
    l.deposit(alice, a, &req(10, "in")).await.unwrap();
    let unlocked = l.unlock_pin(admin, a).await.unwrap();
    assert_eq!(unlocked.failed_pins, 0);
    l.withdraw(alice, a, PIN, &req(1, "after")).await.unwrap();
    assert_eq!(balance(&l, a).await, 1_000 - 1 + 10 - 1);
    // Every wrong PIN and the lock are in the audit log.
    let events = wallet_audit_actions(backend, a).await;
    assert_eq!(
        events.iter().filter(|a| *a == "wallet.pin_failed").count(),
        6
    );
    assert_eq!(
        events.iter().filter(|a| *a == "wallet.pin_locked").count(),
        1
    );
    assert_eq!(
        events
            .iter()
            .filter(|a| *a == "wallet.pin_unlocked")
            .count(),
        1
    );
    assert_verifies(&l).await;
}

/// Ten guesses at once: five are checked, five find the wallet locked, and after that the right
/// PIN is refused exactly like a wrong one, for money-out and for a PIN change.
pub async fn guesses_sent_at_once_get_no_more_than_the_attempts_left(backend: &dyn Backend) {
    let l = ledger(backend).await;
    let (alice, admin) = (UserId::new(), UserId::new());
    let a = funded(&l, alice, 1_000).await;
    let before = l.pins().derivations();
    let guesses: Vec<_> = (0..10)
        .map(|i| {
            let l = &l;
            async move {
                l.withdraw(alice, a, &format!("00000{i}"), &req(1, &format!("g{i}")))
                    .await
            }
        })
        .collect();
    let results = join_all(guesses).await;
    let wrong = results
        .iter()
        .filter(|r| matches!(r, Err(Error::WrongPin { .. })))
        .count();
    let locked = results
        .iter()
        .filter(|r| matches!(r, Err(Error::Rejected(LedgerError::PinLocked))))
        .count();
    assert_eq!((wrong, locked), (5, 5), "{results:?}");
    assert_eq!(
        l.pins().derivations() - before,
        5,
        "only five PINs were tried"
    );
    assert_eq!(
        l.wallet(Caller::User(alice), a).await.unwrap().failed_pins,
        5
    );
    assert!(matches!(
        l.withdraw(alice, a, PIN, &req(1, "right-but-locked")).await,
        Err(Error::Rejected(LedgerError::PinLocked))
    ));
    assert!(matches!(
        l.change_pin(alice, a, PIN, "640271").await,
        Err(Error::Rejected(LedgerError::PinLocked))
    ));
    l.unlock_pin(admin, a).await.unwrap();
    // A right PIN whose operation is refused still ends the run of wrong ones.
    assert!(matches!(
        l.withdraw(alice, a, PIN, &req(5_000, "too-much")).await,
        Err(Error::Rejected(LedgerError::InsufficientFunds))
    ));
    assert_eq!(
        l.wallet(Caller::User(alice), a).await.unwrap().failed_pins,
        0
    );
    assert_eq!(balance(&l, a).await, 1_000);
}

/// Twelve withdrawals at once with the right PIN and nothing remembered yet: all land, the KDF
/// runs once, and the wallet is not locked by its owner's own burst.
pub async fn a_burst_with_the_right_pin_pays_one_attempt(backend: &dyn Backend) {
    let l = ledger(backend).await;
    let alice = UserId::new();
    let a = funded(&l, alice, 1_000).await;
    let before = l.pins().derivations();
    let burst: Vec<_> = (0..12)
        .map(|i| {
            let l = &l;
            async move { l.withdraw(alice, a, PIN, &req(1, &format!("b{i}"))).await }
        })
        .collect();
    for r in join_all(burst).await {
        r.unwrap();
    }
    assert_eq!(l.pins().derivations() - before, 1);
    let w = l.wallet(Caller::User(alice), a).await.unwrap();
    assert_eq!((w.balance.minor(), w.failed_pins), (988, 0));
}

/// The audit records on `wallet`'s stream, oldest first.
pub(super) async fn wallet_audit(
    backend: &dyn Backend,
    wallet: WalletId,
) -> Vec<coffer_audit::AuditRecord> {
    let (_, audit) = backend.open(backend.keys()).await;
    let stream = coffer_audit::StreamId::parse(&format!("wallet:{wallet}")).unwrap();
    audit
        .list(&AuditQuery {
            stream: Some(stream),
            limit: 1000,
            ..AuditQuery::default()
        })
        .await
        .unwrap()
}

pub(super) async fn wallet_audit_actions(backend: &dyn Backend, wallet: WalletId) -> Vec<String> {
    wallet_audit(backend, wallet)
        .await
        .into_iter()
        .map(|r| r.event.action.as_str().to_owned())
        .collect()
}

/// A PIN change re-seals the same key; an admin reset issues a new key and old signatures
/// still verify against the archived public key.
pub async fn pin_change_keeps_the_key_and_reset_issues_a_new_one(backend: &dyn Backend) {
    let l = ledger(backend).await;
    let (alice, admin) = (UserId::new(), UserId::new());
    let a = funded(&l, alice, 1_000).await;
    let first = l.withdraw(alice, a, PIN, &req(1, "before")).await.unwrap();
    let key0 = l.wallet(Caller::User(alice), a).await.unwrap().public_key;
    assert!(matches!(
        l.change_pin(alice, a, "000000", "640271").await,
        Err(Error::WrongPin { attempts_left: 4 })
    ));
    let changed = l.change_pin(alice, a, PIN, "640271").await.unwrap();
    assert_eq!((changed.public_key, changed.failed_pins), (key0, 0));
    assert!(matches!(
        l.withdraw(alice, a, PIN, &req(1, "old-pin")).await,
        Err(Error::WrongPin { .. })
    ));
    let second = l
        .withdraw(alice, a, "640271", &req(1, "new-pin"))
        .await
        .unwrap();
    assert_eq!(second.public_key, Some(key0));
    let reset = l.reset_pin(admin, a, "305918").await.unwrap();
    assert_ne!(reset.public_key, key0, "a reset issues a new signing key");
    assert!(matches!(
        l.withdraw(alice, a, "640271", &req(1, "stale")).await,
        Err(Error::WrongPin { .. })
    ));
    let third = l
        .withdraw(alice, a, "305918", &req(1, "reset"))
        .await
        .unwrap();
    assert_eq!(third.public_key, Some(reset.public_key));
    let keys = l.store().public_keys(a).await.unwrap();
    assert!(keys.contains(&key0) && keys.contains(&reset.public_key));
    for t in [&first, &second, &third] {
        let again = l.transaction(Caller::User(alice), t.id).await.unwrap();
        assert!(again.verify_signature().unwrap());
    }
    let report = assert_verifies(&l).await;
    assert_eq!(report.signatures, 3);
}

/// A wrong PIN's attempt and its `wallet.pin_failed` record are one write: when that write
/// fails, neither is there (and the caller learns nothing about the PIN). A right PIN whose
/// operation is refused ends the run of wrong ones, and that reset is audited too.
pub async fn a_wrong_pin_is_counted_with_its_audit_record(backend: &dyn Backend) {
    let (store, audit) = backend.open(backend.keys()).await;
    let failing = Client::new(Ledger::new(
        Arc::new(Watched {
            inner: store,
            in_apply: Arc::new(AtomicBool::new(false)),
            fail_on: Some(Action::WalletPinFailed),
            without_events: false,
        }),
        backend.keys(),
        observed(audit),
        config(),
    ));
    let alice = UserId::new();
    let a = funded(&failing, alice, 1_000).await;
    let r = failing.withdraw(alice, a, "000000", &req(1, "lost")).await;
    assert!(matches!(r, Err(Error::Storage(_))), "{r:?}");
    async fn count(l: &Client, user: UserId, wallet: WalletId) -> u32 {
        l.wallet(Caller::User(user), wallet)
            .await
            .unwrap()
            .failed_pins
    }
    let failed = || async {
        let actions = wallet_audit_actions(backend, a).await;
        actions.iter().filter(|x| *x == "wallet.pin_failed").count()
    };
    assert_eq!((count(&failing, alice, a).await, failed().await), (0, 0));

    let l = ledger(backend).await;
    assert!(matches!(
        l.withdraw(alice, a, "000000", &req(1, "wrong")).await,
        Err(Error::WrongPin { attempts_left: 4 })
    ));
    assert_eq!((count(&l, alice, a).await, failed().await), (1, 1));
    assert!(matches!(
        l.withdraw(alice, a, PIN, &req(5_000, "too-much")).await,
        Err(Error::Rejected(LedgerError::InsufficientFunds))
    ));
    assert_eq!(count(&l, alice, a).await, 0);
    let actions = wallet_audit_actions(backend, a).await;
    assert_eq!(
        actions
            .iter()
            .filter(|x| *x == "wallet.pin_attempts_reset")
            .count(),
        1,
        "{actions:?}"
    );
}

/// A new PIN that is one digit repeated, a run or a common PIN is refused where a PIN is
/// chosen (opening, change, reset), with nothing written; another user's wallet stays not
/// found, whatever the PIN.
pub async fn the_weakest_pins_are_refused_where_a_pin_is_chosen(backend: &dyn Backend) {
    let l = ledger(backend).await;
    let (alice, mallory, admin) = (UserId::new(), UserId::new(), UserId::new());
    for weak in ["000000", "777777", "123456", "987654", "121212"] {
        assert!(
            matches!(
                l.open_wallet(alice, "USD", weak).await,
                Err(Error::Rejected(LedgerError::WeakPin))
            ),
            "{weak}"
        );
    }
    assert!(
        l.wallets_of(alice, None, 50)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let a = funded(&l, alice, 100).await;
    assert!(matches!(
        l.change_pin(mallory, a, PIN, "123456").await,
        Err(Error::WalletNotFound(_))
    ));
    assert!(matches!(
        l.change_pin(alice, a, PIN, "123456").await,
        Err(Error::Rejected(LedgerError::WeakPin))
    ));
    assert!(matches!(
        l.reset_pin(admin, a, "111111").await,
        Err(Error::Rejected(LedgerError::WeakPin))
    ));
    // Nothing changed: the old PIN still opens the key, and no attempt was spent.
    let w = l.wallet(Caller::User(alice), a).await.unwrap();
    assert_eq!(w.failed_pins, 0);
    l.withdraw(alice, a, PIN, &req(1, "still")).await.unwrap();
    l.change_pin(alice, a, PIN, "640271").await.unwrap();
}
