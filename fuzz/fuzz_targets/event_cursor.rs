//! Event cursors (`after` on `/v1/events`, `Last-Event-ID` on the stream): a sequence
//! number, 0 or more; an accepted cursor prints back to one that reads the same, and a
//! refused one names its field.
#![no_main]

use incidentd::api::rest::events::cursor;
use incidentd::domain::validate::Violations;
use incidentd_fuzz::assert_named_refusal;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    let mut v = Violations::new();
    match cursor(&mut v, "Last-Event-ID", Some(raw)) {
        Some(n) => {
            assert!(n >= 0);
            assert!(v.is_empty());
            let mut again = Violations::new();
            assert_eq!(cursor(&mut again, "after", Some(&n.to_string())), Some(n));
        }
        None => {
            let e = v.finish().expect_err("a refused cursor is reported");
            assert_named_refusal(&e);
        }
    }
    let mut none = Violations::new();
    assert_eq!(cursor(&mut none, "after", None), None);
    assert!(none.is_empty());
});
