//! Password-reset tokens: what an administrator hands a user who cannot log in (a forgotten
//! password), through a channel of the operator's choosing. One opaque token per user at a time
//! (a new one replaces the pending one), valid for a configured number of hours, redeemed once
//! for a new password; the store keeps only its hash. The flow is in
//! [`crate::accounts`]'s `reset` module.

use crate::opaque::{OpaqueToken, TokenHash, TokenKind};
use crate::user::UserId;

/// The prefix of Coffer password-reset tokens.
pub const PREFIX: &str = "cpr1_";

/// The password-reset kind of opaque token.
#[derive(Debug)]
pub enum Reset {}

impl TokenKind for Reset {
    const PREFIX: &'static str = PREFIX;
    const NAME: &'static str = "ResetToken";
}

/// A password-reset token as its holder has it. Zeroized on drop; `Debug` prints nothing of it.
pub type ResetToken = OpaqueToken<Reset>;

/// A pending password reset as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetRecord {
    /// Its token's hash.
    pub hash: TokenHash,
    /// Whose password it resets.
    pub user: UserId,
    /// The administrator who issued it.
    pub issued_by: UserId,
    /// When it stops working, seconds since the epoch.
    pub expires_at: u64,
}
