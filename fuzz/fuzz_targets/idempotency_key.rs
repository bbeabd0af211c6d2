//! `Idempotency-Key` (REST header, read as the handlers read it) and gRPC `request_id`: an
//! accepted key is 1-255 printable ASCII characters without spaces and parses to itself.
#![no_main]

use axum::http::{HeaderMap, HeaderValue};
use incidentd::api::rest::extract::idempotency_key;
use incidentd::domain::IdempotencyKey;
use incidentd_fuzz::assert_named_refusal;
use libfuzzer_sys::fuzz_target;

fn check_key(key: &IdempotencyKey) {
    let s = key.as_str();
    assert!((1..=255).contains(&s.len()), "key length {}", s.len());
    assert!(s.bytes().all(|b| (0x21..=0x7e).contains(&b)), "key {s:?} is not printable ASCII");
    assert_eq!(&IdempotencyKey::parse("k", s).expect("an accepted key parses again"), key);
}

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = HeaderValue::from_bytes(data) {
        let mut headers = HeaderMap::new();
        headers.insert("idempotency-key", value);
        match idempotency_key(&headers) {
            Ok(Some(key)) => check_key(&key),
            Ok(None) => panic!("a header that is present was read as absent"),
            Err(e) => assert_named_refusal(&e.0),
        }
    }
    if let Ok(raw) = std::str::from_utf8(data) {
        match IdempotencyKey::parse_optional("request_id", raw) {
            Ok(Some(key)) => check_key(&key),
            Ok(None) => assert!(raw.is_empty()),
            Err(e) => assert_named_refusal(&e),
        }
    }
});
