//! Where events go: a [`Sink`] is a webhook endpoint (and, later, a stream), with the event
//! kinds it wants and whether it is enabled. Its signing secret is not here: it lives in the
//! secrets manager ([`crate::secrets`]).

use coffer_ledger::domain::EventKind;

coffer_ids::id_type!(
    /// A sink's id (a webhook endpoint's).
    SinkId
);

/// The longest URL an endpoint may have.
pub const MAX_URL_LEN: usize = 2048;

/// A webhook endpoint's URL: absolute, `https` (or `http` where the deployment allows it), with
/// a host, and without credentials or a fragment.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl(url::Url);

coffer_macros::debug_non_exhaustive!(self => WebhookUrl { origin: self.redacted() });

/// Why a URL is refused (each a stable code for the API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// Not an absolute URL, or too long.
    #[error("the endpoint URL is not a valid absolute URL")]
    Malformed,
    /// Not https (http only where allowed).
    #[error("the endpoint URL must use https")]
    Scheme,
    /// It names a user or password: credentials belong in the signature, not the URL.
    #[error("the endpoint URL must not carry credentials")]
    Credentials,
}

impl UrlError {
    /// The stable code.
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            Self::Malformed => "invalid_url",
            Self::Scheme => "url_scheme_not_allowed",
            Self::Credentials => "url_credentials_not_allowed",
        }
    }
}

impl WebhookUrl {
    /// Parses an endpoint's URL; `allow_http` lets plain `http` through.
    ///
    /// # Errors
    /// [`UrlError`].
    pub fn parse(text: &str, allow_http: bool) -> Result<Self, UrlError> {
        if text.len() > MAX_URL_LEN {
            return Err(UrlError::Malformed);
        }
        let url = url::Url::parse(text).map_err(|_| UrlError::Malformed)?;
        match url.scheme() {
            "https" => {}
            "http" if allow_http => {}
            _ => return Err(UrlError::Scheme),
        }
        if url.host().is_none() || url.fragment().is_some() {
            return Err(UrlError::Malformed);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UrlError::Credentials);
        }
        Ok(Self(url))
    }

    /// The URL.
    #[must_use]
    pub fn as_url(&self) -> &url::Url {
        &self.0
    }

    /// Its text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// Scheme, host and port only: what logs may show (a path or query can carry a token).
    #[must_use]
    pub fn redacted(&self) -> String {
        self.0.origin().ascii_serialization()
    }
}

/// Where a sink delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An HTTP endpoint, signed with Standard Webhooks.
    Webhook(WebhookUrl),
    /// A NATS JetStream stream (configured, not registered through the API): each event is
    /// published on `<subject prefix>.<wallet id>`.
    Stream(SubjectPrefix),
}

/// A NATS subject prefix: dot-separated tokens of letters, digits, `-` and `_` (no wildcards,
/// no spaces), at most 128 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectPrefix(String);

impl SubjectPrefix {
    /// Parses a prefix.
    ///
    /// # Errors
    /// The text back, when it is not one.
    pub fn parse(text: &str) -> Result<Self, String> {
        let token_ok = |t: &str| {
            !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        };
        if text.len() <= 128 && text.split('.').all(token_ok) {
            Ok(Self(text.to_owned()))
        } else {
            Err(text.to_owned())
        }
    }

    /// The prefix.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A sink: a webhook endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sink {
    /// Its id.
    pub id: SinkId,
    /// Where it delivers.
    pub target: Target,
    /// The kinds it wants; empty: every kind.
    pub kinds: Vec<EventKind>,
    /// Whether events are delivered to it now. A disabled sink's cursors keep their place: the
    /// events that happen while it is disabled wait for it (within the outbox's retention).
    pub enabled: bool,
    /// When it was registered (µs): it receives the events from then on.
    pub created_at: i64,
    /// Failed attempts since its last delivered one.
    pub failures: u32,
    /// When it was disabled for failing (µs); `None` when enabled or disabled by hand.
    pub disabled_at: Option<i64>,
    /// Its signing secret's active version in the secrets manager.
    pub secret_version: u32,
    /// Until when (µs) the version before it signs too, after a rotation.
    pub previous_secret_until: Option<i64>,
}

