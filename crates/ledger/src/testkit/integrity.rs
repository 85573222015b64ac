//! Integrity cases of the contract suite: history pages, no plaintext in the raw tables,
//! verification (tampering, progress and resumption), data-key rotation, and the books under
//! concurrent random operations.

use super::*;
/// History: newest first, pages joined by an opaque cursor that new transactions do not shift.
pub async fn history_pages_newest_first_with_a_stable_cursor(backend: &dyn Backend) {
    let l = ledger(backend).await;
    let (alice, bob) = (UserId::new(), UserId::new());
    let a = funded(&l, alice, 0).await;
    let mut made = Vec::new();
    for i in 1..=7 {
        made.push(
            l.deposit(alice, a, &req(i, &format!("h{i}")))
                .await
                .unwrap()
                .id,
        );
    }
    let page1 = l.history(Caller::User(alice), a, None, 3).await.unwrap();
    assert_eq!(
        page1.items.iter().map(|t| t.id).collect::<Vec<_>>(),
        made.iter().rev().take(3).copied().collect::<Vec<_>>()
    );
    // New activity arrives between pages.
    l.deposit(alice, a, &req(100, "late")).await.unwrap();
    let cursor = page1.next_cursor.clone().unwrap();
    let page2 = l
        .history(Caller::User(alice), a, Some(&cursor), 3)
        .await
        .unwrap();
    let page3 = l
        .history(Caller::User(alice), a, page2.next_cursor.as_deref(), 3)
        .await
        .unwrap();
    let rest: Vec<_> = page2
        .items
        .iter()
        .chain(&page3.items)
        .map(|t| t.id)
        .collect();
    assert_eq!(rest, made.iter().rev().skip(3).copied().collect::<Vec<_>>());
    assert_eq!(page3.next_cursor, None);
    assert!(matches!(
        l.history(Caller::User(alice), a, Some("garbage!"), 3).await,
        Err(Error::Invalid {
            field: "cursor",
            ..
        })
    ));
    assert!(matches!(
        l.history(Caller::User(alice), a, None, 0).await,
        Err(Error::Invalid { field: "limit", .. })
    ));
    assert!(matches!(
        l.history(Caller::User(bob), a, None, 3).await,
        Err(Error::WalletNotFound(_))
    ));
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Balances, amounts, memos and PINs appear nowhere in the stored bytes.
pub async fn raw_tables_hold_no_plaintext(backend: &dyn Backend) {
    let l = ledger(backend).await;
    let (alice, bob) = (UserId::new(), UserId::new());
    let pin = "730419";
    let a = l.open_wallet(alice, "USD", pin).await.unwrap().id;
    let b = l.open_wallet(bob, "USD", pin).await.unwrap().id;
    let amount: i64 = 987_654_321;
    let sent: i64 = 123_456_789;
    let memo = "canary-memo-8d1f";
    l.deposit(
        alice,
        a,
        &MoneyRequest {
            memo: Some(memo),
            ..req(amount, "raw-1")
        },
    )
    .await
    .unwrap();
    l.transfer(
        alice,
        a,
        b,
        pin,
        &MoneyRequest {
            memo: Some(memo),
            ..req(sent, "raw-2")
        },
    )
    .await
    .unwrap();
    // A hold and a spending limit: their amounts are sealed too.
    let held: i64 = 55_443_322;
    let cap: i64 = 66_554_433;
    l.place_hold(
        alice,
        a,
        Some(b),
        pin,
        &MoneyRequest {
            memo: Some(memo),
            ..req(held, "raw-3")
        },
        None,
    )
    .await
    .unwrap();
    let limits = crate::LimitSet::new(vec![crate::Limit {
        kind: crate::LimitKind::Hold,
        window: crate::LimitWindow::Rolling30d,
        max: crate::Amount::parse(cap, i64::MAX).unwrap(),
    }])
    .unwrap();
    l.set_limits(UserId::new(), a, Some(limits)).await.unwrap();
    // The transfer also wrote the sender's rolling money-out sum (`sent`, sealed).
    let raw = backend.raw_dump().await;
    assert!(raw.len() > 1000, "the dump holds the tables");
    assert!(
        contains(&raw, hex(a.as_uuid().as_bytes()).as_bytes())
            || contains(&raw, a.as_uuid().as_bytes())
            || contains(&raw, a.to_string().as_bytes()),
        "the dump really shows the rows (wallet ids are stored plainly)"
    );
    for value in [amount, sent, amount - sent, held, cap] {
        for needle in [
            value.to_string().into_bytes(),
            value.to_be_bytes().to_vec(),
            value.to_le_bytes().to_vec(),
            hex(&value.to_be_bytes()).into_bytes(),
            u32::try_from(value).unwrap().to_be_bytes().to_vec(),
        ] {
            assert!(!contains(&raw, &needle), "{value} found in raw storage");
        }
    }
    for needle in [
        memo.as_bytes().to_vec(),
        hex(memo.as_bytes()).into_bytes(),
        pin.as_bytes().to_vec(),
    ] {
        assert!(
            !contains(&raw, &needle),
            "{:?} found in raw storage",
            String::from_utf8_lossy(&needle)
        );
    }
}

/// Moved or altered ciphertexts and signatures are reported with their wallet and transaction.
pub async fn verify_reports_tampering_with_wallet_and_transaction(backend: &dyn Backend) {
    let l = ledger(backend).await;
    let (alice, bob, carol) = (UserId::new(), UserId::new(), UserId::new());
    // The first wallet and the first signed transaction are where the copies come from.
    let c = funded(&l, carol, 1_000).await;
    l.withdraw(carol, c, PIN, &req(10, "first")).await.unwrap();
    let a = funded(&l, alice, 1_000).await;
    let b = funded(&l, bob, 1_000).await;
    let t = l.transfer(alice, a, b, PIN, &req(10, "t")).await.unwrap();
    let w = l.withdraw(bob, b, PIN, &req(10, "w")).await.unwrap();
    assert_verifies(&l).await;
    // Copying the first wallet's balance envelope over the others: each is bound to its wallet
    // and version, so none of the copies opens.
    backend
        .tamper("UPDATE wallets SET balance = (SELECT w2.balance FROM wallets w2 ORDER BY w2.id LIMIT 1)")
        .await;
    // Copying the last wallet's money-out window and spending field over the first's (the
    // first's balance is intact): bound to their wallet and version, they do not open.
    backend
        .tamper("UPDATE wallets SET outflow = (SELECT w2.outflow FROM wallets w2 ORDER BY w2.id DESC LIMIT 1), spending = (SELECT w2.spending FROM wallets w2 ORDER BY w2.id DESC LIMIT 1) WHERE id = (SELECT w3.id FROM wallets w3 ORDER BY w3.id LIMIT 1)")
        .await;
    // Copying the first signature over the others.
    backend
        .tamper("UPDATE transactions SET signature = (SELECT t2.signature FROM transactions t2 WHERE t2.signature IS NOT NULL ORDER BY t2.id LIMIT 1) WHERE signature IS NOT NULL")
        .await;
    let report = l.verify(VerifyOptions::default(), &|_| {}).await.unwrap();
    assert!(!report.ok());
    for (w, what) in [
        (a, "balance"),
        (b, "balance"),
        (c, "outflow"),
        (c, "spending"),
    ] {
        assert!(
            report.findings.iter().any(|f| f.wallet == Some(w)
                && matches!(&f.problem, Problem::Unreadable(e) if e.contains(what))),
            "{w}: {:?}",
            report.findings
        );
    }
    for (wallet, tx) in [(a, t.id), (b, w.id)] {
        assert!(
            report.findings.iter().any(|f| f.wallet == Some(wallet)
                && f.transaction == Some(tx)
                && f.problem == Problem::BadSignature),
            "{tx}: {:?}",
            report.findings
        );
    }
    // Reads of a tampered balance fail as corruption, never as a wrong number.
    assert!(matches!(
        l.wallet(Caller::User(alice), a).await,
        Err(Error::Corrupt(_))
    ));
}

/// A wallet's data key rotates: balance and signing key move to the new version, history
/// written under older versions stays readable, money keeps moving (also while rotations run
/// concurrently with transfers), and verification passes.
pub async fn a_data_key_rotation_keeps_money_and_history_readable(backend: &dyn Backend) {
    let l = Arc::new(ledger(backend).await);
    let alice = UserId::new();
    let a = funded(&l, alice, 10_000).await;
    let b = funded(&l, alice, 0).await;
    let mut with_memo = req(300, "before-rotation");
    with_memo.memo = Some("rent, March");
    l.transfer(alice, a, b, PIN, &with_memo).await.unwrap();
    let before = l.wallet(Caller::User(alice), a).await.unwrap();

    assert_eq!(l.rotate_data_key(a).await.unwrap(), 2);
    let after = l.wallet(Caller::User(alice), a).await.unwrap();
    assert_eq!(after.balance, before.balance);
    assert_eq!(after.public_key, before.public_key, "the same signing key");
    let (store, _) = backend.open(backend.keys()).await;
    let loaded = store.load_wallets(&[a]).await.unwrap().remove(0);
    assert_eq!(loaded.record.dek_version, 2);
    assert_eq!(
        loaded.keys.iter().map(|k| k.version).collect::<Vec<_>>(),
        vec![1, 2]
    );
    // History sealed under version 1 still opens, memo included.
    let history = l.history(Caller::User(alice), a, None, 10).await.unwrap();
    assert_eq!(history.items[0].memo.as_deref(), Some("rent, March"));
    // The PIN still opens the moved signing key; new postings go under version 2.
    l.transfer(alice, a, b, PIN, &req(200, "after-rotation"))
        .await
        .unwrap();
    assert_eq!(l.rotate_data_key(b).await.unwrap(), 2);
    assert_eq!(l.rotate_data_key(a).await.unwrap(), 3);
    assert!(matches!(
        l.rotate_data_key(WalletId::new()).await,
        Err(Error::WalletNotFound(_))
    ));

    // Rotations racing transfers: every transfer lands (a transfer that loaded the wallet
    // before a rotation committed runs again), every rotation lands.
    let transfers = {
        let l = l.clone();
        tokio::spawn(async move {
            for i in 0..15 {
                l.transfer(alice, a, b, PIN, &req(10, &format!("race-{i}")))
                    .await
                    .unwrap();
            }
        })
    };
    let rotations = {
        let l = l.clone();
        tokio::spawn(async move {
            let mut last = 3;
            for _ in 0..5 {
                last = l.rotate_data_key(a).await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(15)).await;
            }
            last
        })
    };
    transfers.await.unwrap();
    assert_eq!(rotations.await.unwrap(), 8);
    let a_now = l.wallet(Caller::User(alice), a).await.unwrap();
    assert_eq!(a_now.balance.minor(), 10_000 - 300 - 200 - 150);
    let report = l.verify(VerifyOptions::default(), &|_| {}).await.unwrap();
    assert!(report.ok(), "{:?}", report.findings);
}

