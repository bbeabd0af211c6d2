//! Field validation helpers shared by every input type. Each check records a
//! [`FieldViolation`] instead of failing fast, so one response names every bad field.

use std::collections::BTreeMap;

use super::error::{Error, FieldViolation};

pub const TITLE_MAX: usize = 200;
pub const SUMMARY_MAX: usize = 10_000;
pub const BODY_MAX: usize = 10_000;
pub const SHORT_TEXT_MAX: usize = 200;
pub const LONG_TEXT_MAX: usize = 10_000;
pub const LABELS_MAX: usize = 32;
pub const LABEL_KEY_MAX: usize = 63;
pub const LABEL_VALUE_MAX: usize = 255;
pub const AFFECTED_COMPONENTS_MAX: usize = 100;
pub const RELATED_MAX: usize = 50;
pub const COMPONENT_NAME_MAX: usize = 100;
pub const COMPONENT_DESCRIPTION_MAX: usize = 1_000;
pub const COMPONENT_GROUP_MAX: usize = 100;
pub const IDEMPOTENCY_KEY_MAX: usize = 255;

/// Collects violations; `finish` turns them into an [`Error::Validation`].
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldViolation::new(field, message));
    }

    pub fn extend(&mut self, err: Error) -> Result<(), Error> {
        match err {
            Error::Validation(v) => {
                self.0.extend(v);
                Ok(())
            }
            other => Err(other),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn finish(self) -> Result<(), Error> {
        if self.0.is_empty() { Ok(()) } else { Err(Error::Validation(self.0)) }
    }

    /// A list of component ids at `field`: at most [`AFFECTED_COMPONENTS_MAX`], each once
    /// (a repeat is named `field[i]`).
    pub fn component_ids(&mut self, field: &str, ids: &[uuid::Uuid]) {
        if ids.len() > AFFECTED_COMPONENTS_MAX {
            self.add(field, format!("must have at most {AFFECTED_COMPONENTS_MAX} entries"));
        }
        for (i, c) in ids.iter().enumerate() {
            if ids[..i].contains(c) {
                self.add(format!("{field}[{i}]"), "is listed twice");
            }
        }
    }

    /// A required, trimmed text of `1..=max` characters.
    pub fn required_text(&mut self, field: &str, value: Option<&str>, max: usize) -> String {
        match value.map(str::trim) {
            None => {
                self.add(field, "is required");
                String::new()
            }
            Some("") => {
                self.add(field, "must not be empty");
                String::new()
            }
            Some(v) => {
                self.max_chars(field, v, max);
                v.to_string()
            }
        }
    }

    /// A text of at most `max` characters, kept as given (no trimming: it is prose).
    pub fn text(&mut self, field: &str, value: &str, max: usize) -> String {
        self.max_chars(field, value, max);
        value.to_string()
    }

    /// An optional text: trimmed, empty means absent.
    pub fn optional_text(&mut self, field: &str, value: Option<&str>, max: usize) -> Option<String> {
        let v = value.map(str::trim).filter(|v| !v.is_empty())?;
        self.max_chars(field, v, max);
        Some(v.to_string())
    }

    /// Bounds the length and refuses NUL characters (no store can keep them in text).
    fn max_chars(&mut self, field: &str, value: &str, max: usize) {
        let n = value.chars().count();
        if n > max {
            self.add(field, format!("must be at most {max} characters (got {n})"));
        }
        if value.contains('\0') {
            self.add(field, "must not contain NUL characters");
        }
    }

    /// A free-form search or filter string: refuses NUL characters.
    pub fn search_text(&mut self, field: &str, value: &str) {
        if value.contains('\0') {
            self.add(field, "must not contain NUL characters");
        }
    }

    /// Labels: at most [`LABELS_MAX`] entries; keys `[A-Za-z0-9._/-]`, 1..=63 characters;
    /// values at most 255 characters.
    pub fn labels(&mut self, field: &str, labels: &BTreeMap<String, String>) {
        if labels.len() > LABELS_MAX {
            self.add(field, format!("must have at most {LABELS_MAX} entries (got {})", labels.len()));
        }
        for (k, v) in labels {
            let valid_key = !k.is_empty()
                && k.chars().count() <= LABEL_KEY_MAX
                && k.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-'));
            if !valid_key {
                self.add(
                    format!("{field}.{k}"),
                    format!("label keys must be 1-{LABEL_KEY_MAX} characters of A-Z, a-z, 0-9, '.', '_', '/', '-'"),
                );
            }
            if v.chars().count() > LABEL_VALUE_MAX || v.contains('\0') {
                self.add(
                    format!("{field}.{k}"),
                    format!("label values must be at most {LABEL_VALUE_MAX} characters, without NUL"),
                );
            }
        }
    }
}

/// A validated idempotency key (`Idempotency-Key` header, gRPC `request_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// 1..=255 printable ASCII characters without spaces; `field` names it in the error.
    pub fn parse(field: &str, key: &str) -> Result<Self, Error> {
        if key.is_empty() || key.len() > IDEMPOTENCY_KEY_MAX || !key.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(Error::invalid(
                field,
                format!("must be 1-{IDEMPOTENCY_KEY_MAX} printable ASCII characters without spaces"),
            ));
        }
        Ok(Self(key.to_string()))
    }

    /// Parses an optional key where an empty string means none (proto3 strings).
    pub fn parse_optional(field: &str, key: &str) -> Result<Option<Self>, Error> {
        if key.is_empty() { Ok(None) } else { Self::parse(field, key).map(Some) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}
