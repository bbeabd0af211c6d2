//! Every REST request body, decoded as the `JsonBody` extractor decodes it (`parse_json` into
//! `Obj<T>`, strict, naming the field), then converted and validated where that is pure.
//! The first byte picks the body type; the rest is the body.
#![no_main]

use incidentd::api::rest::extract::{Obj, parse_json};
use incidentd::api::rest::{
    access, actions, components, incidents, integrations, links, maintenance, postmortems, subscribers, subscriptions,
};
use incidentd::domain::{Error, NewIncident, NewUpdate};
use incidentd_fuzz::{assert_named_refusal, now};
use libfuzzer_sys::fuzz_target;

/// Decodes `body` as a JSON object of type `T`; an accepted body must be a JSON object.
fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    match parse_json::<Obj<T>>(bytes) {
        Ok(Obj(t)) => {
            let value: serde_json::Value = serde_json::from_slice(bytes).expect("an accepted body is JSON");
            assert!(value.is_object(), "an accepted body is a JSON object");
            Some(t)
        }
        Err(e) => {
            assert_named_refusal(&e);
            None
        }
    }
}

fn checked<T>(result: Result<T, Error>) -> Option<T> {
    result.map_err(|e| assert_named_refusal(&e)).ok()
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else { return };
    match which % 24 {
        0 => {
            if let Some(b) = body::<incidents::IncidentIn>(bytes) {
                let id = uuid::Uuid::from_u128(1);
                checked(NewIncident::from(b).validate(id, now()));
            }
        }
        1 => {
            if let Some(b) = body::<incidents::IncidentPatchIn>(bytes) {
                checked(b.into_patch().map_err(|e| e.0));
            }
        }
        2 => {
            body::<incidents::TransitionIn>(bytes);
        }
        3 => {
            // The acknowledgement's body is optional: empty or `null` is no body.
            if !bytes.iter().all(u8::is_ascii_whitespace) {
                checked(parse_json::<Option<Obj<incidents::AcknowledgeIn>>>(bytes));
            }
        }
        4 => {
            if let Some(incidents::UpdateIn { body: text, visibility, status, author }) = body(bytes) {
                checked(NewUpdate { body: text, visibility, status, author }.validate("fuzz"));
            }
        }
        5 => {
            body::<components::ComponentIn>(bytes);
        }
        6 => {
            body::<components::ComponentPatchIn>(bytes);
        }
        7 => {
            body::<subscriptions::SubscriptionIn>(bytes);
        }
        8 => {
            body::<subscriptions::SubscriptionPatchIn>(bytes);
        }
        9 => {
            body::<postmortems::PostmortemIn>(bytes);
        }
        10 => {
            body::<postmortems::PostmortemPatchIn>(bytes);
        }
        11 => {
            body::<postmortems::PostmortemTransitionIn>(bytes);
        }
        12 => {
            body::<maintenance::MaintenanceIn>(bytes);
        }
        13 => {
            body::<maintenance::MaintenancePatchIn>(bytes);
        }
        14 => {
            body::<maintenance::MaintenanceUpdateIn>(bytes);
        }
        15 => {
            body::<actions::ActionIn>(bytes);
        }
        16 => {
            body::<actions::ActionPatchIn>(bytes);
        }
        17 => {
            body::<links::MergeIn>(bytes);
        }
        18 => {
            body::<links::LinkIn>(bytes);
        }
        19 => {
            body::<integrations::IntegrationIn>(bytes);
        }
        20 => {
            body::<integrations::IntegrationPatchIn>(bytes);
        }
        21 => {
            body::<access::ApiKeyIn>(bytes);
        }
        22 => {
            // A subscriber import: the JSON wrapper, then the CSV inside it.
            if let Some(subscribers::ImportIn { csv }) = body(bytes) {
                let components = [(uuid::Uuid::from_u128(7), "API".to_string())];
                checked(incidentd::domain::subscriber_list::parse_import(&csv, &components));
            }
        }
        _ => {
            body::<incidentd::api::public::SubscribeIn>(bytes);
        }
    }
});
