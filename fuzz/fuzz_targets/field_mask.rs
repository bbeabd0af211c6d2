//! gRPC update requests with field masks (`Update*Request`, protobuf bytes as the wire
//! carries them) turned into patches by the converters the gRPC services use. The first
//! byte picks the request type.
#![no_main]

use incidentd::api::grpc::convert::{
    action_patch_from_pb, component_patch_from_pb, incident_patch_from_pb, integration_patch_from_pb,
    maintenance_patch_from_pb, postmortem_patch_from_pb,
};
use incidentd::domain::Error;
use incidentd::proto as pb;
use incidentd_fuzz::assert_named_refusal;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fn check<T>(result: Result<T, Error>) {
    if let Err(e) = result {
        assert_named_refusal(&e);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else { return };
    match which % 6 {
        0 => {
            if let Ok(r) = pb::UpdateIncidentRequest::decode(bytes) {
                check(incident_patch_from_pb(r.incident.unwrap_or_default(), r.update_mask));
            }
        }
        1 => {
            if let Ok(r) = pb::UpdateComponentRequest::decode(bytes) {
                check(component_patch_from_pb(r.component.unwrap_or_default(), r.update_mask));
            }
        }
        2 => {
            if let Ok(r) = pb::UpdateMaintenanceRequest::decode(bytes) {
                check(maintenance_patch_from_pb(r.maintenance.unwrap_or_default(), r.update_mask));
            }
        }
        3 => {
            if let Ok(r) = pb::UpdatePostmortemRequest::decode(bytes) {
                check(postmortem_patch_from_pb(r.postmortem.unwrap_or_default(), r.update_mask));
            }
        }
        4 => {
            if let Ok(r) = pb::UpdateActionRequest::decode(bytes) {
                check(action_patch_from_pb(r.action.unwrap_or_default(), r.update_mask));
            }
        }
        _ => {
            if let Ok(r) = pb::UpdateIntegrationRequest::decode(bytes) {
                check(integration_patch_from_pb(r.integration.unwrap_or_default(), r.update_mask));
            }
        }
    }
});
