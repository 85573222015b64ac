//! Verification of the whole ledger: every wallet's stored balance against its postings, every
//! transaction's postings summing to zero, every signature against a public key the wallet
//! really had, every capture against its hold (no more than it reserved, under a signature the
//! wallet really made), and the audit chains; with the per-currency totals of wallets and settlement.
//! It runs on a ledger in use: a wallet's balance is compared with its postings up to the row
//! version read.
//!
//! The wallets of erased users have no keys left: they are counted as erased, not checked (each
//! was closed empty), and their postings are left sealed. A transaction with an erased side is
//! accounted for by its sum to zero: the other side opens and is checked (its signature too),
//! the erased side is counted; the settlement totals then leave out what the erased side sealed.
//!
//! It pages through wallets, then transactions, reporting progress with the cursor to resume
//! from; a resumed run checks the rest but reports no ledger-wide totals (it did not see
//! everything), which its report says.

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};

use coffer_audit::{AuditLog, CheckpointAnchor};
use coffer_crypto::{WalletPublicKey, WalletSignature};

use crate::domain::{self, Account, LedgerError, Spending, TransactionId, WalletId};
use crate::error::{Error, context};
use crate::money::{Amount, Money};
use crate::port::{LoadedWallet, PostingRecord, TransactionRecord};
use crate::sealing::{DataKeys, balance_aad, hold_amount_aad, outflow_aad, spending_aad};
use crate::service::{Ledger, open_postings, transaction_view};
use crate::window::RollingSum;

/// Which part is being checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Wallet balances against their postings.
    Wallets,
    /// Transactions: balance and signatures.
    Transactions,
    /// The audit chains.
    Audit,
}

/// Where a verification is, and where to resume it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyProgress {
    /// The phase.
    pub phase: Phase,
    /// Items checked in this phase.
    pub done: u64,
    /// Resume from here ([`VerifyOptions`]).
    pub resume: VerifyOptions,
}

/// Where to start, and how many rows per page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Skip the wallet phase entirely.
    pub skip_wallets: bool,
    /// Start the wallet phase after this wallet.
    pub wallets_after: Option<WalletId>,
    /// Start the transaction phase after this transaction.
    pub transactions_after: Option<TransactionId>,
    /// Rows per page.
    pub page: u32,
    /// The latest audit checkpoint anchor known from outside the database.
    pub anchor: Option<CheckpointAnchor>,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            skip_wallets: false,
            wallets_after: None,
            transactions_after: None,
            page: 500,
            anchor: None,
        }
    }
}

/// What is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A field does not decrypt or parse (tampering, or a lost key).
    Unreadable(String),
    /// The stored balance is not the sum of the wallet's postings (the amounts stay out of
    /// the report, which ends up in logs).
    BalanceMismatch,
    /// A transaction's postings do not sum to zero.
    Unbalanced,
    /// A money-out transaction carries no signature.
    MissingSignature,
    /// A signature does not verify.
    BadSignature,
    /// Signed by a key the wallet never had.
    UnknownSigner,
    /// A capture that names no hold, a hold that does not name it as its capture, or a hold of
    /// other wallets.
    CaptureWithoutHold,
    /// A capture of more than its hold reserved (and its signature authorised).
    CaptureExceedsHold,
    /// The wallet's live holds reserve more than its balance: its available balance is
    /// negative.
    AvailableNegative,
    /// The wallet's events are not numbered one after another up to its last number (one
    /// missing, or its number taken twice).
    EventGap,
    /// The audit log does not verify (its own report has the details).
    AuditChain(String),
}

/// Parses a sealed field's plaintext, for the check that it opens and parses.
type Parse = fn(&[u8]) -> Result<(), String>;

/// One problem and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The wallet, when one is concerned.
    pub wallet: Option<WalletId>,
    /// The transaction, when one is concerned.
    pub transaction: Option<TransactionId>,
    /// What.
    pub problem: Problem,
}

