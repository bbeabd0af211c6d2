//! Checks the fuzz targets share. The decoders themselves are incidentd's own (no parsing
//! code is copied here): each target feeds them bytes and checks what they answer.

use incidentd::domain::Error;

/// A refusal must be a validation error naming at least one field, each with a message.
pub fn assert_named_refusal(e: &Error) {
    match e {
        Error::Validation(violations) => {
            assert!(!violations.is_empty(), "a validation error without a violation");
            for v in violations {
                assert!(!v.field.is_empty(), "a violation without a field: {v:?}");
                assert!(!v.message.is_empty(), "a violation without a message: {v:?}");
            }
        }
        other => panic!("a decoder refused with a non-validation error: {other:?}"),
    }
}

/// The fixed clock the targets validate against (a run must be reproducible).
pub fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(1_780_000_000, 0).expect("a valid time")
}
