//! Cursor pagination. A page is read in a stable order (by id, which is
//! time-ordered); the cursor names the last item seen, and the next page
//! starts strictly after it. Clients treat it as opaque.

use serde::Deserialize;
use utoipa::IntoParams;

use crate::web::extract::invalid_query;
use crate::web::problem::{FieldViolation, Problem};

pub const DEFAULT_LIMIT: u32 = 20;
pub const MAX_LIMIT: u32 = 100;
/// Cursors are ids: short, and made of letters, digits, `-` and `_`.
pub const MAX_CURSOR_LEN: usize = 64;

/// The query parameters of every list route.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// How many items to return (1 to 100, default 20).
    #[param(minimum = 1, maximum = 100, example = 20)]
    pub limit: Option<u32>,
    /// The `nextCursor` of the previous page; omit it for the first page.
    #[param(
        min_length = 1,
        max_length = 64,
        pattern = "^[0-9A-Za-z_-]{1,64}$",
        example = "019b3f2c-7d0e-7f00-b9e6-5c3a0f1d2e4b"
    )]
    pub cursor: Option<String>,
}

/// A validated page request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// Return items strictly after this key.
    pub after: Option<String>,
    pub limit: u32,
}

impl PageRequest {
    pub fn first(limit: u32) -> Self {
        Self { after: None, limit }
    }

    /// `limit + 1` rows are read to learn whether another page follows.
    pub fn fetch_size(&self) -> i64 {
        i64::from(self.limit) + 1
    }

    /// Cuts the extra row and makes the cursor of the next page from the last key.
    pub fn finish<T>(
        &self,
        mut rows: Vec<T>,
        key: impl Fn(&T) -> &str,
    ) -> (Vec<T>, Option<String>) {
        let more = rows.len() > self.limit as usize;
        rows.truncate(self.limit as usize);
        let next = if more {
            rows.last().map(|last| encode_cursor(key(last)))
        } else {
            None
        };
        (rows, next)
    }
}

impl TryFrom<PageQuery> for PageRequest {
    type Error = Problem;

    fn try_from(query: PageQuery) -> Result<Self, Problem> {
        let mut errors = Vec::new();
        let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            errors.push(FieldViolation::new(
                "limit",
                format!("must be between 1 and {MAX_LIMIT}"),
            ));
        }
        let after = match query.cursor.as_deref() {
            None => None,
            Some(cursor) => match decode_cursor(cursor) {
                Some(key) => Some(key),
                None => {
                    errors.push(FieldViolation::new(
                        "cursor",
                        "is not a cursor this server issued",
                    ));
                    None
                }
            },
        };
        if errors.is_empty() {
            Ok(Self { after, limit })
        } else {
            Err(invalid_query(errors))
        }
    }
}

pub fn encode_cursor(key: &str) -> String {
    key.to_owned()
}

/// The key a cursor names, if it is shaped like one this server issues.
pub fn decode_cursor(cursor: &str) -> Option<String> {
    let well_formed = (1..=MAX_CURSOR_LEN).contains(&cursor.len())
        && cursor
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    well_formed.then(|| cursor.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        let key = "019b3f2c-7d0e-7f00-b9e6-000000000001";
        assert_eq!(decode_cursor(&encode_cursor(key)).as_deref(), Some(key));
        assert_eq!(decode_cursor("!!!"), None);
        assert_eq!(decode_cursor(&"a".repeat(MAX_CURSOR_LEN + 1)), None);
        assert_eq!(decode_cursor(""), None);
    }

    #[test]
    fn limits_are_bounded() {
        let ok = PageRequest::try_from(PageQuery {
            limit: Some(100),
            cursor: None,
        })
        .unwrap();
        assert_eq!(ok.limit, 100);
        let err = PageRequest::try_from(PageQuery {
            limit: Some(0),
            cursor: Some("%".into()),
        })
        .unwrap_err();
        assert_eq!(err.errors.len(), 2);
        assert_eq!(
            PageRequest::try_from(PageQuery::default()).unwrap().limit,
            DEFAULT_LIMIT
        );
    }

    #[test]
    fn finish_makes_a_cursor_only_when_more_rows_exist() {
        let page = PageRequest::first(2);
        let (rows, next) = page.finish(vec!["a", "b", "c"], |s| s);
        assert_eq!(rows, vec!["a", "b"]);
        assert_eq!(
            next.as_deref().and_then(decode_cursor).as_deref(),
            Some("b")
        );
        let (rows, next) = page.finish(vec!["a", "b"], |s| s);
        assert_eq!((rows.len(), next), (2, None));
    }
}
