//! [`Guid`]: Dataverse's row identifier, carried across the WIT boundary as two
//! 64-bit halves so no malformed text can cross it.

use std::fmt;
use std::str::FromStr;

/// A GUID (Dataverse `uniqueidentifier`), printed lower-case with hyphens as
/// Dataverse writes it.
///
/// ```
/// use weft_sdk::Guid;
/// let id: Guid = "6d81597f-0f9f-e711-8122-000d3aa2331c".parse().unwrap();
/// assert_eq!(id.to_string(), "6d81597f-0f9f-e711-8122-000d3aa2331c");
/// assert!(Guid::NIL.is_nil());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Guid(u128);

impl Guid {
    /// The all-zero GUID.
    pub const NIL: Guid = Guid(0);

    /// Builds a GUID from its 128-bit big-endian value.
    ///
    /// ```
    /// # use weft_sdk::Guid;
    /// assert_eq!(Guid::from_u128(1).to_string(), "00000000-0000-0000-0000-000000000001");
    /// ```
    pub const fn from_u128(value: u128) -> Guid {
        Guid(value)
    }

    /// The 128-bit big-endian value.
    ///
    /// ```
    /// # use weft_sdk::Guid;
    /// assert_eq!(Guid::from_u128(7).as_u128(), 7);
    /// ```
    pub const fn as_u128(self) -> u128 {
        self.0
    }

    /// Builds a GUID from its two 64-bit halves (the WIT form).
    ///
    /// ```
    /// # use weft_sdk::Guid;
    /// assert_eq!(Guid::from_halves(0, 1), Guid::from_u128(1));
    /// ```
    pub const fn from_halves(hi: u64, lo: u64) -> Guid {
        Guid(((hi as u128) << 64) | lo as u128)
    }

    /// The two 64-bit halves (the WIT form).
    ///
    /// ```
    /// # use weft_sdk::Guid;
    /// assert_eq!(Guid::from_halves(3, 4).halves(), (3, 4));
    /// ```
    pub const fn halves(self) -> (u64, u64) {
        ((self.0 >> 64) as u64, self.0 as u64)
    }

    /// Whether this is the all-zero GUID.
    ///
    /// ```
    /// # use weft_sdk::Guid;
    /// assert!(!Guid::from_u128(1).is_nil());
    /// ```
    pub const fn is_nil(self) -> bool {
        self.0 == 0
    }
}

/// Why a text is not a GUID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseGuidError {
    /// Byte offset of the first offending character (or the length, when too short).
    pub offset: usize,
}

impl fmt::Display for ParseGuidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "not a GUID at byte {}: expected 8-4-4-4-12 hexadecimal digits such as \
             6d81597f-0f9f-e711-8122-000d3aa2331c",
            self.offset
        )
    }
}

impl std::error::Error for ParseGuidError {}

impl FromStr for Guid {
    type Err = ParseGuidError;

    /// Accepts the hyphenated form, optionally in braces, in either case.
    fn from_str(s: &str) -> Result<Guid, ParseGuidError> {
        let bytes = s.as_bytes();
        let (start, body) = match bytes.first() {
            Some(b'{') if bytes.last() == Some(&b'}') && bytes.len() > 1 => {
                (1, &bytes[1..bytes.len() - 1])
            }
            _ => (0, bytes),
        };
        let mut value: u128 = 0;
        let mut digits = 0;
        for (i, &b) in body.iter().enumerate() {
            if matches!(i, 8 | 13 | 18 | 23) {
                if b != b'-' {
                    return Err(ParseGuidError { offset: start + i });
                }
                continue;
            }
            let d = (b as char)
                .to_digit(16)
                .ok_or(ParseGuidError { offset: start + i })?;
            value = (value << 4) | d as u128;
            digits += 1;
        }
        if digits != 32 || body.len() != 36 {
            return Err(ParseGuidError {
                offset: start + body.len().min(36),
            });
        }
        Ok(Guid(value))
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            (v >> 96) as u32,
            (v >> 80) as u16,
            (v >> 64) as u16,
            (v >> 48) as u16,
            v & 0xffff_ffff_ffff
        )
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parsing and printing are inverse, in both cases and with braces.
    #[test]
    fn round_trips_text() {
        let text = "b374239d-4233-41a9-89aa-671ba512a488";
        let id: Guid = text.parse().unwrap();
        assert_eq!(id.to_string(), text);
        let upper: Guid = "{B374239D-4233-41A9-89AA-671BA512A488}".parse().unwrap();
        assert_eq!(upper, id);
        let (hi, lo) = id.halves();
        assert_eq!(Guid::from_halves(hi, lo), id);
        assert_eq!(hi, 0xb374_239d_4233_41a9);
    }

    /// Malformed text names the offending byte.
    #[test]
    fn rejects_malformed_text() {
        assert_eq!("".parse::<Guid>().unwrap_err().offset, 0);
        assert_eq!(
            "b374239d_4233-41a9-89aa-671ba512a488"
                .parse::<Guid>()
                .unwrap_err()
                .offset,
            8
        );
        assert_eq!(
            "b374239d-4233-41a9-89aa-671ba512a48"
                .parse::<Guid>()
                .unwrap_err()
                .offset,
            35
        );
        assert!(
            "b374239d-4233-41a9-89aa-671ba512a48z"
                .parse::<Guid>()
                .is_err()
        );
        assert!(
            "b374239d-4233-41a9-89aa-671ba512a4888"
                .parse::<Guid>()
                .is_err()
        );
    }
}
