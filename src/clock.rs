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
