//! Resource quantities (`500m`, `1.5Gi`, `2e3`), parsed as apimachinery's
//! `resource.Quantity` parses them. k8s-openapi keeps a quantity as the string a
//! user wrote; [`parse_quantity`] turns it into an exact value that compares and adds,
//! and [`Quantity`]'s `Display` prints the API server's canonical form (`0.5` → `500m`,
//! `1024Mi` → `1Gi`), which is what its error messages show.
//!
//! The value is held in nano-units in an `i128`: every quantity Kubernetes can
//! express to nano precision up to about ±1.7e29 is exact. Digits below a nano are
//! rounded away from zero, as the API server rounds them. Larger magnitudes are
//! refused rather than rounded.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity as OpenApiQuantity;

/// The message the API server gives for a string that is not a quantity.
pub const QUANTITY_FORMAT_ERROR: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

const NANOS_PER_UNIT: i128 = 1_000_000_000;

/// How a quantity was written, which decides how it is printed back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// Decimal SI suffixes: `n`, `u`, `m`, none, `k`, `M`, `G`, `T`, `P`, `E`.
    DecimalSi,
    /// Binary SI suffixes: `Ki`, `Mi`, `Gi`, `Ti`, `Pi`, `Ei`.
    BinarySi,
    /// A decimal exponent: `1e3`, `5E-3`.
    DecimalExponent,
}

/// Why a string is not a quantity.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuantityError {
    /// The text does not follow the quantity grammar.
    #[error("{QUANTITY_FORMAT_ERROR}")]
    Format,
    /// The text is a quantity, but too large to hold exactly.
    #[error("quantity is too large")]
    TooLarge,
}

/// An exact resource quantity. Equality and order compare values, not spelling:
/// `1Ki == 1024` and `500m < 1`.
#[derive(Clone, Copy, Debug)]
pub struct Quantity {
    nanos: i128,
    format: Format,
}

/// Parses a quantity as the API server does (surrounding whitespace is ignored, as
/// when a quantity is decoded from JSON). `None` if it is not one.
pub fn parse_quantity(s: &str) -> Option<Quantity> {
    s.parse().ok()
}

impl Quantity {
    /// A quantity of `nanos` billionths, printed in `format`.
    pub fn from_nanos(nanos: i128, format: Format) -> Self {
        Quantity { nanos, format }
    }

    /// The zero quantity.
    pub fn zero() -> Self {
        Quantity::from_nanos(0, Format::DecimalSi)
    }

    /// The value in billionths (`1` → 1_000_000_000, `1m` → 1_000_000).
    pub fn as_nanos(&self) -> i128 {
        self.nanos
    }

    /// The value in thousandths, rounded up (`MilliValue()`): `1` → 1000, `1n` → 1.
    pub fn milli_value(&self) -> i128 {
        div_ceil(self.nanos, 1_000_000)
    }

    /// The value in whole units, rounded up (`Value()`): `1500m` → 2, `1Ki` → 1024.
    pub fn value(&self) -> i128 {
        div_ceil(self.nanos, NANOS_PER_UNIT)
    }

    /// How the quantity was written.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Whether the value is zero.
    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// Whether the value is below zero.
    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    /// Whether the value is a whole number of units.
    pub fn is_integer(&self) -> bool {
        self.nanos % NANOS_PER_UNIT == 0
    }

    /// The sum, in this quantity's format; `None` on overflow.
    pub fn checked_add(self, other: Quantity) -> Option<Quantity> {
        Some(Quantity::from_nanos(
            self.nanos.checked_add(other.nanos)?,
            self.format,
        ))
    }

