//! Pagination of list endpoints: `?limit=` (1..=1000, `LIST_LIMIT`), `?order=asc|desc` and an
//! opaque `?cursor=` from the previous page's `next_cursor`.
//!
//! The cursor is the base64 (URL-safe) of the last item's sort key; a page holds the items
//! strictly after it in the page's order, so a walk sees every item present throughout exactly
//! once even while others are added. Tasks are paged by the store itself (a keyset range on
//! submission order; the cursor is the last task's id); the smaller lists (workers, locks,
//! memory keys) are sorted and cut here by `apply`.

use base64::Engine as _;
use sentinel_coord::model::limits::LIST_LIMIT;

use super::{ApiError, in_range};

/// Items on a page when `?limit=` is absent.
pub const DEFAULT_LIMIT: usize = 100;

/// One page request, validated.
#[derive(Debug, Clone)]
pub struct Page {
    pub limit: usize,
    /// Sort key of the last item already seen.
    pub after: Option<String>,
    pub descending: bool,
}

impl Page {
    /// Validates the three parameters; `descending` is the endpoint's default order.
    pub fn parse(
        limit: Option<i64>,
        cursor: Option<&str>,
        order: Option<&str>,
        descending: bool,
    ) -> Result<Page, ApiError> {
        let limit = match limit {
            Some(n) => {
                in_range(&LIST_LIMIT, n.into(), "")?;
                n as usize
            }
            None => DEFAULT_LIMIT,
        };
        let descending = match order {
            None => descending,
            Some("desc") => true,
            Some("asc") => false,
            Some(other) => {
                return Err(ApiError::bad_request(
                    "INVALID_QUERY",
                    format!("invalid query parameter order: {other:?}; use asc or desc"),
                ));
            }
        };
        let after = match cursor {
            None => None,
            Some(c) => Some(decode_cursor(c)?),
        };
        Ok(Page {
            limit,
            after,
            descending,
        })
    }

    /// This page of `items`: sorted by `key` in the page's order, those after the cursor, at
    /// most `limit`; and the cursor of the next page when there are more.
    pub fn apply<T>(&self, items: Vec<T>, key: impl Fn(&T) -> String) -> (Vec<T>, Option<String>) {
        let mut keyed: Vec<(String, T)> = items
            .into_iter()
            .map(|t| (key(&t), t))
            .filter(|(k, _)| match &self.after {
                None => true,
                Some(after) if self.descending => k < after,
                Some(after) => k > after,
            })
            .collect();
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        if self.descending {
            keyed.reverse();
        }
        let more = keyed.len() > self.limit;
        keyed.truncate(self.limit);
        let next = if more {
            keyed.last().map(|(k, _)| encode_cursor(k))
        } else {
            None
        };
        (keyed.into_iter().map(|(_, t)| t).collect(), next)
    }
}

pub fn encode_cursor(key: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
}

fn decode_cursor(cursor: &str) -> Result<String, ApiError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            ApiError::bad_request(
                "INVALID_CURSOR",
                "cursor: not a cursor this API returned (use a page's next_cursor as is)",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_walk_every_item_once_in_both_orders() {
        let items: Vec<u32> = (0..25).collect();
        for descending in [false, true] {
            let mut seen = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let page = Page::parse(Some(7), cursor.as_deref(), None, descending).unwrap();
                let (got, next) = page.apply(items.clone(), |i| format!("{i:05}"));
                seen.extend(got);
                match next {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            let mut expected = items.clone();
            if descending {
                expected.reverse();
            }
            assert_eq!(seen, expected);
        }
    }

    #[test]
    fn limits_orders_and_cursors_are_checked() {
        assert_eq!(
            Page::parse(Some(0), None, None, true).unwrap_err().code,
            "OUT_OF_RANGE"
        );
        assert!(Page::parse(Some(1000), None, None, true).is_ok());
        assert!(Page::parse(Some(1001), None, None, true).is_err());
        assert_eq!(
            Page::parse(None, Some("!!"), None, true).unwrap_err().code,
            "INVALID_CURSOR"
        );
        assert!(Page::parse(None, None, Some("sideways"), true).is_err());
    }
}
