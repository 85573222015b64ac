//! The `admin` tag's API-key bodies: a key as listed (never its secret), a page of them, and a
//! created key with its secret, shown that once.

use coffer_auth::accounts::IssuedApiKey;
use coffer_auth::api_key::ApiKeyRecord;
use serde::Serialize;

use super::rfc3339_secs as secs;

/// An API key: what it may do and until when; never its secret.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiKey {
    id: String,
    /// The service account it acts as.
    user_id: String,
    name: String,
    /// Permission names; a request may do what both these and the owner's roles allow.
    permissions: Vec<String>,
    /// Its own budget; absent: the configured per-key policy.
    rate_limit_per_minute: Option<u32>,
    /// The administrator who created it.
    created_by: String,
    /// RFC 3339.
    created_at: String,
    /// RFC 3339.
    expires_at: String,
    /// RFC 3339; absent while it is not revoked.
    revoked_at: Option<String>,
}

impl From<&ApiKeyRecord> for ApiKey {
    fn from(k: &ApiKeyRecord) -> Self {
        Self {
            id: k.id.to_string(),
            user_id: k.user.to_string(),
            name: k.name.as_str().to_owned(),
            permissions: k
                .permissions
                .iter()
                .map(|p| p.as_str().to_owned())
                .collect(),
            rate_limit_per_minute: k.rate_per_minute,
            created_by: k.created_by.to_string(),
            created_at: secs(k.created_at),
            expires_at: secs(k.expires_at),
            revoked_at: k.revoked_at.map(secs),
        }
    }
}

/// A created API key: its secret, shown this once, and the key.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ApiKeyCreated {
    /// `ck_live_…`: hand it to the service, which sends it as `Authorization: Bearer` or
    /// `X-API-Key`. Only its hash is stored.
    secret: String,
    api_key: ApiKey,
}

impl std::fmt::Debug for ApiKeyCreated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyCreated")
            .field("api_key", &self.api_key)
            .finish_non_exhaustive()
    }
}

impl From<&IssuedApiKey> for ApiKeyCreated {
    fn from(issued: &IssuedApiKey) -> Self {
        Self {
            secret: issued.secret.expose().to_owned(),
            api_key: ApiKey::from(&issued.record),
        }
    }
}

/// A page of API keys, in id order (oldest first).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiKeys {
    items: Vec<ApiKey>,
    /// Pass as `cursor` for the next page; absent on the last.
    next_cursor: Option<String>,
}

impl ApiKeys {
    /// `keys`, a page of at most `limit`: a full page names its last id as the cursor.
    #[must_use]
    pub fn new(keys: &[ApiKeyRecord], limit: u32) -> Self {
        let full = usize::try_from(limit).is_ok_and(|l| keys.len() >= l);
        Self {
            items: keys.iter().map(ApiKey::from).collect(),
            next_cursor: keys.last().filter(|_| full).map(|k| k.id.to_string()),
        }
    }
}
