//! Users' identifiers and personal data: parsed once into newtypes whose `Debug` keeps the
//! values out of logs. Phone numbers and tax ids, like emails, are stored only encrypted under
//! the user's data key.

use std::fmt;

use zeroize::Zeroizing;

pub use coffer_ids::UserId;

/// Why a phone number or tax id is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PersonalDataError {
    /// Not `+` and 8 to 15 digits (E.164), spaces, dots, dashes and parentheses aside.
    #[error("phone numbers are in international form: + and 8 to 15 digits")]
    Phone,
    /// Not 4 to 20 letters and digits, spaces, dots, dashes and slashes aside.
    #[error("tax ids are 4 to 20 letters and digits")]
    TaxId,
}

/// A phone number in E.164 form (`+` and digits). Zeroized on drop; `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct Phone(Zeroizing<String>);

impl Phone {
    /// Parses and normalises (`+44 20 7946-0958` → `+442079460958`).
    ///
    /// # Errors
    /// [`PersonalDataError::Phone`].
    pub fn parse(input: &str) -> Result<Self, PersonalDataError> {
        let input = input.trim();
        let rest = input.strip_prefix('+').ok_or(PersonalDataError::Phone)?;
        let mut out = Zeroizing::new(String::with_capacity(16));
        out.push('+');
        for c in rest.chars() {
            match c {
                '0'..='9' => out.push(c),
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => return Err(PersonalDataError::Phone),
            }
        }
        let digits = out.len() - 1;
        if !(8..=15).contains(&digits) || out.as_bytes().get(1) == Some(&b'0') {
            return Err(PersonalDataError::Phone);
        }
        Ok(Self(out))
    }

    /// The number, to be encrypted.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Phone([REDACTED])")
    }
}

/// A tax id, upper-cased, separators removed. Zeroized on drop; `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct TaxId(Zeroizing<String>);

impl TaxId {
    /// Parses and normalises (`de 123/456.789` → `DE123456789`).
    ///
    /// # Errors
    /// [`PersonalDataError::TaxId`].
    pub fn parse(input: &str) -> Result<Self, PersonalDataError> {
        let mut out = Zeroizing::new(String::with_capacity(input.len()));
        for c in input.trim().chars() {
            match c {
                'a'..='z' | 'A'..='Z' | '0'..='9' => out.push(c.to_ascii_uppercase()),
                ' ' | '-' | '.' | '/' => {}
                _ => return Err(PersonalDataError::TaxId),
            }
        }
        if !(4..=20).contains(&out.len()) {
            return Err(PersonalDataError::TaxId);
        }
        Ok(Self(out))
    }

    /// The id, to be encrypted.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TaxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TaxId([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_and_tax_ids_are_normalised_checked_and_redacted() {
        let p = Phone::parse(" +44 (20) 7946-0958 ").unwrap();
        assert_eq!(p.expose(), "+442079460958");
        assert_eq!(format!("{p:?}"), "Phone([REDACTED])");
        for bad in [
            "",
            "442079460958",
            "+44",
            "+0442079460958",
            "+44 20 ext 5",
            "+1234567890123456",
        ] {
            assert_eq!(Phone::parse(bad), Err(PersonalDataError::Phone), "{bad:?}");
        }
        let t = TaxId::parse("de 123/456.789").unwrap();
        assert_eq!(t.expose(), "DE123456789");
        assert_eq!(format!("{t:?}"), "TaxId([REDACTED])");
        for bad in ["", "12", "ab_cd_ef", "123456789012345678901"] {
            assert_eq!(TaxId::parse(bad), Err(PersonalDataError::TaxId), "{bad:?}");
        }
        let id = UserId::new();
        assert_eq!(UserId::parse(&id.to_string()), Ok(id));
        assert_eq!(UserId::parse("alice"), Err(coffer_ids::IdError("UserId")));
    }
}