/// Verification pages through the ledger reporting where it is, and a run resumed from a
/// reported point checks the rest.
pub async fn verify_reports_progress_and_resumes(backend: &dyn Backend) {
    let l = ledger(backend).await;
    let mut wallets = Vec::new();
    for _ in 0..5 {
        let owner = UserId::new();
        wallets.push((owner, funded(&l, owner, 100).await));
    }
    for (i, (owner, w)) in wallets.iter().enumerate() {
        l.withdraw(*owner, *w, PIN, &req(1, &format!("v{i}")))
            .await
            .unwrap();
    }
    let seen = std::sync::Mutex::new(Vec::new());
    let options = VerifyOptions {
        page: 2,
        ..VerifyOptions::default()
    };
    let full = l
        .verify(options.clone(), &|p| seen.lock().unwrap().push(p.clone()))
        .await
        .unwrap();
    assert!(full.ok() && full.complete);
    assert_eq!(
        (full.wallets, full.transactions, full.signatures),
        (5, 10, 5)
    );
    let seen = seen.into_inner().unwrap();
    let wallet_pages: Vec<u64> = seen
        .iter()
        .filter(|p| p.phase == crate::verify::Phase::Wallets)
        .map(|p| p.done)
        .collect();
    assert_eq!(wallet_pages, vec![2, 4, 5], "progress after every page");
    let tx_pages = seen
        .iter()
        .filter(|p| p.phase == crate::verify::Phase::Transactions)
        .count();
    assert_eq!(tx_pages, 5);
    // Resume from the third transaction page: the wallets are done, four transactions are.
    let resume = seen
        .iter()
        .filter(|p| p.phase == crate::verify::Phase::Transactions)
        .nth(1)
        .unwrap()
        .resume
        .clone();
    assert!(resume.skip_wallets);
    let rest = l.verify(resume, &|_| {}).await.unwrap();
    assert!(rest.ok());
    assert!(
        !rest.complete,
        "a resumed run says it did not see everything"
    );
    assert_eq!((rest.wallets, rest.transactions), (0, 6));
    assert!(rest.wallet_totals.is_empty() && rest.settlement.is_empty());
}

