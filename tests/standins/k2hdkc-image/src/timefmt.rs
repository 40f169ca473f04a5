//! Time strings without a crate (UTC).

use std::time::{SystemTime, UNIX_EPOCH};

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn split(t: SystemTime) -> (i64, u32, u32, u64, u64, u64, u32) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (y, mo, da) = civil(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400) as u64;
    (y, mo, da, s / 3600, (s / 60) % 60, s % 60, d.subsec_nanos())
}

/// chmpx's "Last Update" form: `2024-05-01 10h 02m 03s 4ms 5us`.
pub fn chmpx_time(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s, ns) = split(t);
    format!("{y:04}-{mo:02}-{d:02} {h:02}h {mi:02}m {s:02}s {}ms {}us", ns / 1_000_000, (ns / 1000) % 1000)
}

/// `2024-05-01T10:02:03.004Z` for log lines.
pub fn now_utc() -> String {
    let (y, mo, d, h, mi, s, ns) = split(SystemTime::now());
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z", ns / 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_known_instants() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 4_005_000);
        assert_eq!(chmpx_time(t), "2023-11-14 22h 13m 20s 4ms 5us");
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(19_782), (2024, 2, 29));
    }
}
