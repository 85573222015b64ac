//! The audit event model.
//!
//! Every free-text field is a validated token (`[A-Za-z0-9._:-]`, bounded length): an email, a
//! name or a sentence cannot be stored raw by construction. Values that must be correlated but
//! not revealed (email, token ids, client IPs when so configured) go in as
//! [`DetailValue::Mac`], made by [`AuditHasher`].
//!
//! [`Action`]s are dotted names (`transaction.transfer`), stable once released: alert rules,
//! dashboards and reports match on them. [`AuditEvent::new`] takes the request id from the
//! task-local scope [`in_request`], which the HTTP layer opens around each handler, so every
//! service's records carry it without passing it down.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use coffer_crypto::HmacKey;
use serde::{Deserialize, Serialize};

/// Why a field of an event was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// A token is empty, too long, or has characters outside its set.
    #[error("{field} must be 1-{max} characters of [A-Za-z0-9._:-]")]
    BadToken {
        /// Which field.
        field: &'static str,
        /// Its maximum length.
        max: usize,
    },
    /// A detail key is not `[a-z0-9_]{1,32}`.
    #[error("detail keys are 1-32 characters of [a-z0-9_]")]
    BadDetailKey,
    /// More than [`MAX_DETAILS`] details.
    #[error("at most {MAX_DETAILS} details per event")]
    TooManyDetails,
    /// A stored name is not one this build knows.
    #[error("unknown {field} {value:?}")]
    Unknown {
        /// Which field.
        field: &'static str,
        /// The stored value.
        value: String,
    },
}

/// Most details one event carries.
pub const MAX_DETAILS: usize = 16;

fn is_token(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

macro_rules! token_type {
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Parses the token.
            ///
            /// # Errors
            /// [`EventError::BadToken`].
            pub fn parse(s: &str) -> Result<Self, EventError> {
                if is_token(s, $max) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(EventError::BadToken { field: $field, max: $max })
                }
            }

            /// The token.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = EventError;
            fn try_from(s: String) -> Result<Self, EventError> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(t: $name) -> String {
                t.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

token_type!(
    /// One hash chain: usually the subject (`wallet:<id>`, `user:<id>`), so that unrelated
    /// subjects never wait for each other.
    StreamId,
    "stream",
    128
);
token_type!(
    /// An id of an actor or subject (a UUID, a key name).
    EntityId,
    "id",
    128
);
impl EntityId {
    /// The id of a UUID-named entity (a user, a wallet, a transaction). Infallible: a UUID's
    /// hyphenated form is always a token.
    #[must_use]
    pub fn from_uuid(id: &uuid::Uuid) -> Self {
        Self(id.hyphenated().to_string())
    }
}

token_type!(
    /// A short non-secret value: a currency, an error code, a route class.
    Code,
    "code",
    64
);

/// Who acted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Actor {
    /// A signed-in user.
    User(EntityId),
    /// A user acting with admin permissions.
    Admin(EntityId),
    /// A Coffer process (the worker, a CLI command).
    Service(EntityId),
    /// Nobody signed in (a failed login, a registration).
    Anonymous,
}

/// What was acted on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A wallet.
    Wallet(EntityId),
    /// A user.
    User(EntityId),
    /// A ledger transaction.
    Transaction(EntityId),
    /// A hold on a wallet's money.
    Hold(EntityId),
    /// A key (master key id, data key owner, secret name).
    Key(EntityId),
    /// The service as a whole (alerts, rate limits).
    System,
}

impl Actor {
    /// Storage form: kind and optional id.
    #[must_use]
    pub fn parts(&self) -> (&'static str, Option<&EntityId>) {
        match self {
            Self::User(id) => ("user", Some(id)),
            Self::Admin(id) => ("admin", Some(id)),
            Self::Service(id) => ("service", Some(id)),
            Self::Anonymous => ("anonymous", None),
        }
    }

