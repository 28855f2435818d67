//! The wall clock, read in one place: RFC 3339 for records, Unix milliseconds for idle time.

/// Now, as RFC 3339 UTC with milliseconds and as Unix milliseconds.
pub fn now() -> (String, i64) {
    let t = time::OffsetDateTime::now_utc();
    let t = t.replace_nanosecond(t.millisecond() as u32 * 1_000_000).unwrap_or(t);
    let ms = (t.unix_timestamp_nanos() / 1_000_000) as i64;
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    (t.format(&format).unwrap_or_default(), ms)
}

/// Now in Unix milliseconds.
pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// Unix milliseconds of an RFC 3339 time (as records carry them).
pub fn parse_ms(rfc3339: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339).ok()?;
    Some((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// Unix milliseconds as RFC 3339 UTC with milliseconds, the form of [`now`].
pub fn format_ms(ms: i64) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn milliseconds_round_trip_through_the_record_form() {
        let (text, ms) = super::now();
        assert_eq!(super::parse_ms(&text), Some(ms));
        assert_eq!(super::format_ms(ms), text);
        assert_eq!(super::parse_ms("not a time"), None);
    }
}
