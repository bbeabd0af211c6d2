//! JSON merge patches of an incident (RFC 7396, `PATCH /v1/incidents/{id}`): decoded as the
//! REST handler decodes them, turned into an `IncidentPatch`, and applied to an incident.
//! Applying a merge patch is idempotent: the same patch applied again changes nothing.
#![no_main]

use incidentd::api::rest::extract::{Obj, parse_json};
use incidentd::api::rest::incidents::IncidentPatchIn;
use incidentd::domain::{Incident, NewIncident, Severity};
use incidentd_fuzz::{assert_named_refusal, now};
use libfuzzer_sys::fuzz_target;

fn incident() -> Incident {
    let new = NewIncident {
        title: Some("Checkout fails".into()),
        severity: Some(Severity::Sev2),
        summary: Some("Card payments time out".into()),
        ..NewIncident::default()
    };
    new.validate(uuid::Uuid::from_u128(1), now()).expect("a valid incident").incident
}

fuzz_target!(|data: &[u8]| {
    let patch = match parse_json::<Obj<IncidentPatchIn>>(data).and_then(|Obj(p)| p.into_patch().map_err(|e| e.0)) {
        Ok(p) => p,
        Err(e) => return assert_named_refusal(&e),
    };
    let mut incident = incident();
    let before = incident.clone();
    match incident.apply_patch(patch.clone(), None, now()) {
        Ok(changes) => {
            assert_eq!(changes.is_empty(), incident == before, "changes reported iff the incident changed");
            let once = incident.clone();
            let again = incident.apply_patch(patch, None, now()).expect("a patch that applied once applies again");
            assert!(again.is_empty(), "a merge patch applied twice changed {again:?}");
            assert_eq!(incident, once, "a merge patch applied twice changed the incident");
        }
        Err(e) => assert_named_refusal(&e),
    }
});
