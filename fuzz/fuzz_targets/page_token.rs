//! Opaque keyset cursors (`page_token`): a token that decodes re-encodes to a token that
//! decodes to the same position, and a page request built from it keeps it.
#![no_main]

use incidentd::domain::{PageRequest, PageToken};
use incidentd_fuzz::assert_named_refusal;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    match PageToken::decode(raw) {
        Ok(token) => {
            let encoded = token.encode();
            assert_eq!(PageToken::decode(&encoded).expect("an encoded token decodes"), token);
            assert_eq!(encoded, PageToken::decode(&encoded).unwrap().encode(), "encoding is canonical");
            let page = PageRequest::new(None, Some(raw)).expect("a decodable token makes a page request");
            assert_eq!(page.after, Some(token));
        }
        Err(e) => {
            assert_named_refusal(&e);
            // A blank token (`?page_token=`) asks for the first page; any other is refused.
            match PageRequest::new(Some(10), Some(raw)) {
                Ok(page) => assert!(raw.trim().is_empty() && page.after.is_none(), "{raw:?} accepted"),
                Err(e) => assert_named_refusal(&e),
            }
        }
    }
});
