//! A position in the write-ahead log (`pg_lsn`): what lag probes compare and what causal tokens
//! carry. Written as PostgreSQL writes it, two hexadecimal halves: `0/16B3748`.

use std::fmt;
use std::str::FromStr;

use tokio_postgres::types::PgLsn;

/// A WAL position in bytes. Ordered: a larger one includes every change of a smaller one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    /// Bytes from `earlier` to `self`; 0 if `earlier` is not earlier.
    pub fn bytes_after(self, earlier: Lsn) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl From<PgLsn> for Lsn {
    fn from(lsn: PgLsn) -> Lsn {
        Lsn(u64::from(lsn))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// Why a text is not an LSN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("an LSN is two hexadecimal numbers of at most 8 digits separated by '/', like 0/16B3748")]
pub struct ParseLsnError;

impl FromStr for Lsn {
    type Err = ParseLsnError;

    fn from_str(text: &str) -> Result<Lsn, ParseLsnError> {
        let (high, low) = text.split_once('/').ok_or(ParseLsnError)?;
        let half = |part: &str| {
            let valid =
                (1..=8).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_hexdigit());
            if valid {
                u32::from_str_radix(part, 16).map_err(|_| ParseLsnError)
            } else {
                Err(ParseLsnError)
            }
        };
        Ok(Lsn(u64::from(half(high)?) << 32 | u64::from(half(low)?)))
    }
}

impl serde::Serialize for Lsn {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Lsn {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Lsn, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_in_postgres_notation() {
        for (value, text) in [
            (0, "0/0"),
            (0x16B_3748, "0/16B3748"),
            (0x1_0000_0000, "1/0"),
            (u64::MAX, "FFFFFFFF/FFFFFFFF"),
        ] {
            assert_eq!(Lsn(value).to_string(), text);
            assert_eq!(text.parse::<Lsn>(), Ok(Lsn(value)));
        }
        assert_eq!("a/bc".parse::<Lsn>(), Ok(Lsn(0xA_0000_00BC)));
    }

    #[test]
    fn malformed_text_is_refused() {
        for text in [
            "",
            "0",
            "/1",
            "1/",
            "0/1/2",
            "0/G",
            "-1/0",
            "0/+1",
            "123456789/0",
            " 0/1",
        ] {
            assert_eq!(text.parse::<Lsn>(), Err(ParseLsnError), "{text:?}");
        }
    }

    #[test]
    fn order_and_distance_follow_the_position() {
        let (a, b) = (Lsn(0x1_0000_0000), Lsn(0xFFFF_FFFF));
        assert!(b < a);
        assert_eq!(a.bytes_after(b), 1);
        assert_eq!(b.bytes_after(a), 0);
    }

    #[test]
    fn serde_uses_the_text_form() {
        let json = serde_json::to_string(&Lsn(0x16B_3748)).unwrap_or_default();
        assert_eq!(json, "\"0/16B3748\"");
        let back: Result<Lsn, _> = serde_json::from_str(&json);
        assert_eq!(back.ok(), Some(Lsn(0x16B_3748)));
        assert!(serde_json::from_str::<Lsn>("\"zz\"").is_err());
    }
}
