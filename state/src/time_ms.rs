//! Timestamps are stored as milliseconds since the Unix epoch (UTC).

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

/// Formats a timestamp as RFC 3339 with millisecond precision (`2026-11-26T09:30:00.125Z`).
pub fn format_ms(ms: Millis) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => {
            let fmt = time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
            );
            t.format(&fmt).unwrap_or_else(|_| ms.to_string())
        }
        Err(_) => ms.to_string(),
    }
}
