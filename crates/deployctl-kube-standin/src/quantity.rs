//! Kubernetes `resource.Quantity` canonical form, as an API server stores quantities:
//! `1000m` → `1`, `0.5` → `500m`, `1024Mi` → `1Gi`, `1000` → `1k`, `1.5Gi` → `1536Mi`.
//!
//! The rules of k8s.io/apimachinery `pkg/api/resource` (`ParseQuantity`, `CanonicalizeBytes`):
//! the suffix decides the format (binary `Ki`…`Ei`, decimal SI `n`…`E`, or an `e`/`E`
//! exponent); values are rounded up to nano units; a binary quantity that is not a whole
//! number of bytes, or lies strictly between -1024 and 1024, is written in decimal SI; a
//! decimal one uses the largest exponent that is a multiple of 3 and keeps the mantissa whole.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    BinarySi,
    DecimalSi,
    DecimalExponent,
}

/// `text` in canonical form, or `None` when it is not a quantity.
#[cfg(test)]
pub fn canonical(text: &str) -> Option<String> {
    canonical_rounded(text, -9)
}

/// As [`canonical`], rounded up to milli units first, as the API server does for the
/// quantities of a resource list (`resources.requests`/`limits`; `SetDefaults_ResourceList`).
#[cfg(test)]
pub fn canonical_resource(text: &str) -> Option<String> {
    canonical_rounded(text, -3)
}

fn canonical_rounded(text: &str, floor: i32) -> Option<String> {
    let (negative, mantissa, exp10, pow2, format) = parse(text.trim())?;
    // value = mantissa × 10^exp10 × 2^pow2, mantissa ≥ 0
    let mut m = mantissa.checked_mul(1i128.checked_shl(pow2)?)?;
    let mut e = exp10;
    if e < floor {
        // Round up (away from zero) to the floor's units, as ParseQuantity does for nano.
        let div = 10i128.checked_pow(u32::try_from(floor - e).ok()?)?;
        m = m / div + i128::from(m % div != 0);
        e = floor;
    }
    let sign = if negative && m != 0 { "-" } else { "" };
    if format == Format::BinarySi {
        // Whole bytes of at least 1024 stay binary.
        let whole = if e >= 0 {
            m.checked_mul(10i128.checked_pow(e.unsigned_abs())?)
        } else {
            let div = 10i128.checked_pow(e.unsigned_abs())?;
            (m % div == 0).then_some(m / div)
        };
        if let Some(mut bytes) = whole
            && bytes >= 1024
        {
            let mut i = 0;
            while i < 6 && bytes % 1024 == 0 {
                bytes /= 1024;
                i += 1;
            }
            let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][i];
            return Some(format!("{sign}{bytes}{suffix}"));
        }
    }
    if m == 0 {
        return Some("0".into());
    }
    while m % 10 == 0 {
        m /= 10;
        e += 1;
    }
    // The largest multiple of 3 not above e.
    let e3 = e.div_euclid(3) * 3;
    m = m.checked_mul(10i128.checked_pow(u32::try_from(e - e3).ok()?)?)?;
    if format == Format::DecimalExponent {
        return Some(if e3 == 0 {
            format!("{sign}{m}")
        } else {
            format!("{sign}{m}e{e3}")
        });
    }
    let suffix = match e3 {
        -9 => "n",
        -6 => "u",
        -3 => "m",
        0 => "",
        3 => "k",
        6 => "M",
        9 => "G",
        12 => "T",
        15 => "P",
        18 => "E",
        _ => return Some(format!("{sign}{m}e{e3}")),
    };
    Some(format!("{sign}{m}{suffix}"))
}

/// (negative, mantissa, power of ten, power of two, format).
fn parse(s: &str) -> Option<(bool, i128, i32, u32, Format)> {
    let (negative, s) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(end);
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty() && frac.is_empty() || frac.contains('.') || frac.len() > 30 {
        return None;
    }
    let digits = format!("{int}{frac}");
    let digits = digits.trim_start_matches('0');
    let mantissa: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    let mut exp10 = -i32::try_from(frac.len()).ok()?;
    let (pow2, format) = match suffix {
        "Ki" => (10, Format::BinarySi),
        "Mi" => (20, Format::BinarySi),
        "Gi" => (30, Format::BinarySi),
        "Ti" => (40, Format::BinarySi),
        "Pi" => (50, Format::BinarySi),
        "Ei" => (60, Format::BinarySi),
        _ => {
            let (add, format) = match suffix {
                "n" => (-9, Format::DecimalSi),
                "u" => (-6, Format::DecimalSi),
                "m" => (-3, Format::DecimalSi),
                "" => (0, Format::DecimalSi),
                "k" => (3, Format::DecimalSi),
                "M" => (6, Format::DecimalSi),
                "G" => (9, Format::DecimalSi),
                "T" => (12, Format::DecimalSi),
                "P" => (15, Format::DecimalSi),
                "E" => (18, Format::DecimalSi),
                other => {
                    let exp = other.strip_prefix(['e', 'E'])?;
                    let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
                    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                        return None;
                    }
                    (exp.parse::<i32>().ok()?, Format::DecimalExponent)
                }
            };
            exp10 = exp10.checked_add(add)?;
            (0, format)
        }
    };
    Some((negative, mantissa, exp10, pow2, format))
}

