//! The identifiers several domain crates share. A user is one [`UserId`] everywhere: the
//! accounts' user (`coffer_auth::user::UserId`), the ledger's wallet owner and actor
//! (`coffer_ledger::UserId`) and the audit log's actor are the same value of the same type, so
//! nothing converts between them.
//!
//! Ids are UUIDs: new ones are version 7 (ordered by creation); the text form is the hyphenated
//! one, in `Display` and `Debug` alike.
//!
//! A client is known by its network ([`client_network`]): the rate limits' per-address budgets
//! and the per-address failed-login alert both count by it.

use std::net::{IpAddr, Ipv6Addr};

/// The key of a client's network: an IPv4 address (also one mapped into IPv6) as itself
/// (`ip:192.0.2.1`), an IPv6 address by its /64 (`ip64:2001:db8:1:2::`). One subscriber usually
/// holds a whole /64; keying single addresses would give it 2^64 budgets. The key is a token
/// the audit log stores as it is.
#[must_use]
pub fn client_network(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("ip:{v4}"),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("ip:{v4}"),
            None => format!(
                "ip64:{}",
                Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))
            ),
        },
    }
}

/// A string that is not an id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid {0} (a UUID)")]
pub struct IdError(pub &'static str);

#[doc(hidden)]
pub use uuid::Uuid;

/// Defines a UUID id type: `new` (UUID v7), `parse` (the hyphenated form, else [`IdError`]),
/// `from_uuid`, `as_uuid`, and `Display`/`Debug` as the hyphenated form. The ledger's wallet and
/// transaction ids are made with it too.
#[macro_export]
macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name($crate::Uuid);

        impl $name {
            /// A new, time-ordered id (UUID v7).
            #[must_use]
            pub fn new() -> Self {
                Self($crate::Uuid::now_v7())
            }

            /// Parses the hyphenated form.
            ///
            /// # Errors
            /// [`IdError`]($crate::IdError) for anything else.
            pub fn parse(s: &str) -> Result<Self, $crate::IdError> {
                $crate::Uuid::try_parse(s)
                    .map(Self)
                    .map_err(|_| $crate::IdError(stringify!($name)))
            }

            /// From a stored or presented UUID.
            #[must_use]
            pub fn from_uuid(u: $crate::Uuid) -> Self {
                Self(u)
            }

            /// The UUID.
            #[must_use]
            pub fn as_uuid(&self) -> &$crate::Uuid {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }
    };
}

id_type!(
    /// A user's id (a UUID; the `sub` of their tokens, the owner of their wallets).
    UserId
);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_text_form_round_trips_and_nothing_else_parses() {
        let id = UserId::new();
        assert_eq!(UserId::parse(&id.to_string()).unwrap(), id);
        assert_eq!(format!("{id:?}"), format!("UserId({id})"));
        for bad in ["", "not-a-uuid", "0123"] {
            assert_eq!(UserId::parse(bad), Err(IdError("UserId")));
        }
    }
}
