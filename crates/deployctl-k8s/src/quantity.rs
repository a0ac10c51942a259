//! Kubernetes quantities compared by value: the API server stores `1000m` as `1`, `0.5` as
//! `500m` and `1024Mi` as `1Gi` (its canonical form), so a rendered quantity and the live
//! one are the same when their values are, whatever the spelling.

/// An exact quantity: `mantissa × 10^exp10 × 2^pow2`.
#[derive(Debug, Clone, Copy)]
struct Exact {
    mantissa: i128,
    exp10: i32,
    pow2: u32,
}

impl Exact {
    /// `mantissa × 10^exp` with the powers of two folded in and trailing zeros removed, or
    /// `None` when it overflows.
    fn normal(self) -> Option<(i128, i32)> {
        let mut m = self.mantissa.checked_mul(1i128.checked_shl(self.pow2)?)?;
        let mut e = self.exp10;
        if m == 0 {
            return Some((0, 0));
        }
        while m % 10 == 0 {
            m /= 10;
            e += 1;
        }
        Some((m, e))
    }
}

fn parse(text: &str) -> Option<Exact> {
    let s = text.trim();
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
    let mut mantissa: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    if negative {
        mantissa = -mantissa;
    }
    let mut exp10 = -i32::try_from(frac.len()).ok()?;
    let binary = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    let decimal = ["n", "u", "m", "", "k", "M", "G", "T", "P", "E"];
    let pow2 = if let Some(i) = binary.iter().position(|b| *b == suffix) {
        10 * (u32::try_from(i).ok()? + 1)
    } else if let Some(i) = decimal.iter().position(|d| *d == suffix) {
        exp10 += 3 * (i32::try_from(i).ok()? - 3);
        0
    } else {
        let exp = suffix.strip_prefix(['e', 'E'])?;
        let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        exp10 = exp10.checked_add(exp.parse().ok()?)?;
        0
    };
    Some(Exact {
        mantissa,
        exp10,
        pow2,
    })
}

/// A JSON quantity (`"500m"`, `"1Gi"`, `2`) as a number (`0.5`, `1073741824.0`, `2.0`);
/// `None` when it is not a quantity.
pub(crate) fn quantity_value(v: &serde_json::Value) -> Option<f64> {
    let text = match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let (m, e) = parse(&text)?.normal()?;
    #[allow(clippy::cast_precision_loss)] // quota arithmetic: far below 2^53 in practice
    Some(m as f64 * 10f64.powi(e))
}

/// Whether two JSON values are the same quantity (`"1000m"` and `"1"`, `0.5` and `"500m"`);
/// `false` when either is not a quantity.
pub(crate) fn same_quantity(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    fn text(v: &serde_json::Value) -> Option<String> {
        match v {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
    let (Some(a), Some(b)) = (text(a), text(b)) else {
        return false;
    };
    match (
        parse(&a).and_then(Exact::normal),
        parse(&b).and_then(Exact::normal),
    ) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::{quantity_value, same_quantity};
    use serde_json::json;

    #[test]
    fn quantities_have_values() {
        assert_eq!(quantity_value(&json!("500m")), Some(0.5));
        assert_eq!(quantity_value(&json!("1Gi")), Some(1_073_741_824.0));
        assert_eq!(quantity_value(&json!(2)), Some(2.0));
        assert_eq!(quantity_value(&json!("web")), None);
    }

    #[test]
    fn spellings_of_one_value_are_the_same_quantity() {
        for (a, b) in [
            (json!("1000m"), json!("1")),
            (json!("0.5"), json!("500m")),
            (json!(0.5), json!("500m")),
            (json!(2), json!("2")),
            (json!("1024Mi"), json!("1Gi")),
            (json!("1.5Gi"), json!("1536Mi")),
            (json!("1000"), json!("1k")),
            (json!("1e3"), json!("1k")),
            (json!("0"), json!("0Mi")),
        ] {
            assert!(same_quantity(&a, &b), "{a} {b}");
        }
        for (a, b) in [
            (json!("1"), json!("1001m")),
            (json!("1Gi"), json!("1G")),
            (json!("web"), json!("web")),
            (json!(true), json!(true)),
        ] {
            assert!(!same_quantity(&a, &b), "{a} {b}");
        }
    }
}