    /// Parses the string of a k8s-openapi quantity.
    pub fn from_openapi(q: &OpenApiQuantity) -> Result<Quantity, QuantityError> {
        q.0.parse()
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl Hash for Quantity {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.nanos.hash(state);
    }
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl TryFrom<&OpenApiQuantity> for Quantity {
    type Error = QuantityError;
    fn try_from(q: &OpenApiQuantity) -> Result<Self, Self::Error> {
        Quantity::from_openapi(q)
    }
}

/// Rounds toward positive infinity (apimachinery's scaled values round up).
fn div_ceil(a: i128, b: i128) -> i128 {
    let q = a / b;
    if a % b > 0 {
        q + 1
    } else {
        q
    }
}

/// `m × 10^exp`, with digits below the unit rounded away from zero.
fn scale10(m: u128, exp: i32) -> Result<u128, QuantityError> {
    if m == 0 {
        return Ok(0);
    }
    if exp >= 0 {
        let f = 10u128
            .checked_pow(exp as u32)
            .ok_or(QuantityError::TooLarge)?;
        m.checked_mul(f).ok_or(QuantityError::TooLarge)
    } else {
        let Some(d) = 10u128.checked_pow(exp.unsigned_abs()) else {
            // Smaller than a nano: rounds up to one.
            return Ok(1);
        };
        Ok(m.div_ceil(d))
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let b = s.as_bytes();
        let mut i = 0;
        let negative = match b.first() {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let int_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let int_digits = &s[int_start..i];
        let mut frac_digits = "";
        if i < b.len() && b[i] == b'.' {
            i += 1;
            let f = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            frac_digits = &s[f..i];
        }
        // apimachinery accepts a bare sign or dot as zero; a quantity with no digit
        // at all is almost certainly a mistake, so it is refused here.
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(QuantityError::Format);
        }
        let suffix = &s[i..];
        let (format, base2, exp10) = interpret_suffix(suffix)?;

        let frac_digits = frac_digits.trim_end_matches('0');
        let mut mantissa: u128 = 0;
        for c in int_digits
            .trim_start_matches('0')
            .bytes()
            .chain(frac_digits.bytes())
        {
            mantissa = mantissa
                .checked_mul(10)
                .and_then(|m| m.checked_add(u128::from(c - b'0')))
                .ok_or(QuantityError::TooLarge)?;
        }
        let frac_len = i32::try_from(frac_digits.len()).map_err(|_| QuantityError::TooLarge)?;
        let scaled = if base2 > 0 {
            let m = mantissa
                .checked_mul(1u128 << base2)
                .ok_or(QuantityError::TooLarge)?;
            scale10(m, 9 - frac_len)?
        } else {
            scale10(mantissa, exp10 + 9 - frac_len)?
        };
        let nanos = i128::try_from(scaled).map_err(|_| QuantityError::TooLarge)?;
        Ok(Quantity {
            nanos: if negative { -nanos } else { nanos },
            format,
        })
    }
}

/// The format, power of two and power of ten a suffix stands for.
fn interpret_suffix(suffix: &str) -> Result<(Format, u32, i32), QuantityError> {
    let decimal = |e: i32| Ok((Format::DecimalSi, 0, e));
    let binary = |p: u32| Ok((Format::BinarySi, p, 0));
    match suffix {
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "" => decimal(0),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(10),
        "Mi" => binary(20),
        "Gi" => binary(30),
        "Ti" => binary(40),
        "Pi" => binary(50),
        "Ei" => binary(60),
        _ => {
            let exp = suffix
                .strip_prefix('e')
                .or_else(|| suffix.strip_prefix('E'))
                .ok_or(QuantityError::Format)?;
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
                return Err(QuantityError::Format);
            }
            let e: i32 = exp.parse().map_err(|_| QuantityError::TooLarge)?;
            if !(-1000..=1000).contains(&e) {
                return Err(QuantityError::TooLarge);
            }
            Ok((Format::DecimalExponent, 0, e))
        }
    }
}

impl fmt::Display for Quantity {
    /// The canonical form the API server prints (`CanonicalizeBytes`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos == 0 {
            return f.write_str("0");
        }
        let sign = if self.nanos < 0 { "-" } else { "" };
        let magnitude = self.nanos.unsigned_abs();
        let binary = self.format == Format::BinarySi
            && magnitude >= 1024 * NANOS_PER_UNIT as u128
            && magnitude % NANOS_PER_UNIT as u128 == 0;
        if binary {
            const SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
            let mut m = magnitude / NANOS_PER_UNIT as u128;
            let mut k = 0;
            while k < 6 && m % 1024 == 0 {
                m /= 1024;
                k += 1;
            }
            return write!(f, "{sign}{m}{}", SUFFIXES[k]);
        }
        // value = m × 10^(e - 9); drop factors of ten, then settle on a multiple of 3.
        let mut m = magnitude;
        let mut e: i32 = -9;
        while m % 10 == 0 {
            m /= 10;
            e += 1;
        }
        while e.rem_euclid(3) != 0 {
            m *= 10;
            e -= 1;
        }
        if self.format == Format::DecimalExponent {
            return if e == 0 {
                write!(f, "{sign}{m}")
            } else {
                write!(f, "{sign}{m}e{e}")
            };
        }
        while e > 18 {
            m *= 1000;
            e -= 3;
        }
        let suffix = match e {
            -9 => "n",
            -6 => "u",
            -3 => "m",
            3 => "k",
            6 => "M",
            9 => "G",
            12 => "T",
            15 => "P",
            18 => "E",
            _ => "",
        };
        write!(f, "{sign}{m}{suffix}")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        parse_quantity(s).unwrap_or_else(|| panic!("{s:?} should parse"))
    }

    #[test]
    fn parses_every_suffix_to_exact_nanos() {
        let cases: &[(&str, i128)] = &[
            ("0", 0),
            ("1", 1_000_000_000),
            ("+1", 1_000_000_000),
            ("-1", -1_000_000_000),
            ("1n", 1),
            ("1u", 1_000),
            ("1m", 1_000_000),
            ("500m", 500_000_000),
            ("1k", 1_000_000_000_000),
            ("1M", 1_000_000_000_000_000),
            ("1G", 1_000_000_000_000_000_000),
            ("1T", 1_000_000_000_000_000_000_000),
            ("1P", 1_000_000_000_000_000_000_000_000),
            ("1E", 1_000_000_000_000_000_000_000_000_000),
            ("1Ki", 1024 * 1_000_000_000),
            ("1Mi", (1 << 20) * 1_000_000_000),
            ("1Gi", (1 << 30) * 1_000_000_000),
            ("1Ti", (1 << 40) * 1_000_000_000),
            ("1Pi", (1 << 50) * 1_000_000_000),
            ("1Ei", (1 << 60) * 1_000_000_000),
            ("1.5Gi", 3 * (1 << 29) * 1_000_000_000),
            ("0.5", 500_000_000),
            (".5", 500_000_000),
            ("5.", 5_000_000_000),
            ("1.", 1_000_000_000),
            ("007", 7_000_000_000),
            ("1e3", 1_000_000_000_000),
            ("1E3", 1_000_000_000_000),
            ("1e+3", 1_000_000_000_000),
            ("5e-3", 5_000_000),
            ("1.5e1", 15_000_000_000),
            ("0.1m", 100_000),
            ("100n", 100),
            (" 2 ", 2_000_000_000),
            ("1.000000000000000000001", 1_000_000_001),
            ("-0.0000000001", -1),
        ];
        for (s, nanos) in cases {
            assert_eq!(q(s).as_nanos(), *nanos, "{s}");
        }
    }

    #[test]
    fn rejects_what_the_api_server_rejects() {
        for s in [
            "", " ", "abc", "1K", "1KB", "1kb", "1Gb", "1 G", "1e", "1e+", "1ee3", "1i", "Ki",
            "1.2.3", "--1", "1m5", "1Mi3", "1e3.5", "0x10", "1,5", "+", "-", ".", "1mi",
        ] {
            assert_eq!(
                s.parse::<Quantity>().err(),
                Some(QuantityError::Format),
                "{s:?}"
            );
        }
        assert_eq!(
            "1e60".parse::<Quantity>().err(),
            Some(QuantityError::TooLarge)
        );
        assert_eq!(
            QuantityError::Format.to_string(),
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        );
    }

    #[test]
    fn compares_by_value() {
        assert_eq!(q("1Ki"), q("1024"));
        assert_eq!(q("1"), q("1000m"));
        assert_eq!(q("1e3"), q("1k"));
        assert!(q("500m") < q("1"));
        assert!(q("1Gi") > q("1G"));
        assert!(q("-1") < q("0"));
        assert_eq!(q("1500m").value(), 2);
        assert_eq!(q("1n").milli_value(), 1);
        assert_eq!(q("2").milli_value(), 2000);
        assert!(q("2").is_integer() && !q("2.5").is_integer());
        assert_eq!(q("1").checked_add(q("500m")), Some(q("1.5")));
    }

    #[test]
    fn prints_the_canonical_form() {
        let cases = [
            ("0", "0"),
            ("0Gi", "0"),
            ("1", "1"),
            ("1000", "1k"),
            ("1500", "1500"),
            ("0.5", "500m"),
            ("1.5", "1500m"),
            ("100m", "100m"),
            ("0.1m", "100u"),
            ("1000m", "1"),
            ("1e3", "1e3"),
            ("1.5e3", "1500"),
            ("12e2", "1200"),
            ("1Ki", "1Ki"),
            ("1024Mi", "1Gi"),
            ("1536Mi", "1536Mi"),
            ("1.5Ki", "1536"),
            ("0.5Gi", "512Mi"),
            ("512", "512"),
            ("-1Gi", "-1Gi"),
            ("-100m", "-100m"),
            ("1000E", "1000E"),
            ("2G", "2G"),
        ];
        for (input, want) in cases {
            assert_eq!(q(input).to_string(), want, "{input}");
        }
    }

    #[test]
    fn reads_openapi_quantities() {
        let oq = OpenApiQuantity("250m".into());
        assert_eq!(Quantity::try_from(&oq), Ok(q("0.25")));
        assert!(Quantity::from_openapi(&OpenApiQuantity("x".into())).is_err());
    }
}