    /// Parses the storage form.
    ///
    /// # Errors
    /// [`EventError`] for an unknown kind or bad id.
    pub fn from_parts(kind: &str, id: Option<&str>) -> Result<Self, EventError> {
        let id = || EntityId::parse(id.unwrap_or_default());
        Ok(match kind {
            "user" => Self::User(id()?),
            "admin" => Self::Admin(id()?),
            "service" => Self::Service(id()?),
            "anonymous" => Self::Anonymous,
            other => {
                return Err(EventError::Unknown {
                    field: "actor",
                    value: other.to_owned(),
                });
            }
        })
    }
}

impl Subject {
    /// Storage form: kind and optional id.
    #[must_use]
    pub fn parts(&self) -> (&'static str, Option<&EntityId>) {
        match self {
            Self::Wallet(id) => ("wallet", Some(id)),
            Self::User(id) => ("user", Some(id)),
            Self::Transaction(id) => ("transaction", Some(id)),
            Self::Hold(id) => ("hold", Some(id)),
            Self::Key(id) => ("key", Some(id)),
            Self::System => ("system", None),
        }
    }

    /// Parses the storage form.
    ///
    /// # Errors
    /// [`EventError`] for an unknown kind or bad id.
    pub fn from_parts(kind: &str, id: Option<&str>) -> Result<Self, EventError> {
        let id = || EntityId::parse(id.unwrap_or_default());
        Ok(match kind {
            "wallet" => Self::Wallet(id()?),
            "user" => Self::User(id()?),
            "transaction" => Self::Transaction(id()?),
            "hold" => Self::Hold(id()?),
            "key" => Self::Key(id()?),
            "system" => Self::System,
            other => {
                return Err(EventError::Unknown {
                    field: "subject",
                    value: other.to_owned(),
                });
            }
        })
    }

    /// The default stream of events about this subject.
    #[must_use]
    pub fn default_stream(&self) -> StreamId {
        let (kind, id) = self.parts();
        let s = match id {
            Some(id) => format!("{kind}:{id}"),
            None => kind.to_owned(),
        };
        // kind (ASCII letters) + ':' + a token of <= 128 chars may exceed 128: fall back to the
        // kind-level stream rather than fail.
        StreamId::parse(&s).unwrap_or_else(|_| StreamId(kind.to_owned()))
    }
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Done.
    Success,
    /// Refused by policy (permissions, rate limit, wrong PIN).
    Denied,
    /// Attempted and failed (insufficient funds, provider down).
    Failed,
}

impl Outcome {
    /// Storage name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Denied => "denied",
            Self::Failed => "failed",
        }
    }

    /// Parses the storage name.
    ///
    /// # Errors
    /// [`EventError::Unknown`].
    pub fn parse(s: &str) -> Result<Self, EventError> {
        match s {
            "success" => Ok(Self::Success),
            "denied" => Ok(Self::Denied),
            "failed" => Ok(Self::Failed),
            other => Err(EventError::Unknown {
                field: "outcome",
                value: other.to_owned(),
            }),
        }
    }
}

macro_rules! actions {
    ($($variant:ident => $name:literal),+ $(,)?) => {
        /// What happened. Stored by its dotted name, which never changes once released.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Action {
            $(
                #[doc = concat!("`", $name, "`")]
                $variant,
            )+
        }

        impl Action {
            /// Every action.
            pub const ALL: &'static [Action] = &[$(Action::$variant),+];

            /// The stored name.
            #[must_use]
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)+
                }
            }

            /// Parses a stored name.
            ///
            /// # Errors
            /// [`EventError::Unknown`].
            pub fn parse(s: &str) -> Result<Self, EventError> {
                match s {
                    $($name => Ok(Self::$variant),)+
                    other => Err(EventError::Unknown { field: "action", value: other.to_owned() }),
                }
            }
        }
    };
}

