//! Alert payloads: Alertmanager (and Grafana) webhook notifications, and PagerDuty Events v2
//! alert and change events. The first byte picks the decoder.
#![no_main]

use incidentd::api::rest::integrations::webhook_signals;
use incidentd::api::rest::pagerduty::parse_event;
use incidentd::domain::integration::SECRET_LEN;
use incidentd_fuzz::assert_named_refusal;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else { return };
    match which % 3 {
        0 => match webhook_signals(bytes) {
            Ok(signals) => {
                assert!(!signals.is_empty(), "a notification without alerts was accepted");
                for s in &signals {
                    assert!(!s.title.trim().is_empty(), "an alert without a title");
                    assert!(!incidentd::domain::alert::contains_nul(&s.payload));
                }
            }
            Err(e) => assert_named_refusal(&e),
        },
        n => match parse_event(bytes, n == 2) {
            Ok(parsed) => {
                assert_eq!(parsed.routing_key.len(), SECRET_LEN);
                assert!(parsed.signal.payload.get("routing_key").is_none(), "the routing key was kept");
                assert!(!parsed.signal.fingerprint.is_empty());
            }
            Err(errors) => assert!(!errors.is_empty(), "refused without a reason"),
        },
    }
});
