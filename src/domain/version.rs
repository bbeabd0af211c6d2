//! Versions and entity tags: every editable resource carries a version, bumped on each change;
//! its entity tag (`ETag`, gRPC `etag`) is derived from it, and writes that replace state
//! compare the caller's tag with it (optimistic concurrency).

use chrono::{DateTime, Utc};

use super::error::{Error, Result};

/// The entity tag of a version: a quoted string, as HTTP wants it.
pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

/// Checks an expected entity tag against the current version. Accepts the quoted form
/// (`"3"`), the bare form (`3`), a comma-separated list and `*`; weak tags never match
/// (strong comparison). No expectation always matches.
pub fn check_etag(resource: &'static str, expected: Option<&str>, version: i64) -> Result<()> {
    let Some(expected) = expected.map(str::trim).filter(|e| !e.is_empty()) else {
        return Ok(());
    };
    let current = etag(version);
    let matches = expected.split(',').map(str::trim).any(|tag| {
        tag == "*" || tag == current || (!tag.starts_with("W/") && tag.trim_matches('"') == version.to_string())
    });
    if matches { Ok(()) } else { Err(Error::EtagMismatch { resource, expected: expected.to_string(), current }) }
}

/// Marks a change of a versioned resource: the next version, changed now.
pub fn bump(version: &mut i64, updated_at: &mut DateTime<Utc>, now: DateTime<Utc>) {
    *version += 1;
    *updated_at = now;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_etag_is_the_quoted_version() {
        assert_eq!(etag(3), "\"3\"");
    }

    #[test]
    fn matching_tags_pass_in_every_accepted_form() {
        for tag in ["\"3\"", "3", "*", " \"3\" ", "\"1\", \"3\"", "\"2\",3"] {
            assert!(check_etag("incident", Some(tag), 3).is_ok(), "{tag:?} should match version 3");
        }
        assert!(check_etag("incident", None, 3).is_ok());
        assert!(check_etag("incident", Some("  "), 3).is_ok(), "an empty header is no precondition");
    }

    #[test]
    fn other_versions_and_weak_tags_are_refused_with_the_current_tag() {
        for tag in ["\"2\"", "4", "W/\"3\"", "\"1\", \"2\"", "\"\""] {
            match check_etag("component", Some(tag), 3) {
                Err(Error::EtagMismatch { resource, expected, current }) => {
                    assert_eq!((resource, current.as_str()), ("component", "\"3\""));
                    assert_eq!(expected, tag.trim());
                }
                other => panic!("{tag:?} against version 3 gave {other:?}"),
            }
        }
    }

    #[test]
    fn a_bump_moves_the_version_and_the_change_time() {
        let (mut version, mut at) = (7, DateTime::<Utc>::MIN_UTC);
        let now = Utc::now();
        bump(&mut version, &mut at, now);
        assert_eq!((version, at), (8, now));
    }
}
