//! Result values and their wire encodings, text and binary, exactly as PostgreSQL sends them, so
//! that tokio-postgres decodes them into the same Rust types as against a real server
//! (`i64`, `bool`, `PgLsn`, `SystemTime`, `String`, `f64`).

use std::fmt::Write as _;

use bytes::{BufMut, BytesMut};
use pgwire::api::Type;
use pgwire::api::results::FieldFormat;
use pgwire::messages::data::DataRow;

/// Microseconds between the UNIX epoch and PostgreSQL's epoch (2000-01-01 00:00:00 UTC).
const PG_EPOCH_UNIX_US: i64 = 946_684_800_000_000;

const US_PER_DAY: i64 = 86_400_000_000;

/// The SQL type of a result column or parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SqlType {
    /// `boolean`.
    Bool,
    /// `bigint`.
    Int8,
    /// `pg_lsn`.
    PgLsn,
    /// `timestamp with time zone`.
    Timestamptz,
    /// `numeric` (integers only here).
    Numeric,
    /// `double precision`.
    Float8,
    /// `text`.
    Text,
}

impl SqlType {
    /// The PostgreSQL type (and so its OID on the wire).
    pub(crate) fn pg_type(self) -> Type {
        match self {
            SqlType::Bool => Type::BOOL,
            SqlType::Int8 => Type::INT8,
            SqlType::PgLsn => Type::PG_LSN,
            SqlType::Timestamptz => Type::TIMESTAMPTZ,
            SqlType::Numeric => Type::NUMERIC,
            SqlType::Float8 => Type::FLOAT8,
            SqlType::Text => Type::TEXT,
        }
    }

    /// `pg_type.typlen`: the fixed width in bytes, or -1 for variable-width types.
    pub(crate) fn type_size(self) -> i16 {
        match self {
            SqlType::Bool => 1,
            SqlType::Int8 | SqlType::PgLsn | SqlType::Timestamptz | SqlType::Float8 => 8,
            SqlType::Numeric | SqlType::Text => -1,
        }
    }
}

/// One result value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    /// SQL NULL, of any type.
    Null,
    /// A `boolean`.
    Bool(bool),
    /// A `bigint`.
    Int8(i64),
    /// A `pg_lsn`.
    Lsn(u64),
    /// A `timestamptz`, in microseconds since the UNIX epoch.
    Timestamp(i64),
    /// A `numeric` with no fractional digits.
    Numeric(i128),
    /// A `double precision`.
    Float8(f64),
    /// A `text`.
    Text(String),
}

impl Value {
    /// Appends the value as one DataRow field: a 4-byte length (-1 for NULL) and the bytes.
    pub(crate) fn encode(&self, format: FieldFormat, out: &mut BytesMut) {
        let length_at = out.len();
        out.put_i32(-1);
        if matches!(self, Value::Null) {
            return;
        }
        let start = out.len();
        match format {
            FieldFormat::Text => self.encode_text(out),
            FieldFormat::Binary => self.encode_binary(out),
        }
        let length = i32::try_from(out.len() - start).unwrap_or(i32::MAX);
        out[length_at..length_at + 4].copy_from_slice(&length.to_be_bytes());
    }

    /// The value in PostgreSQL's text output format (`None` for NULL).
    pub(crate) fn to_text(&self) -> Option<String> {
        if matches!(self, Value::Null) {
            return None;
        }
        let mut out = BytesMut::new();
        self.encode_text(&mut out);
        Some(String::from_utf8_lossy(&out).into_owned())
    }

    fn encode_text(&self, out: &mut BytesMut) {
        let mut text = String::new();
        match self {
            Value::Null => return,
            Value::Bool(b) => text.push(if *b { 't' } else { 'f' }),
            Value::Int8(v) => {
                let _ = write!(text, "{v}");
            }
            Value::Lsn(lsn) => text = format_lsn(*lsn),
            Value::Timestamp(us) => format_timestamp(*us, &mut text),
            Value::Numeric(v) => {
                let _ = write!(text, "{v}");
            }
            Value::Float8(v) => format_float(*v, &mut text),
            Value::Text(s) => text.push_str(s),
        }
        out.put_slice(text.as_bytes());
    }

    fn encode_binary(&self, out: &mut BytesMut) {
        match self {
            Value::Null => {}
            Value::Bool(b) => out.put_u8(u8::from(*b)),
            Value::Int8(v) => out.put_i64(*v),
            Value::Lsn(lsn) => out.put_u64(*lsn),
            Value::Timestamp(us) => out.put_i64(us.saturating_sub(PG_EPOCH_UNIX_US)),
            Value::Numeric(v) => encode_numeric_binary(*v, out),
            Value::Float8(v) => out.put_f64(*v),
            Value::Text(s) => out.put_slice(s.as_bytes()),
        }
    }
}