/// The outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerVerifyReport {
    /// Wallets checked.
    pub wallets: u64,
    /// Transactions checked.
    pub transactions: u64,
    /// Signatures checked.
    pub signatures: u64,
    /// Wallets of erased users (not checked: their keys are destroyed).
    pub erased_wallets: u64,
    /// Postings sealed under an erased wallet's destroyed key (not opened).
    pub erased_postings: u64,
    /// Per currency: the sum of wallet balances (complete runs only). With the settlement
    /// balance it sums to zero on a ledger at rest; a run over a ledger in use reads the two at
    /// different moments, so the sum is reported, not judged. What guarantees it is judged:
    /// every wallet's balance equals its postings and every transaction sums to zero.
    pub wallet_totals: BTreeMap<String, i128>,
    /// Per currency: the settlement account's balance (complete runs only).
    pub settlement: BTreeMap<String, i128>,
    /// Whether this run saw everything (not resumed).
    pub complete: bool,
    /// The audit log's report.
    pub audit: coffer_audit::VerifyReport,
    /// Every problem found.
    pub findings: Vec<Finding>,
}

impl LedgerVerifyReport {
    /// Whether nothing is wrong.
    #[must_use]
    pub fn ok(&self) -> bool {
        self.findings.is_empty() && self.audit.ok
    }
}

/// Where a transaction's check writes: the findings and the settlement totals.
struct Sums<'a> {
    findings: &'a mut Vec<Finding>,
    settlement: &'a mut BTreeMap<String, i128>,
}

fn finding(wallet: Option<WalletId>, tx: Option<TransactionId>, problem: Problem) -> Finding {
    Finding {
        wallet,
        transaction: tx,
        problem,
    }
}

impl Ledger {
    /// See the [module documentation](self).
    ///
    /// # Errors
    /// Storage and key-provider failures (problems in the data are findings, not errors).
    pub async fn verify(
        &self,
        options: VerifyOptions,
        progress: &(dyn Fn(&VerifyProgress) + Send + Sync),
    ) -> Result<LedgerVerifyReport, Error> {
        let complete = !options.skip_wallets
            && options.wallets_after.is_none()
            && options.transactions_after.is_none();
        let page = options.page.max(1);
        let mut findings = Vec::new();
        let mut wallet_totals: BTreeMap<String, i128> = BTreeMap::new();
        let mut settlement: BTreeMap<String, i128> = BTreeMap::new();
        let mut resume = options.clone();
        let mut keys = DataKeys::default();
        let mut erased: HashSet<WalletId> = HashSet::new();

        let mut wallets = 0u64;
        if !options.skip_wallets {
            let mut after = options.wallets_after;
            loop {
                let batch = self.store().wallets_after(after, page).await?;
                let Some(last) = batch.last() else { break };
                after = Some(last.record.id);
                keys.unwrap(self.key_provider(), &batch).await?;
                for w in &batch {
                    if w.record.erased_at.is_some() {
                        erased.insert(w.record.id);
                        continue;
                    }
                    self.verify_wallet(&keys, w, &mut findings, &mut wallet_totals)
                        .await?;
                }
                wallets += batch.len() as u64;
                resume.wallets_after = after;
                progress(&VerifyProgress {
                    phase: Phase::Wallets,
                    done: wallets,
                    resume: resume.clone(),
                });
            }
        }
        resume.skip_wallets = true;

        let (mut transactions, mut signatures, mut erased_postings) = (0u64, 0u64, 0u64);
        let mut public_keys: HashMap<WalletId, Vec<[u8; 32]>> = HashMap::new();
        let mut after = options.transactions_after;
        loop {
            let batch = self.store().transactions_after(after, page).await?;
            let Some(last) = batch.last() else { break };
            after = Some(last.id);
            let mut missing: Vec<WalletId> = batch
                .iter()
                .flat_map(|t| t.wallets().into_iter().chain([t.key_wallet]))
                .filter(|w| !keys.holds(*w))
                .collect();
            missing.sort();
            missing.dedup();
            if !missing.is_empty() {
                let loaded: Vec<LoadedWallet> = self.store().load_wallets(&missing).await?;
                keys.unwrap(self.key_provider(), &loaded).await?;
                erased.extend(
                    loaded
                        .iter()
                        .filter(|w| w.record.erased_at.is_some())
                        .map(|w| w.record.id),
                );
            }
            for t in &batch {
                let gone = t
                    .postings
                    .iter()
                    .filter(|p| erased.contains(&p.wallet.unwrap_or(t.key_wallet)))
                    .count();
                erased_postings += gone as u64;
                let sums = Sums {
                    findings: &mut findings,
                    settlement: &mut settlement,
                };
                if self
                    .verify_transaction(&keys, t, &erased, &mut public_keys, sums)
                    .await?
                {
                    signatures += 1;
                }
            }
            transactions += batch.len() as u64;
            resume.transactions_after = after;
            progress(&VerifyProgress {
                phase: Phase::Transactions,
                done: transactions,
                resume: resume.clone(),
            });
        }

        let audit = self
            .audit_log()
            .verify(options.anchor.as_ref(), &|p| {
                progress(&VerifyProgress {
                    phase: Phase::Audit,
                    done: p.checked,
                    resume: resume.clone(),
                });
            })
            .await
            .map_err(|e| Error::Storage(context("audit verification", e)))?;
        if !audit.ok {
            findings.push(finding(
                None,
                None,
                Problem::AuditChain(format!("{:?}", audit.first_bad)),
            ));
        }
        Ok(LedgerVerifyReport {
            wallets,
            transactions,
            signatures,
            erased_wallets: erased.len() as u64,
            erased_postings,
            wallet_totals: if complete {
                wallet_totals
            } else {
                BTreeMap::new()
            },
            settlement: if complete {
                settlement
            } else {
                BTreeMap::new()
            },
            complete,
            audit,
            findings,
        })
    }