actions! {
    UserRegister => "user.register",
    UserLogin => "user.login",
    UserLoginFailed => "user.login_failed",
    UserLogout => "user.logout",
    UserPasswordChange => "user.password_change",
    UserPasswordResetIssued => "user.password_reset_issued",
    UserPasswordReset => "user.password_reset",
    UserMfaUpdate => "user.mfa_update",
    UserSessionRevoked => "user.session_revoked",
    UserRefreshReuseDetected => "user.refresh_reuse_detected",
    UserRolesChanged => "user.roles_changed",
    UserErased => "user.erased",
    ApiKeyCreated => "api_key.created",
    ApiKeyRevoked => "api_key.revoked",
    WalletCreate => "wallet.create",
    WalletFreeze => "wallet.freeze",
    WalletUnfreeze => "wallet.unfreeze",
    WalletClose => "wallet.close",
    WalletErased => "wallet.erased",
    WalletPinChanged => "wallet.pin_changed",
    WalletPinFailed => "wallet.pin_failed",
    WalletPinLocked => "wallet.pin_locked",
    WalletPinUnlocked => "wallet.pin_unlocked",
    WalletPinAttemptsReset => "wallet.pin_attempts_reset",
    WalletLimitsSet => "wallet.limits_set",
    TransactionDeposit => "transaction.deposit",
    TransactionWithdrawal => "transaction.withdrawal",
    TransactionTransfer => "transaction.transfer",
    TransactionReversal => "transaction.reversal",
    TransactionSweep => "transaction.sweep",
    HoldCreated => "hold.created",
    HoldCaptured => "hold.captured",
    HoldVoided => "hold.voided",
    HoldExpired => "hold.expired",
    TransactionFailed => "transaction.failed",
    KeyDataKeyCreated => "key.data_key_created",
    KeyKekRotated => "key.kek_rotated",
    KeyRotationStarted => "key.rotation_started",
    KeyRotationFinished => "key.rotation_finished",
    KeySecretRead => "key.secret_read",
    KeyAccessSummary => "key.access_summary",
    WebhookCreated => "webhook.created",
    WebhookUpdated => "webhook.updated",
    WebhookDeleted => "webhook.deleted",
    WebhookSecretRotated => "webhook.secret_rotated",
    WebhookDisabled => "webhook.disabled",
    SecurityRateLimited => "security.rate_limited",
    SecurityAlert => "security.alert",
}

/// A detail value. There is deliberately no free-text variant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetailValue {
    /// A number (amounts in minor units, counts).
    Int(i64),
    /// A flag.
    Bool(bool),
    /// A short non-secret token.
    Code(Code),
    /// HMAC-SHA256 of a value that must be correlatable but not readable, hex-encoded.
    Mac(MacHex),
}

/// 32 bytes as 64 lowercase hex characters.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MacHex([u8; 32]);

impl MacHex {
    /// The bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl TryFrom<String> for MacHex {
    type Error = EventError;
    fn try_from(s: String) -> Result<Self, EventError> {
        let bad = || EventError::BadToken {
            field: "mac",
            max: 64,
        };
        if s.len() != 64 {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (o, pair) in out.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
            let hex = std::str::from_utf8(pair).map_err(|_| bad())?;
            *o = u8::from_str_radix(hex, 16).map_err(|_| bad())?;
        }
        Ok(Self(out))
    }
}

impl From<MacHex> for String {
    fn from(m: MacHex) -> String {
        m.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for MacHex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, ..] = self.0;
        write!(f, "Mac({a:02x}{b:02x}{c:02x}{d:02x}…)")
    }
}

/// The structured details of an event: at most [`MAX_DETAILS`] entries, keys `[a-z0-9_]{1,32}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    try_from = "BTreeMap<String, DetailValue>",
    into = "BTreeMap<String, DetailValue>"
)]
pub struct Details(BTreeMap<String, DetailValue>);

