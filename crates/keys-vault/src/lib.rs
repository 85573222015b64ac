//! The key port on HashiCorp Vault or OpenBao, in two modes:
//!
//! - [`VaultKvProvider`] (`vault-kv`): master keys live in KV v2 and are read into process
//!   memory; data keys are wrapped locally. One round trip per refresh, none per data key.
//! - [`VaultTransitProvider`] (`vault-transit`): the master key never leaves Vault; every
//!   generate, unwrap and rewrap is a Transit call (the unwrap cache in front keeps that rare).
//!
//! Both authenticate with a token, userpass or AppRole ([`VaultAuth`]), renew the token at two
//! thirds of its lifetime and log in again when renewal fails or Vault refuses a revoked token.
//! Every request has a timeout. Errors are the port's: no answer is `Unavailable`, a refused
//! login or a policy that does not allow the call is `Denied`.
//!
//! [`provision`] sets a fresh Vault up for Coffer (mounts, the Transit key, the KV master key,
//! the policies of `deploy/vault/`, userpass users); `cargo xtask vault-setup` runs it.
//!
//! The session ([`VaultConnection`], `session.rs`) logs in at connect, so bad credentials or an
//! unreachable server stop start-up. A background task renews the token, so an idle process
//! keeps it. After a 401 or 403 it logs in again only when `lookup-self` shows the token is gone
//! (a policy refusal keeps the token), once for all concurrent callers. A token given to the
//! process is renewed but cannot be obtained again. TLS verification is set explicitly, so
//! `VAULT_SKIP_VERIFY` and `VAULT_CACERT` change nothing. The timeout is 5 s per request by
//! default.

pub mod kv;
pub mod provision;
mod session;
pub mod transit;

use coffer_keys::KeyError;

pub use kv::{KvSettings, VaultKvProvider};
pub use session::{VaultAuth, VaultConnection};
pub use transit::{TransitSettings, VaultTransitProvider};

use session::CallError;

/// Whether a 400's messages are a refused login (userpass, AppRole).
fn is_login_refusal(errors: &[String]) -> bool {
    errors.iter().any(|m| {
        m.contains("invalid username or password")
            || m.contains("invalid role or secret ID")
            || m.contains("invalid secret id")
    })
}

/// Names a failed call in the key port's terms.
fn key_error(provider: &str, key_id: &str, e: CallError) -> KeyError {
    let reason = e.message();
    match e {
        CallError::Status {
            code: 401 | 403, ..
        } => KeyError::Denied {
            provider: provider.into(),
            reason,
        },
        CallError::Status { code: 404, .. } => KeyError::NotFound {
            key_id: key_id.into(),
            version: None,
        },
        // Sealed, standby, rate limited, overloaded: try again later.
        CallError::Status {
            code: 429 | 500..=599,
            ..
        }
        | CallError::Unreachable(_) => KeyError::Unavailable {
            provider: provider.into(),
            reason,
        },
        // userpass and AppRole answer a wrong password or secret id with 400.
        CallError::Status {
            code: 400,
            ref errors,
        } if errors.iter().any(|m| {
            m.contains("invalid username or password")
                || m.contains("invalid role or secret ID")
                || m.contains("invalid secret id")
        }) =>
        {
            KeyError::Denied {
                provider: provider.into(),
                reason,
            }
        }
        CallError::Status { .. } | CallError::Config(_) | CallError::Other(_) => {
            KeyError::Other(format!("{provider}: {reason}").into())
        }
    }
}
