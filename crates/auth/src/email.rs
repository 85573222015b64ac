//! Email addresses: parsed and normalised once, found again by a blind index (the address
//! itself is stored only encrypted).

use std::fmt;

use coffer_crypto::{BlindIndex, HmacKey, blind_index};

/// Why an address is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    /// Not `local@domain` with a dotted domain, or over 254 characters.
    #[error("not a valid email address")]
    Invalid,
}

/// A normalised email address: trimmed, lower-cased, `local@domain.tld`. `Debug` and
/// `Display` keep only the domain: addresses are personal data.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

/// The blind-index domain of email addresses.
pub const EMAIL_INDEX_DOMAIN: &str = "user.email";

impl Email {
    /// Parses and normalises.
    ///
    /// # Errors
    /// [`EmailError::Invalid`].
    pub fn parse(input: &str) -> Result<Self, EmailError> {
        let s = input.trim().to_lowercase();
        if s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(EmailError::Invalid);
        }
        let (local, domain) = s.rsplit_once('@').ok_or(EmailError::Invalid)?;
        let labels_ok = domain.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
        if local.is_empty()
            || local.len() > 64
            || local.contains('@')
            || local.starts_with('.')
            || local.ends_with('.')
            || local.contains("..")
            || !domain.contains('.')
            || !labels_ok
        {
            return Err(EmailError::Invalid);
        }
        Ok(Self(s))
    }

    /// The normalised address (to be encrypted, never logged).
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The domain part.
    #[must_use]
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(_, d)| d)
    }

    /// The blind index a login looks the user up by.
    #[must_use]
    pub fn blind_index(&self, key: &HmacKey) -> BlindIndex {
        blind_index(key, EMAIL_INDEX_DOMAIN, &self.0)
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Email(…@{})", self.domain())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_normalised_and_checked() {
        let e = Email::parse("  Alice.Smith@Example.COM ").unwrap();
        assert_eq!(e.expose(), "alice.smith@example.com");
        assert_eq!(format!("{e:?}"), "Email(…@example.com)");
        for bad in [
            "",
            "alice",
            "@example.com",
            "alice@",
            "alice@example",
            "al ice@example.com",
            "alice@@example.com",
            ".alice@example.com",
            "al..ice@example.com",
            "alice@-example.com",
            "alice@exa_mple.com",
        ] {
            assert_eq!(Email::parse(bad), Err(EmailError::Invalid), "{bad:?}");
        }
        let key = HmacKey::generate();
        assert_eq!(
            Email::parse("BOB@example.com").unwrap().blind_index(&key),
            Email::parse("bob@example.com ").unwrap().blind_index(&key),
            "one index for every spelling of an address"
        );
    }
}
