//! Timestamps. Every instant is UTC; the database stores it without a zone
//! (`TIMESTAMP`), truncated to microseconds so that what is written is what is read.

use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};

/// The current instant, at the precision every backend keeps (microseconds).
pub fn now() -> NaiveDateTime {
    Utc::now().naive_utc().trunc_subsecs(6)
}

/// A stored instant as the API shows it (RFC 3339 with `Z`).
pub fn to_utc(at: NaiveDateTime) -> DateTime<Utc> {
    at.and_utc()
}