impl Details {
    /// No details.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a detail.
    ///
    /// # Errors
    /// [`EventError::BadDetailKey`] or [`EventError::TooManyDetails`].
    pub fn insert(&mut self, key: &str, value: DetailValue) -> Result<(), EventError> {
        let key_ok = !key.is_empty()
            && key.len() <= 32
            && key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !key_ok {
            return Err(EventError::BadDetailKey);
        }
        if self.0.len() >= MAX_DETAILS && !self.0.contains_key(key) {
            return Err(EventError::TooManyDetails);
        }
        self.0.insert(key.to_owned(), value);
        Ok(())
    }

    /// A detail by key.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&DetailValue> {
        self.0.get(key)
    }

    /// The details in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &DetailValue)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The number of details.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl TryFrom<BTreeMap<String, DetailValue>> for Details {
    type Error = EventError;
    fn try_from(map: BTreeMap<String, DetailValue>) -> Result<Self, EventError> {
        let mut d = Self::new();
        for (k, v) in map {
            d.insert(&k, v)?;
        }
        Ok(d)
    }
}

impl From<Details> for BTreeMap<String, DetailValue> {
    fn from(d: Details) -> Self {
        d.0
    }
}

/// Microseconds since the Unix epoch.
#[must_use]
pub fn unix_micros(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_micros()).map_or(i64::MIN, |m| -m),
    }
}

/// One thing that happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// Which chain it joins.
    pub stream: StreamId,
    /// When, in microseconds since the Unix epoch.
    pub at_micros: i64,
    /// Who.
    pub actor: Actor,
    /// What.
    pub action: Action,
    /// On what.
    pub subject: Subject,
    /// How it ended.
    pub outcome: Outcome,
    /// The request that caused it.
    pub request_id: Option<Code>,
    /// Structured, non-secret details.
    pub details: Details,
}

tokio::task_local! {
    static REQUEST_ID: Code;
    static API_KEY: Code;
}

/// Runs `work` as part of request `id`: every [`AuditEvent::new`] inside it (in this task)
/// records the id, whichever service builds the event. The HTTP layer wraps each handler in it.
pub async fn in_request<F: std::future::Future>(id: Code, work: F) -> F::Output {
    REQUEST_ID.scope(id, work).await
}

/// Runs `work` on behalf of API key `id`: every [`AuditEvent::new`] inside it (in this task)
/// names the key in the detail `api_key`, whichever service builds the event. The HTTP layer
/// wraps each request that authenticates with a key in it.
pub async fn by_api_key<F: std::future::Future>(id: Code, work: F) -> F::Output {
    API_KEY.scope(id, work).await
}

/// The request id of the [`in_request`] scope this task runs in, if any.
#[must_use]
pub fn current_request_id() -> Option<Code> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

impl AuditEvent {
    /// An event happening now, on the subject's default stream, carrying the current request's
    /// id when built inside [`in_request`], and no details but the API key's when built inside
    /// [`by_api_key`].
    #[must_use]
    pub fn new(actor: Actor, action: Action, subject: Subject, outcome: Outcome) -> Self {
        Self {
            stream: subject.default_stream(),
            at_micros: unix_micros(SystemTime::now()),
            actor,
            action,
            subject,
            outcome,
            request_id: current_request_id(),
            details: API_KEY
                .try_with(|key| {
                    let mut details = Details::new();
                    let _ = details.insert("api_key", DetailValue::Code(key.clone()));
                    details
                })
                .unwrap_or_default(),
        }
    }

    /// Puts the event on another stream (a transfer goes on its source wallet's stream).
    #[must_use]
    pub fn on_stream(mut self, stream: StreamId) -> Self {
        self.stream = stream;
        self
    }

    /// Sets the time.
    #[must_use]
    pub fn at(mut self, at_micros: i64) -> Self {
        self.at_micros = at_micros;
        self
    }

    /// Sets the request id.
    #[must_use]
    pub fn request(mut self, request_id: Code) -> Self {
        self.request_id = Some(request_id);
        self
    }

