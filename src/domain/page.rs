//! Keyset pagination: page sizes and opaque page tokens.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

use super::error::Error;

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 500;

/// The position after which the next page starts: the sort key of the last row returned.
/// Every list in incidentd sorts by a timestamp and then the id, or (components) by the
/// case-folded group, position, case-folded name and id, or (follow-up actions) by whether it
/// is done, its due date and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageToken {
    Time { at: DateTime<Utc>, id: Uuid },
    Ordered { group_key: String, position: i32, name_key: String, id: Uuid },
    Due { closed: bool, due: NaiveDate, id: Uuid },
}

impl PageToken {
    pub fn encode(&self) -> String {
        let raw = match self {
            PageToken::Time { at, id } => format!("t1\n{}\n{id}", at.timestamp_micros()),
            PageToken::Ordered { group_key, position, name_key, id } => {
                format!("o1\n{id}\n{position}\n{}\n{group_key}{name_key}", group_key.len())
            }
            PageToken::Due { closed, due, id } => format!("d1\n{}\n{due}\n{id}", u8::from(*closed)),
        };
        URL_SAFE_NO_PAD.encode(raw)
    }

    pub fn decode(token: &str) -> Result<Self, Error> {
        let bad = || Error::invalid("page_token", "is not a page token returned by this list");
        let bytes = URL_SAFE_NO_PAD.decode(token.trim()).map_err(|_| bad())?;
        let raw = String::from_utf8(bytes).map_err(|_| bad())?;
        let mut parts = raw.splitn(5, '\n');
        match parts.next() {
            Some("t1") => {
                let micros: i64 = parts.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
                let id = parts.next().and_then(|s| Uuid::parse_str(s).ok()).ok_or_else(bad)?;
                let at = DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
                Ok(PageToken::Time { at, id })
            }
            Some("o1") => {
                let id = parts.next().and_then(|s| Uuid::parse_str(s).ok()).ok_or_else(bad)?;
                let position: i32 = parts.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
                let group_len: usize = parts.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
                let rest = parts.next().ok_or_else(bad)?;
                let (group, name) = rest.split_at_checked(group_len).ok_or_else(bad)?;
                if rest.contains('\0') {
                    return Err(bad());
                }
                Ok(PageToken::Ordered { group_key: group.into(), position, name_key: name.into(), id })
            }
            Some("d1") => {
                let closed = match parts.next() {
                    Some("0") => false,
                    Some("1") => true,
                    _ => return Err(bad()),
                };
                let due: NaiveDate = parts.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
                let id = parts.next().and_then(|s| Uuid::parse_str(s).ok()).ok_or_else(bad)?;
                Ok(PageToken::Due { closed, due, id })
            }
            _ => Err(bad()),
        }
    }
}

/// A validated page request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub size: u32,
    pub after: Option<PageToken>,
}

impl PageRequest {
    /// `size` 0 (or absent) means the default; above [`MAX_PAGE_SIZE`] is refused.
    pub fn new(size: Option<i64>, token: Option<&str>) -> Result<Self, Error> {
        let size = match size {
            None | Some(0) => DEFAULT_PAGE_SIZE,
            Some(n) if n < 0 || n > MAX_PAGE_SIZE as i64 => {
                return Err(Error::invalid("page_size", format!("must be between 1 and {MAX_PAGE_SIZE}")));
            }
            Some(n) => n as u32,
        };
        let after = match token.map(str::trim) {
            None | Some("") => None,
            Some(t) => Some(PageToken::decode(t)?),
        };
        Ok(Self { size, after })
    }
}

/// One page of results.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_page_token: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `size + 1` rows fetched by the store: the extra row only
    /// says whether another page exists.
    pub fn from_rows(mut rows: Vec<T>, size: u32, token_of: impl Fn(&T) -> PageToken) -> Self {
        let more = rows.len() > size as usize;
        rows.truncate(size as usize);
        let next_page_token = if more { rows.last().map(|r| token_of(r).encode()) } else { None };
        Page { items: rows, next_page_token }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_whatever_the_names_hold() {
        let id = Uuid::now_v7();
        let at = DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap();
        let tokens = [
            PageToken::Time { at, id },
            PageToken::Ordered { group_key: "payments".into(), position: -3, name_key: "checkout".into(), id },
            PageToken::Ordered { group_key: "a\nb".into(), position: 0, name_key: "ümlaut\n🙂".into(), id },
            PageToken::Ordered { group_key: String::new(), position: i32::MAX, name_key: String::new(), id },
            PageToken::Due { closed: true, due: NaiveDate::from_ymd_opt(9999, 12, 31).unwrap(), id },
            PageToken::Due { closed: false, due: NaiveDate::from_ymd_opt(2026, 1, 2).unwrap(), id },
        ];
        for token in tokens {
            let encoded = token.encode();
            assert!(encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{encoded}");
            assert_eq!(PageToken::decode(&encoded).unwrap(), token);
        }
    }

    #[test]
    fn tampered_or_foreign_tokens_are_invalid_page_tokens() {
        let good = PageToken::Time { at: Utc::now(), id: Uuid::now_v7() }.encode();
        let truncated = &good[..good.len() - 4];
        let foreign = URL_SAFE_NO_PAD.encode("x9\n1\n2");
        let bad_length = URL_SAFE_NO_PAD.encode(format!("o1\n{}\n1\n99\nab", Uuid::nil()));
        for bad in ["", "!!!", truncated, &foreign, &bad_length] {
            let err = PageToken::decode(bad).expect_err(bad);
            assert_eq!(err.violations()[0].field, "page_token", "{bad:?}");
        }
    }

    #[test]
    fn page_sizes_default_and_are_bounded() {
        assert_eq!(PageRequest::new(None, None).unwrap().size, DEFAULT_PAGE_SIZE);
        assert_eq!(PageRequest::new(Some(0), Some(" ")).unwrap(), PageRequest { size: DEFAULT_PAGE_SIZE, after: None });
        assert_eq!(PageRequest::new(Some(500), None).unwrap().size, 500);
        for bad in [-1, 501, i64::MAX] {
            let err = PageRequest::new(Some(bad), None).unwrap_err();
            assert_eq!(err.violations()[0].field, "page_size", "{bad}");
        }
    }

    #[test]
    fn a_page_has_a_next_token_only_when_more_rows_came_back() {
        let rows: Vec<i32> = (0..4).collect();
        let token_of =
            |n: &i32| PageToken::Time { at: DateTime::from_timestamp(i64::from(*n), 0).unwrap(), id: Uuid::nil() };
        let page = Page::from_rows(rows.clone(), 3, token_of);
        assert_eq!(page.items, [0, 1, 2]);
        assert_eq!(PageToken::decode(page.next_page_token.as_deref().unwrap()).unwrap(), token_of(&2));
        let last = Page::from_rows(rows, 4, token_of);
        assert_eq!((last.items.len(), last.next_page_token), (4, None));
    }
}