impl Sink {
    /// A new enabled sink, registered at `now`.
    #[must_use]
    pub fn new(target: Target, kinds: Vec<EventKind>, now: i64) -> Self {
        Self {
            id: SinkId::new(),
            target,
            kinds,
            enabled: true,
            created_at: now,
            failures: 0,
            disabled_at: None,
            secret_version: 1,
            previous_secret_until: None,
        }
    }

    /// The sink of the JetStream stream `stream`, publishing under `prefix`: its id is the
    /// stream's name hashed (UUID v5), so every process that has the stream configured names
    /// the same sink.
    #[must_use]
    pub fn stream(stream: &str, prefix: SubjectPrefix, now: i64) -> Self {
        let id = uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_URL,
            format!("coffer:nats-stream:{stream}").as_bytes(),
        );
        Self {
            id: SinkId::from_uuid(id),
            ..Self::new(Target::Stream(prefix), Vec::new(), now)
        }
    }

    /// Its URL, when it is a webhook endpoint.
    #[must_use]
    pub fn webhook_url(&self) -> Option<&WebhookUrl> {
        match &self.target {
            Target::Webhook(url) => Some(url),
            Target::Stream(_) => None,
        }
    }

    /// Whether it wants events of `kind`.
    #[must_use]
    pub fn wants(&self, kind: EventKind) -> bool {
        self.kinds.is_empty() || self.kinds.contains(&kind)
    }

    /// Its kinds as stored: comma-separated names, empty for every kind.
    #[must_use]
    pub fn kinds_text(&self) -> String {
        self.kinds
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Parses [`Sink::kinds_text`].
    ///
    /// # Errors
    /// The first name that is no kind.
    pub fn parse_kinds(text: &str) -> Result<Vec<EventKind>, String> {
        text.split(',')
            .filter(|s| !s.is_empty())
            .map(|s| EventKind::parse(s).ok_or_else(|| s.to_owned()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn urls_are_https_absolute_and_without_credentials() {
        let ok = WebhookUrl::parse("https://hooks.example.com:8443/in?t=secret", false).unwrap();
        assert_eq!(ok.redacted(), "https://hooks.example.com:8443");
        assert!(!format!("{ok:?}").contains("secret"));
        assert_eq!(
            WebhookUrl::parse("http://hooks.example.com/", false),
            Err(UrlError::Scheme)
        );
        assert!(WebhookUrl::parse("http://hooks.example.com/", true).is_ok());
        assert_eq!(
            WebhookUrl::parse("ftp://hooks.example.com/", true),
            Err(UrlError::Scheme)
        );
        assert_eq!(
            WebhookUrl::parse("https://u:p@hooks.example.com/", false),
            Err(UrlError::Credentials)
        );
        for bad in [
            "/relative",
            "https://",
            "https://h.example/#frag",
            "not a url",
        ] {
            assert_eq!(
                WebhookUrl::parse(bad, true),
                Err(UrlError::Malformed),
                "{bad}"
            );
        }
        let long = format!("https://h.example/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(WebhookUrl::parse(&long, false), Err(UrlError::Malformed));
    }

    #[test]
    fn subject_prefixes_are_dotted_plain_tokens() {
        assert!(SubjectPrefix::parse("coffer.events").is_ok());
        assert!(SubjectPrefix::parse("a-b_c.d1").is_ok());
        for bad in ["", "a..b", "a.*", "a.>", "a b", ".a", "a."] {
            assert!(SubjectPrefix::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn kinds_round_trip_and_empty_means_every_kind() {
        let url = WebhookUrl::parse("https://h.example/", false).unwrap();
        let mut sink = Sink::new(Target::Webhook(url), vec![], 1);
        assert!(EventKind::ALL.iter().all(|k| sink.wants(*k)));
        sink.kinds = vec![EventKind::TransactionPosted, EventKind::HoldCreated];
        let text = sink.kinds_text();
        assert_eq!(Sink::parse_kinds(&text).unwrap(), sink.kinds);
        assert!(sink.wants(EventKind::HoldCreated));
        assert!(!sink.wants(EventKind::WalletOpened));
        assert_eq!(Sink::parse_kinds("").unwrap(), vec![]);
        assert_eq!(Sink::parse_kinds("nope"), Err("nope".to_owned()));
    }
}
