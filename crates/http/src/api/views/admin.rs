//! The `admin` tag's bodies: a user's roles, an issued password reset, a user's erasure, the audit log (a page, the verification) and the
//! master key (the overview, a rotation request's answer).
//!
//! The members documented as free-form (`items`, `versions`, `keys`, `open_job`, `last_done`,
//! `job`, `first_bad`) are published without a schema of their own; their shapes are the
//! domain's, serialized as they are, and their descriptions name their members.

use coffer_audit::VerifyReport;
use coffer_rotation::{KeysOverview, RotationJob, SetCount};
use serde::Serialize;

/// A user's roles.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = RolesDoc)]
pub struct Roles {
    user_id: String,
    roles: Vec<String>,
}

impl Roles {
    /// `user`'s roles, as stored.
    #[must_use]
    pub fn new(user: coffer_auth::user::UserId, roles: Vec<String>) -> Self {
        Self {
            user_id: user.to_string(),
            roles,
        }
    }
}

/// A user's erasure: when, why, and their wallets (every one closed and erased).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserErasure {
    user_id: String,
    /// RFC 3339.
    erased_at: String,
    /// The reason code given.
    reason: String,
    wallets: Vec<super::Wallet>,
}

impl From<&coffer_usecases::UserErasure> for UserErasure {
    fn from(e: &coffer_usecases::UserErasure) -> Self {
        Self {
            user_id: e.user.to_string(),
            erased_at: super::rfc3339(e.erased_at),
            reason: e.reason.clone(),
            wallets: e.wallets.iter().map(super::Wallet::from).collect(),
        }
    }
}

/// An issued password reset: its token, shown this once, and when it stops working.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = PasswordResetDoc)]
pub struct PasswordReset {
    user_id: String,
    /// Hand it to the user; it works once, until `expires_at`.
    reset_token: String,
    /// RFC 3339.
    expires_at: String,
}

impl std::fmt::Debug for PasswordReset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordReset([REDACTED])")
    }
}

impl PasswordReset {
    /// The reset issued for `user`.
    #[must_use]
    pub fn new(
        user: coffer_auth::user::UserId,
        issued: &coffer_auth::accounts::IssuedReset,
    ) -> Self {
        Self {
            user_id: user.to_string(),
            reset_token: issued.token.expose().to_owned(),
            expires_at: super::rfc3339_secs(issued.expires_at),
        }
    }
}

/// A page of audit records.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = AuditPageDoc)]
pub struct AuditPage {
    /// Records, newest first: id, stream, seq, time, actor, action, subject, outcome, details, MAC.
    items: Vec<serde_json::Value>,
    /// Pass as `before` for the next page.
    next_before: Option<i64>,
}

impl From<&[coffer_audit::AuditRecord]> for AuditPage {
    fn from(records: &[coffer_audit::AuditRecord]) -> Self {
        Self {
            items: records
                .iter()
                .map(|r| {
                    coffer_audit::record_json(
                        &r.event,
                        &coffer_audit::Receipt {
                            id: r.id,
                            seq: r.seq,
                            mac: r.mac,
                        },
                    )
                })
                .collect(),
            next_before: records.last().map(|r| r.id),
        }
    }
}

/// The first bad record of a verification.
#[derive(Debug, Serialize)]
struct FirstBad {
    stream: String,
    seq: u64,
    id: Option<i64>,
    kind: String,
}

/// The audit log's verification.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = AuditVerifyDoc)]
pub struct AuditVerify {
    ok: bool,
    checked: u64,
    streams: u64,
    /// The first bad record (stream, seq, id, kind), if any.
    #[schema(value_type = Option<serde_json::Value>)]
    first_bad: Option<FirstBad>,
}

impl From<&VerifyReport> for AuditVerify {
    fn from(report: &VerifyReport) -> Self {
        Self {
            ok: report.ok,
            checked: report.checked,
            streams: report.streams,
            first_bad: report.first_bad.as_ref().map(|f| FirstBad {
                stream: f.stream.clone(),
                seq: f.seq,
                id: f.id,
                kind: format!("{:?}", f.kind),
            }),
        }
    }
}

/// One master key version.
#[derive(Debug, Serialize)]
struct KeyVersion {
    version: u32,
    state: &'static str,
    created_at: Option<u64>,
    age_secs: Option<u64>,
}

/// Where the master key stands (`GET /v1/admin/keys`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = KeysDoc)]
pub struct Keys {
    provider: String,
    key_id: String,
    active_version: u32,
    /// Each version: `version`, `state` (active, decrypt_only, retired), `created_at`,
    /// `age_secs`.
    #[schema(value_type = Vec<serde_json::Value>)]
    versions: Vec<KeyVersion>,
    /// Per table (`secrets`, `user_keys`, `wallet_keys`): data keys per master key version.
    #[schema(value_type = Vec<serde_json::Value>)]
    keys: Vec<SetCount>,
    /// Data keys under a version below the active one: what a rotation has left.
    stale: u64,
    /// The rotation requested or running (state, versions, total, rewrapped, failed, error).
    #[schema(value_type = Option<serde_json::Value>)]
    open_job: Option<RotationJob>,
    /// The last finished rotation.
    #[schema(value_type = Option<serde_json::Value>)]
    last_done: Option<RotationJob>,
}

impl From<KeysOverview> for Keys {
    fn from(o: KeysOverview) -> Self {
        Self {
            provider: o.provider,
            key_id: o.key_id,
            active_version: o.active_version,
            versions: o
                .versions
                .iter()
                .map(|v| KeyVersion {
                    version: v.version,
                    state: v.state,
                    created_at: v.created_at,
                    age_secs: v.age_secs,
                })
                .collect(),
            keys: o.keys,
            stale: o.stale,
            open_job: o.open_job,
            last_done: o.last_done,
        }
    }
}

/// A rotation request's answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = RotationDoc)]
pub struct Rotation {
    /// Whether this request created it.
    created: bool,
    /// The rotation: id, state (requested, running, done, failed), emergency, retire,
    /// requested_by, versions, counts.
    #[schema(value_type = serde_json::Value)]
    job: RotationJob,
}

impl Rotation {
    /// `job`, and whether this request created it.
    #[must_use]
    pub fn new(job: RotationJob, created: bool) -> Self {
        Self { created, job }
    }
}