    /// Adds a detail.
    ///
    /// # Errors
    /// As [`Details::insert`].
    pub fn detail(mut self, key: &str, value: DetailValue) -> Result<Self, EventError> {
        self.details.insert(key, value)?;
        Ok(self)
    }
}

/// Makes [`DetailValue::Mac`]s: HMAC-SHA256 under the audit key, domain-separated by what the
/// value is, the way Vault's audit devices hash strings.
#[derive(Debug, Clone)]
pub struct AuditHasher(HmacKey);

impl AuditHasher {
    /// Uses `key` (the audit key, or a key derived for this purpose).
    #[must_use]
    pub fn new(key: HmacKey) -> Self {
        Self(key)
    }

    /// The keyed hash of `value` as a `kind` (`"email"`, `"ip"`, `"token_id"`).
    #[must_use]
    pub fn hash(&self, kind: &str, value: &str) -> DetailValue {
        let len = u32::try_from(kind.len()).unwrap_or(u32::MAX).to_be_bytes();
        DetailValue::Mac(MacHex(self.0.mac(&[
            b"coffer.audit.value.v1",
            &len,
            kind.as_bytes(),
            value.as_bytes(),
        ])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn events_built_on_behalf_of_an_api_key_name_it() {
        let event = || {
            AuditEvent::new(
                Actor::Anonymous,
                Action::UserLogin,
                Subject::System,
                Outcome::Success,
            )
        };
        assert_eq!(event().details.len(), 0);
        let key = Code::parse("0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b").unwrap();
        let inside = by_api_key(key.clone(), async { event() }).await;
        assert_eq!(inside.details.get("api_key"), Some(&DetailValue::Code(key)));
        assert_eq!(
            event().details.get("api_key"),
            None,
            "only inside the scope"
        );
    }

    #[test]
    fn a_uuid_is_the_entity_id_its_text_parses_to() {
        let id = uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        let parsed = EntityId::parse("01234567-89ab-cdef-0123-456789abcdef");
        assert_eq!(Ok(EntityId::from_uuid(&id)), parsed);
    }

    #[test]
    fn tokens_refuse_free_text() {
        assert!(Code::parse("USD").is_ok());
        assert!(Code::parse("2001:db8::1").is_ok());
        for bad in [
            "",
            "ann@example.com",
            "two words",
            "x".repeat(65).as_str(),
            "ümlaut",
        ] {
            assert!(Code::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn actions_round_trip_by_name() {
        for a in Action::ALL {
            assert_eq!(Action::parse(a.as_str()).unwrap(), *a);
        }
        assert!(Action::parse("user.nope").is_err());
    }

    #[test]
    fn details_are_bounded_and_keys_checked() {
        let mut d = Details::new();
        assert_eq!(
            d.insert("Email", DetailValue::Int(1)),
            Err(EventError::BadDetailKey)
        );
        for i in 0..MAX_DETAILS {
            d.insert(&format!("k{i}"), DetailValue::Int(1)).unwrap();
        }
        assert_eq!(
            d.insert("extra", DetailValue::Int(1)),
            Err(EventError::TooManyDetails)
        );
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<Details>(&json).unwrap(), d);
    }

    #[test]
    fn hashed_values_correlate_without_revealing() {
        let h = AuditHasher::new(HmacKey::generate());
        let a = h.hash("email", "ann@example.com");
        assert_eq!(a, h.hash("email", "ann@example.com"));
        assert_ne!(a, h.hash("ip", "ann@example.com"));
        let json = serde_json::to_string(&a).unwrap();
        assert!(!json.contains("ann"));
        assert_eq!(serde_json::from_str::<DetailValue>(&json).unwrap(), a);
    }

    #[test]
    fn default_streams_follow_the_subject() {
        let w = Subject::Wallet(EntityId::parse("0190c3a2").unwrap());
        assert_eq!(w.default_stream().as_str(), "wallet:0190c3a2");
        assert_eq!(Subject::System.default_stream().as_str(), "system");
    }
}
