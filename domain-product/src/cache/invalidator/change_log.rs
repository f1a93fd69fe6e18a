//! MySQL's stand-in for `NOTIFY`: reading `product_changes` (rows appended by
//! triggers on `products`) for the ids this instance has not seen.
//!
//! Ids come from `AUTO_INCREMENT` when a row is written, but become visible
//! when its transaction commits, which is not in id order: id 7 may be read
//! while id 6's transaction is still open, or rolled back (it never appears).
//! So a reader cannot simply read past the greatest id it saw. It remembers
//! the gaps below that id and asks for them again with every read, until
//! they appear or [`GAP_PATIENCE`] has passed (a rolled-back write leaves its
//! gap forever; a change made in a transaction kept open longer than that is
//! missed, and the README says so).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use diesel::mysql::MysqlConnection;
use diesel::prelude::*;

use crate::schema::product_changes;

/// How long a gap in the ids is watched for.
pub(super) const GAP_PATIENCE: Duration = Duration::from_secs(60);
/// The most gaps one read opens (a jump in `AUTO_INCREMENT`, after a server
/// restart or a bulk insert, would otherwise open millions).
const MAX_NEW_GAPS: i64 = 10_000;
/// The most rows one read takes; the next read goes on from there.
const BATCH: i64 = 10_000;
/// How long rows are kept: well past [`GAP_PATIENCE`], for instances that start later.
const RETENTION: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

/// What one instance has read of `product_changes`.
#[derive(Debug)]
pub(super) struct ChangeLog {
    /// The greatest id read.
    seen: i64,
    /// Ids below `seen` not read yet, and since when they are missing.
    gaps: BTreeMap<i64, Instant>,
}

impl ChangeLog {
    /// Starts after the rows written more than [`GAP_PATIENCE`] ago; the
    /// newer ones are treated as gaps, so that a transaction open now is
    /// heard when it commits (the cache starts empty, so nothing is invalidated twice).
    pub(super) fn open(conn: &mut MysqlConnection) -> QueryResult<Self> {
        let recent = Utc::now().naive_utc()
            - chrono::TimeDelta::from_std(GAP_PATIENCE).unwrap_or(chrono::TimeDelta::MAX);
        let newest: Option<i64> = product_changes::table
            .select(diesel::dsl::max(product_changes::id))
            .first(conn)?;
        let first_recent: Option<i64> = product_changes::table
            .filter(product_changes::changed_at.ge(recent))
            .select(diesel::dsl::min(product_changes::id))
            .first(conn)?;
        let newest = newest.unwrap_or(0);
        let mut log = Self {
            seen: first_recent.map_or(newest, |id| id - 1),
            gaps: BTreeMap::new(),
        };
        log.open_gaps_to(newest + 1, Instant::now());
        Ok(log)
    }

    /// Reads the rows not seen yet; returns their product ids.
    pub(super) fn read(&mut self, conn: &mut MysqlConnection) -> QueryResult<Vec<String>> {
        let now = Instant::now();
        self.gaps
            .retain(|_, missing_since| now.duration_since(*missing_since) < GAP_PATIENCE);
        let gaps: Vec<i64> = self.gaps.keys().copied().collect();
        let rows: Vec<(i64, String)> = product_changes::table
            .filter(
                product_changes::id
                    .gt(self.seen)
                    .or(product_changes::id.eq_any(&gaps)),
            )
            .order(product_changes::id.asc())
            .select((product_changes::id, product_changes::product_id))
            .limit(BATCH + i64::try_from(gaps.len()).unwrap_or(i64::MAX))
            .load(conn)?;
        Ok(self.take(rows, now))
    }

    /// Records `rows` (in id order) as seen; returns their product ids.
    fn take(&mut self, rows: Vec<(i64, String)>, now: Instant) -> Vec<String> {
        let mut ids = Vec::with_capacity(rows.len());
        for (id, product) in rows {
            if id > self.seen {
                self.open_gaps_to(id, now);
                self.seen = id;
            } else {
                self.gaps.remove(&id);
            }
            ids.push(product);
        }
        ids
    }

    /// Marks the ids between `seen` and `id` (both excluded) as missing since `now`.
    fn open_gaps_to(&mut self, id: i64, now: Instant) {
        let from = (self.seen + 1).max(id - MAX_NEW_GAPS);
        for gap in from..id {
            self.gaps.insert(gap, now);
        }
    }
}

/// Deletes rows older than [`RETENTION`].
pub(super) fn prune(conn: &mut MysqlConnection) -> QueryResult<usize> {
    let before = Utc::now().naive_utc() - RETENTION;
    diesel::delete(product_changes::table.filter(product_changes::changed_at.lt(before)))
        .execute(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(seen: i64) -> ChangeLog {
        ChangeLog {
            seen,
            gaps: BTreeMap::new(),
        }
    }

    fn rows(ids: &[i64]) -> Vec<(i64, String)> {
        ids.iter().map(|id| (*id, format!("p{id}"))).collect()
    }

    #[test]
    fn a_row_committed_late_below_the_greatest_id_is_still_heard() {
        let mut log = log(5);
        let now = Instant::now();
        // 7 commits first; 6's transaction is still open.
        assert_eq!(log.take(rows(&[7]), now), ["p7"]);
        assert_eq!(log.gaps.keys().copied().collect::<Vec<_>>(), [6]);
        // 6 commits: read through its gap, and the gap closes.
        assert_eq!(log.take(rows(&[6, 8]), now), ["p6", "p8"]);
        assert!(log.gaps.is_empty());
        assert_eq!(log.seen, 8);
    }

    #[test]
    fn gaps_are_given_up_after_the_patience() {
        let mut log = log(0);
        let long_ago = Instant::now()
            .checked_sub(GAP_PATIENCE + Duration::from_secs(1))
            .unwrap_or_else(Instant::now);
        log.take(rows(&[3]), long_ago);
        assert_eq!(log.gaps.len(), 2);
        let now = Instant::now();
        log.gaps
            .retain(|_, since| now.duration_since(*since) < GAP_PATIENCE);
        assert!(log.gaps.is_empty() || long_ago == now);
    }

    #[test]
    fn a_jump_in_ids_opens_a_bounded_number_of_gaps() {
        let mut log = log(0);
        log.take(rows(&[1_000_000]), Instant::now());
        assert_eq!(log.gaps.len() as i64, MAX_NEW_GAPS);
        assert_eq!(log.gaps.keys().next(), Some(&(1_000_000 - MAX_NEW_GAPS)));
    }
}
