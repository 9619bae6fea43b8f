//! Human durations: `500ms`, `90s`, `15m`, `2h`, `7d`, and sums such as `1h30m`.

use std::time::Duration;

/// Parses a duration such as `10s`, `1h30m` or `7d`. Units: `ms`, `s`, `m`, `h`, `d`.
/// A bare number is refused, so that `timeout: 10` cannot mean ten of an unknown unit.
pub fn parse(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration".to_owned());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return Err(format!(
                "invalid duration `{text}`: expected a number followed by a unit (ms, s, m, h, d), e.g. `90s` or `1h30m`"
            ));
        }
        let (num, after) = rest.split_at(digits);
        let unit_len = after.chars().take_while(|c| c.is_ascii_alphabetic()).count();
        let (unit, next) = after.split_at(unit_len);
        let n: u64 = num
            .parse()
            .map_err(|_| format!("invalid duration `{text}`: number too large"))?;
        let secs_per_unit: Option<u64> = match unit {
            "ms" => None,
            "s" => Some(1),
            "m" => Some(60),
            "h" => Some(3600),
            "d" => Some(86_400),
            "" => {
                return Err(format!(
                    "invalid duration `{text}`: missing unit after {n} (use ms, s, m, h or d)"
                ));
            }
            other => {
                return Err(format!(
                    "invalid duration `{text}`: unknown unit `{other}` (use ms, s, m, h or d)"
                ));
            }
        };
        let part = match secs_per_unit {
            None => Some(Duration::from_millis(n)),
            Some(k) => n.checked_mul(k).map(Duration::from_secs),
        };
        total = part
            .and_then(|p| total.checked_add(p))
            .ok_or_else(|| format!("invalid duration `{text}`: too large"))?;
        rest = next;
    }
    Ok(total)
}

/// Formats a duration the way [`parse`] reads it, largest units first (`1h30m`, `250ms`).
pub fn format(d: Duration) -> String {
    let mut secs = d.as_secs();
    let ms = d.subsec_millis();
    if secs == 0 {
        return format!("{ms}ms");
    }
    let mut out = String::new();
    for (unit, len) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= len {
            out.push_str(&format!("{}{unit}", secs / len));
            secs %= len;
        }
    }
    if ms > 0 {
        out.push_str(&format!("{ms}ms"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_sums() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("7d"), Ok(Duration::from_secs(7 * 86_400)));
    }

    #[test]
    fn refuses_bad_text() {
        for bad in ["", "10", "10x", "h", "1.5h", "-1s", "99999999999999999999s"] {
            assert!(parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn format_round_trips() {
        for d in [1, 59, 61, 3600, 5400, 90_061] {
            let d = Duration::from_secs(d);
            assert_eq!(parse(&format(d)), Ok(d));
        }
        assert_eq!(format(Duration::from_millis(1500)), "1s500ms");
    }
}