/// Encodes one row in the given per-column formats.
pub(crate) fn encode_row(values: &[Value], formats: &[FieldFormat]) -> DataRow {
    let mut out = BytesMut::with_capacity(16 * values.len());
    for (value, format) in values.iter().zip(formats) {
        value.encode(*format, &mut out);
    }
    DataRow::new(out, i16::try_from(values.len()).unwrap_or(i16::MAX))
}

/// PostgreSQL's text form of an LSN: two upper-case hex halves, `16/B374D848`.
pub(crate) fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// Parses PostgreSQL's text form of an LSN (`16/B374D848`).
pub(crate) fn parse_lsn(text: &str) -> Option<u64> {
    let (high, low) = text.trim().split_once('/')?;
    if high.is_empty() || low.is_empty() || high.len() > 8 || low.len() > 8 {
        return None;
    }
    let high = u64::from_str_radix(high, 16).ok()?;
    let low = u64::from_str_radix(low, 16).ok()?;
    Some((high << 32) | low)
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]+00`, PostgreSQL's ISO output in the UTC time zone.
fn format_timestamp(unix_us: i64, out: &mut String) {
    let days = unix_us.div_euclid(US_PER_DAY);
    let in_day = unix_us.rem_euclid(US_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let seconds = in_day / 1_000_000;
    let fraction = in_day % 1_000_000;
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    );
    if fraction != 0 {
        let digits = format!("{fraction:06}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    out.push_str("+00");
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn format_float(v: f64, out: &mut String) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "Infinity" } else { "-Infinity" });
    } else {
        let _ = write!(out, "{v}");
    }
}

/// The binary `numeric` format: digit count, weight, sign, display scale, then base-10000 digits
/// from the most significant, trailing zero digits omitted.
fn encode_numeric_binary(v: i128, out: &mut BytesMut) {
    const NUMERIC_POS: u16 = 0x0000;
    const NUMERIC_NEG: u16 = 0x4000;
    let mut magnitude = v.unsigned_abs();
    let mut groups: Vec<i16> = Vec::with_capacity(10);
    while magnitude > 0 {
        // A base-10000 digit always fits an i16.
        groups.push((magnitude % 10_000) as i16);
        magnitude /= 10_000;
    }
    let weight = i16::try_from(groups.len())
        .unwrap_or(i16::MAX)
        .saturating_sub(1)
        .max(0);
    let trailing_zeros = groups.iter().take_while(|g| **g == 0).count();
    let digits = &groups[trailing_zeros..];
    out.put_i16(i16::try_from(digits.len()).unwrap_or(i16::MAX));
    out.put_i16(weight);
    out.put_u16(if v < 0 { NUMERIC_NEG } else { NUMERIC_POS });
    out.put_u16(0);
    for digit in digits.iter().rev() {
        out.put_i16(*digit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_text_round_trips() {
        assert_eq!(format_lsn(0x16_B374_D848), "16/B374D848");
        assert_eq!(parse_lsn("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(parse_lsn("0/3000000"), Some(0x0300_0000));
        assert_eq!(parse_lsn("x/1"), None);
        assert_eq!(parse_lsn("1"), None);
    }

    #[test]
    fn timestamps_print_like_postgres() {
        let mut out = String::new();
        format_timestamp(1_700_000_000_123_450, &mut out);
        assert_eq!(out, "2023-11-14 22:13:20.12345+00");
        out.clear();
        format_timestamp(951_782_400_000_000, &mut out);
        assert_eq!(out, "2000-02-29 00:00:00+00");
    }

    #[test]
    fn numeric_binary_matches_postgres_layout() {
        let mut out = BytesMut::new();
        encode_numeric_binary(1_2345_0000, &mut out);
        // ndigits 2 (1, 2345), weight 2, positive, dscale 0.
        assert_eq!(&out[..], &[0, 2, 0, 2, 0, 0, 0, 0, 0, 1, 0x09, 0x29]);
        out.clear();
        encode_numeric_binary(-5, &mut out);
        assert_eq!(&out[..], &[0, 1, 0, 0, 0x40, 0, 0, 0, 0, 5]);
        out.clear();
        encode_numeric_binary(0, &mut out);
        assert_eq!(&out[..], &[0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn null_is_length_minus_one() {
        let mut out = BytesMut::new();
        Value::Null.encode(FieldFormat::Binary, &mut out);
        assert_eq!(&out[..], &(-1i32).to_be_bytes());
    }
}