    async fn verify_wallet(
        &self,
        keys: &DataKeys,
        w: &LoadedWallet,
        findings: &mut Vec<Finding>,
        totals: &mut BTreeMap<String, i128>,
    ) -> Result<(), Error> {
        let rec = &w.record;
        // The sealed fields beside the balance must open and parse (a copy from another row or
        // version does not).
        let fields: [(&str, _, _, Parse); 2] = [
            (
                "outflow",
                outflow_aad(rec.id, rec.version),
                rec.outflow.as_ref(),
                |b| {
                    RollingSum::from_bytes(b)
                        .map(drop)
                        .map_err(|e| e.to_string())
                },
            ),
            (
                "spending",
                spending_aad(rec.id, rec.version),
                rec.spending.as_ref(),
                |b| Spending::from_bytes(b).map(drop).map_err(|e| e.to_string()),
            ),
        ];
        for (what, aad, sealed, parse) in fields {
            let Some(sealed) = sealed else { continue };
            let opened = keys.open(rec.id, &aad, sealed, what).and_then(|plain| {
                parse(plain.expose_secret())
                    .map_err(|e| Error::Corrupt(context(format!("{what} of wallet {}", rec.id), e)))
            });
            if let Err(e) = opened {
                findings.push(finding(
                    Some(rec.id),
                    None,
                    Problem::Unreadable(e.to_string()),
                ));
            }
        }
        let stored = match keys.open_i64(
            rec.id,
            &balance_aad(rec.id, rec.version),
            &rec.balance,
            "balance",
        ) {
            Ok(b) => b,
            Err(e) => {
                findings.push(finding(
                    Some(rec.id),
                    None,
                    Problem::Unreadable(e.to_string()),
                ));
                return Ok(());
            }
        };
        *totals.entry(rec.currency.code().to_owned()).or_default() += i128::from(stored);
        let mut computed: i128 = 0;
        // Postings up to the row version read: a transaction that committed since belongs to a
        // later version of the row.
        for (tx, p) in self.store().postings_of(rec.id).await? {
            if p.wallet_seq.is_some_and(|seq| seq > rec.version) {
                continue;
            }
            let aad = crate::sealing::posting_aad(tx, p.line, Account::Wallet(rec.id));
            match keys.open_i64(rec.id, &aad, &p.amount, "posting") {
                Ok(d) => computed += i128::from(d),
                Err(e) => {
                    findings.push(finding(
                        Some(rec.id),
                        Some(tx),
                        Problem::Unreadable(e.to_string()),
                    ));
                }
            }
        }
        if computed != i128::from(stored) || stored < 0 {
            findings.push(finding(Some(rec.id), None, Problem::BalanceMismatch));
        }
        // Its events up to the row read (one written since has a higher number): each opens as
        // itself, and they are numbered one after another up to the row's last.
        let mut next = None;
        for e in self.store().events_of(rec.id).await? {
            if e.seq > rec.event_seq {
                break;
            }
            if next.is_some_and(|n| n != e.seq) {
                findings.push(finding(Some(rec.id), None, Problem::EventGap));
            }
            next = Some(e.seq + 1);
            if let Err(err) = crate::service::open_event(keys, &e) {
                findings.push(finding(
                    Some(rec.id),
                    None,
                    Problem::Unreadable(err.to_string()),
                ));
            }
        }
        if next.is_some_and(|n| n != rec.event_seq + 1) {
            findings.push(finding(Some(rec.id), None, Problem::EventGap));
        }
        // Its live holds, read after the row: a hold placed since left the balance as read
        // enough for it, and money that left since only makes the balance read larger, so on a
        // ledger in use this can report nothing that is not there.
        let now = self.now_micros();
        let mut held: i128 = 0;
        for w in self.store().load_wallets(&[rec.id]).await? {
            for h in w.record.holds.iter().filter(|h| h.expires_at > now) {
                let aad = hold_amount_aad(h.id);
                match keys.open_i64(h.wallet, &aad, &h.amount, "hold amount") {
                    Ok(a) => held += i128::from(a),
                    Err(e) => findings.push(finding(
                        Some(rec.id),
                        None,
                        Problem::Unreadable(e.to_string()),
                    )),
                }
            }
        }
        if held > i128::from(stored) {
            findings.push(finding(Some(rec.id), None, Problem::AvailableNegative));
        }
        Ok(())
    }