/// A quantity as JSON (`"1000m"`, or a number as YAML may give it) in canonical form
/// (`resource`: rounded up to milli units as in a resource list); `None` for other values.
pub fn canonical_value(v: &serde_json::Value, resource: bool) -> Option<serde_json::Value> {
    let text = match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let floor = if resource { -3 } else { -9 };
    canonical_rounded(&text, floor).map(serde_json::Value::String)
}

/// The value of a quantity (`"500m"`, `"1Gi"`, or a number) in milli units, rounded up as
/// a resource list's are, and whether it was written in binary SI (`Ki`…`Ei`).
pub fn milli(v: &serde_json::Value) -> Option<(i128, bool)> {
    let text = match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let (negative, mantissa, exp10, pow2, format) = parse(text.trim())?;
    let m = mantissa.checked_mul(1i128.checked_shl(pow2)?)?;
    let e = exp10.checked_add(3)?;
    let value = if e >= 0 {
        m.checked_mul(10i128.checked_pow(e.unsigned_abs())?)?
    } else {
        let div = 10i128.checked_pow(e.unsigned_abs())?;
        m / div + i128::from(m % div != 0)
    };
    Some((
        if negative { -value } else { value },
        format == Format::BinarySi,
    ))
}

/// A value in milli units as the canonical quantity the API server would print for it: in
/// binary SI when the values it came from were and it is a whole number of KiB.
pub fn from_milli(value: i128, binary: bool) -> String {
    let text = if binary && value != 0 && value % (1000 * 1024) == 0 {
        format!("{}Ki", value / (1000 * 1024))
    } else {
        format!("{value}m")
    };
    canonical_rounded(&text, -3).unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::{canonical, canonical_resource, from_milli, milli};

    #[test]
    fn canonical_forms_as_kubernetes_prints_them() {
        for (input, want) in [
            ("1000m", "1"),
            ("0.5", "500m"),
            ("1024Mi", "1Gi"),
            ("1000", "1k"),
            ("1500m", "1500m"),
            ("250m", "250m"),
            ("1", "1"),
            ("2", "2"),
            ("128Mi", "128Mi"),
            ("512Mi", "512Mi"),
            ("1.5Gi", "1536Mi"),
            ("0.5Gi", "512Mi"),
            ("1000Mi", "1000Mi"),
            ("5Gi", "5Gi"),
            ("1G", "1G"),
            ("1000M", "1G"),
            ("100M", "100M"),
            ("2048", "2048"),
            ("512Ki", "512Ki"),
            ("0.5Ki", "512"),
            ("100Ki", "100Ki"),
            ("0", "0"),
            ("0Mi", "0"),
            ("0.1m", "100u"),
            ("0.0000000001", "1n"),
            ("1e3", "1e3"),
            ("1e7", "10e6"),
            ("1.5e3", "1500"),
            ("-1000m", "-1"),
            ("+2", "2"),
            (".5", "500m"),
            ("10.", "10"),
        ] {
            assert_eq!(canonical(input).as_deref(), Some(want), "{input}");
        }
    }

    #[test]
    fn resource_lists_round_up_to_milli() {
        assert_eq!(canonical_resource("0.1m").as_deref(), Some("1m"));
        assert_eq!(canonical_resource("1500u").as_deref(), Some("2m"));
        assert_eq!(canonical_resource("100Mi").as_deref(), Some("100Mi"));
    }

    #[test]
    fn non_quantities_are_refused() {
        for bad in ["", "abc", "1x", "1..2", "m", "1e", "1e+", "--1", "1 Gi"] {
            assert_eq!(canonical(bad), None, "{bad}");
        }
    }

    #[test]
    fn milli_values_and_their_sums_print_as_the_server_prints_them() {
        let m = |s: &str| milli(&serde_json::json!(s)).unwrap();
        assert_eq!(m("500m"), (500, false));
        assert_eq!(m("1"), (1000, false));
        assert_eq!(m("0.1"), (100, false));
        assert_eq!(m("1.0001"), (1001, false), "rounded up to milli");
        assert_eq!(m("128Mi"), (128 * 1024 * 1024 * 1000, true));
        assert_eq!(milli(&serde_json::json!(2)), Some((2000, false)));
        assert_eq!(from_milli(m("128Mi").0 * 2, true), "256Mi");
        assert_eq!(from_milli(m("512Mi").0 * 2, true), "1Gi");
        assert_eq!(from_milli(1500, false), "1500m");
        assert_eq!(from_milli(2000, false), "2");
        assert_eq!(from_milli(0, true), "0");
        assert_eq!(from_milli(m("100M").0, false), "100M");
    }
}