/// 32 tasks, over 5,000 random deposits, withdrawals and transfers among 20 wallets, some
/// retried with the same idempotency key; then the books.
pub async fn concurrent_random_operations_keep_the_books(backend: &dyn Backend) {
    const TASKS: usize = 32;
    const OPS_PER_TASK: usize = 160;
    const WALLETS: usize = 20;
    let l = Arc::new(ledger(backend).await);
    let owners: Vec<UserId> = (0..5).map(|_| UserId::new()).collect();
    let mut wallets = Vec::new();
    for i in 0..WALLETS {
        let owner = owners[i % owners.len()];
        wallets.push((owner, funded(&l, owner, 50_000).await));
    }
    let wallets = Arc::new(wallets);
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let (l, wallets) = (l.clone(), wallets.clone());
        handles.push(tokio::spawn(async move {
            // (idempotency key, caller) -> transaction id of each success; retries counted.
            let mut done: HashMap<(String, UserId), TransactionId> = HashMap::new();
            let mut money_out = 0u64;
            let mut rng = StdRng::seed_from_u64(task as u64);
            let mut i = 0;
            while i < OPS_PER_TASK {
                let (owner, w) = wallets[rng.random_range(0..wallets.len())];
                let retry = i > 0 && rng.random_bool(0.1);
                let key = if retry {
                    format!("k{task}-{}", i - 1)
                } else {
                    format!("k{task}-{i}")
                };
                let amount = rng.random_range(1..=3_000);
                let op = rng.random_range(0..3);
                // A retry repeats the earlier request exactly: keep the request per key.
                let (_, to) = wallets[rng.random_range(0..wallets.len())];
                if op == 2 && to == w {
                    continue;
                }
                // Some requests are sent twice at the same moment, racing for their key.
                let twice = !retry && rng.random_bool(0.05);
                let call = || {
                    let (l, key) = (&l, &key);
                    async move {
                        match op {
                            0 => l
                                .deposit(owner, w, &req(amount, key))
                                .await
                                .map(|t| (t, false)),
                            1 => l
                                .withdraw(owner, w, PIN, &req(amount, key))
                                .await
                                .map(|t| (t, true)),
                            _ => l
                                .transfer(owner, w, to, PIN, &req(amount, key))
                                .await
                                .map(|t| (t, true)),
                        }
                    }
                };
                let r = match (retry, twice) {
                    (true, _) => None,
                    (false, false) => Some(call().await),
                    (false, true) => {
                        let (first, second) = tokio::join!(call(), call());
                        match (&first, &second) {
                            (Ok((x, _)), Ok((y, _))) => {
                                assert_eq!(x.id, y.id, "one transaction per key")
                            }
                            (
                                Err(Error::Rejected(LedgerError::InsufficientFunds)),
                                Err(Error::Rejected(LedgerError::InsufficientFunds)),
                            ) => {}
                            // Only successes are recorded under a key: a refusal may be retried,
                            // and a duplicate that runs after money arrived (another task's
                            // deposit) may then succeed. The books below still have to balance.
                            (Err(Error::Rejected(LedgerError::InsufficientFunds)), Ok(_))
                            | (Ok(_), Err(Error::Rejected(LedgerError::InsufficientFunds))) => {}
                            other => panic!("a racing duplicate answered differently: {other:?}"),
                        }
                        // The success, if one of them succeeded: it is what the key now names.
                        Some(if first.is_ok() { first } else { second })
                    }
                };
                match r {
                    Some(Ok((t, out))) => {
                        assert!(done.insert((key, owner), t.id).is_none());
                        money_out += u64::from(out);
                    }
                    Some(Err(Error::Rejected(LedgerError::InsufficientFunds))) => {}
                    Some(Err(e)) => panic!("unexpected error: {e:?}"),
                    None => {
                        // Replay the previous op of this task, if it succeeded, by asking the
                        // store for its key: the same request must return the same id.
                        let prev = done
                            .iter()
                            .find(|((k, _), _)| *k == key)
                            .map(|(k, id)| (k.clone(), *id));
                        if let Some(((k, caller), id)) = prev {
                            let t = l
                                .store()
                                .idempotent(&format!("user:{caller}"), &k)
                                .await
                                .unwrap()
                                .unwrap();
                            assert_eq!(t.id, id);
                            let replay = match t.kind {
                                TransactionKind::Deposit => {
                                    l.deposit(
                                        caller,
                                        t.to_wallet.unwrap(),
                                        &req(amount_of(&l, &t).await, &k),
                                    )
                                    .await
                                }
                                TransactionKind::Withdrawal => {
                                    l.withdraw(
                                        caller,
                                        t.from_wallet.unwrap(),
                                        PIN,
                                        &req(amount_of(&l, &t).await, &k),
                                    )
                                    .await
                                }
                                _ => {
                                    l.transfer(
                                        caller,
                                        t.from_wallet.unwrap(),
                                        t.to_wallet.unwrap(),
                                        PIN,
                                        &req(amount_of(&l, &t).await, &k),
                                    )
                                    .await
                                }
                            };
                            assert_eq!(replay.unwrap().id, id, "a retry returns the original");
                        }
                    }
                }
                i += 1;
            }
            (done, money_out)
        }));
    }
    let mut successes: HashMap<(String, UserId), TransactionId> = HashMap::new();
    let mut money_out = 0;
    for h in handles {
        let (done, out) = h.await.unwrap();
        money_out += out;
        for (k, v) in done {
            assert!(successes.insert(k, v).is_none());
        }
    }
    // Each success recorded exactly once, and nothing else.
    let stored = all_transactions(l.store().as_ref()).await;
    let ops: HashSet<TransactionId> = stored
        .iter()
        .filter(|t| t.idempotency_key.starts_with('k'))
        .map(|t| t.id)
        .collect();
    assert_eq!(ops.len(), successes.len());
    assert_eq!(ops, successes.values().copied().collect());
    assert!(
        successes.len() > 2_000,
        "enough operations succeeded: {}",
        successes.len()
    );
    // No balance ever went negative: replay each wallet's history oldest first.
    for (owner, w) in wallets.iter() {
        let mut items = Vec::new();
        let mut cursor = None;
        loop {
            let page = l
                .history(Caller::User(*owner), *w, cursor.as_deref(), 200)
                .await
                .unwrap();
            items.extend(page.items);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        let mut running: i64 = 0;
        for t in items.iter().rev() {
            let m = t.money.amount.minor();
            if t.to_wallet == Some(*w) {
                running += m;
            }
            if t.from_wallet == Some(*w) {
                running -= m;
            }
            assert!(running >= 0, "wallet {w} went negative at {}", t.id);
        }
        assert_eq!(running, balance(&l, *w).await);
    }
    let report = assert_verifies(&l).await;
    assert_eq!(report.signatures, money_out);
    assert!(report.audit.ok && report.audit.checked > 0);
}

async fn amount_of(l: &Client, t: &TransactionRecord) -> i64 {
    l.transaction(Caller::Admin(UserId::new()), t.id)
        .await
        .unwrap()
        .money
        .amount
        .minor()
}