    /// Checks one transaction, leaving sealed the postings of `erased` wallets (the rest must
    /// open; with none erased, they must sum to zero); returns whether a signature was verified.
    async fn verify_transaction(
        &self,
        keys: &DataKeys,
        t: &TransactionRecord,
        erased: &HashSet<WalletId>,
        public_keys: &mut HashMap<WalletId, Vec<[u8; 32]>>,
        sums: Sums<'_>,
    ) -> Result<bool, Error> {
        let Sums {
            findings,
            settlement,
        } = sums;
        let unreadable = |e: Error| finding(None, Some(t.id), Problem::Unreadable(e.to_string()));
        let gone = |p: &PostingRecord| erased.contains(&p.wallet.unwrap_or(t.key_wallet));
        let whole = !t.postings.iter().any(gone);
        // Only a transaction with an erased side is copied without it.
        let readable = if whole {
            Cow::Borrowed(t)
        } else {
            Cow::Owned(TransactionRecord {
                postings: t.postings.iter().filter(|p| !gone(p)).cloned().collect(),
                ..t.clone()
            })
        };
        let postings = match open_postings(keys, &readable) {
            Ok(p) => p,
            Err(e) => {
                findings.push(unreadable(e));
                return Ok(false);
            }
        };
        let plan = domain::Plan {
            kind: t.kind,
            postings,
            balances: Vec::new(),
        };
        // The erased side is whatever balances the rest: only a whole transaction is judged.
        if whole && !plan.is_balanced() {
            findings.push(finding(None, Some(t.id), Problem::Unbalanced));
        }
        for p in &plan.postings {
            if let Account::Settlement(c) = p.account {
                *settlement.entry(c.code().to_owned()).or_default() += i128::from(p.delta);
            }
        }
        if t.kind == domain::TransactionKind::Capture {
            return self
                .verify_capture(keys, t, &plan.postings, erased, public_keys, findings)
                .await;
        }
        if !t.kind.is_money_out() {
            return Ok(false);
        }
        let view = match transaction_view(keys, t) {
            Ok(v) => v,
            // Every side of it erased: nothing left to check.
            Err(Error::Rejected(LedgerError::Erased)) => return Ok(false),
            Err(e) => {
                findings.push(unreadable(e));
                return Ok(false);
            }
        };
        let (Some(sig), Some(pk), Some(bytes), Some(from)) = (
            view.signature,
            view.public_key,
            view.signed_bytes(),
            view.from_wallet,
        ) else {
            findings.push(finding(
                view.from_wallet,
                Some(t.id),
                Problem::MissingSignature,
            ));
            return Ok(false);
        };
        let known = match public_keys.entry(from) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(self.store().public_keys(from).await?),
        };
        if !known.contains(&pk) {
            findings.push(finding(Some(from), Some(t.id), Problem::UnknownSigner));
            return Ok(false);
        }
        let verified = WalletPublicKey::from_bytes(&pk)
            .ok()
            .zip(WalletSignature::from_bytes(&sig).ok())
            .is_some_and(|(pk, sig)| pk.verify(&bytes, &sig).is_ok());
        if !verified {
            findings.push(finding(Some(from), Some(t.id), Problem::BadSignature));
        }
        Ok(verified)
    }

    /// Checks a capture against its hold: the hold names it, between the same wallets; it
    /// takes no more than the hold reserved; the hold's signature verifies under a key its
    /// wallet had. Returns whether a signature was verified. A capture from an erased wallet is
    /// not opened.
    async fn verify_capture(
        &self,
        keys: &DataKeys,
        t: &TransactionRecord,
        postings: &[domain::Posting],
        erased: &HashSet<WalletId>,
        public_keys: &mut HashMap<WalletId, Vec<[u8; 32]>>,
        findings: &mut Vec<Finding>,
    ) -> Result<bool, Error> {
        let hold = match t.hold {
            Some(id) => self.store().hold(id).await?,
            None => None,
        };
        let Some(h) = hold.filter(|h| {
            h.capture == Some(t.id) && Some(h.wallet) == t.from_wallet && h.to_wallet == t.to_wallet
        }) else {
            findings.push(finding(
                t.from_wallet,
                Some(t.id),
                Problem::CaptureWithoutHold,
            ));
            return Ok(false);
        };
        if erased.contains(&h.wallet) {
            return Ok(false);
        }
        let held = match keys.open_i64(h.wallet, &hold_amount_aad(h.id), &h.amount, "hold amount") {
            Ok(a) => a,
            Err(e) => {
                findings.push(finding(
                    Some(h.wallet),
                    Some(t.id),
                    Problem::Unreadable(e.to_string()),
                ));
                return Ok(false);
            }
        };
        let captured: i64 = postings
            .iter()
            .filter(|p| p.account == Account::Wallet(h.wallet))
            .map(|p| p.delta.saturating_neg())
            .sum();
        if captured > held {
            findings.push(finding(
                Some(h.wallet),
                Some(t.id),
                Problem::CaptureExceedsHold,
            ));
        }
        let Ok(amount) = Amount::parse(held, i64::MAX) else {
            findings.push(finding(
                Some(h.wallet),
                Some(t.id),
                Problem::CaptureExceedsHold,
            ));
            return Ok(false);
        };
        let money = Money {
            amount,
            currency: h.currency,
        };
        let bytes = domain::holds::hold_signing_bytes(
            h.id,
            h.wallet,
            h.to_wallet,
            money,
            h.expires_at,
            &h.placed.key,
        );
        let known = match public_keys.entry(h.wallet) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(self.store().public_keys(h.wallet).await?),
        };
        if !known.contains(&h.public_key) {
            findings.push(finding(Some(h.wallet), Some(t.id), Problem::UnknownSigner));
            return Ok(false);
        }
        let verified = WalletPublicKey::from_bytes(&h.public_key)
            .is_ok_and(|pk| pk.verify(&bytes, &h.signature).is_ok());
        if !verified {
            findings.push(finding(Some(h.wallet), Some(t.id), Problem::BadSignature));
        }
        Ok(verified)
    }
}
