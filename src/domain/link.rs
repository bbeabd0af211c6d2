//! Relations between incidents: typed links (each side sees the other, the kind turned
//! around) and merging a duplicate into the incident that carries on.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::error::{Error, Result};
use super::ids::IncidentRef;
use super::incident::{AffectedComponent, Incident, Status};
use super::validate;
use super::wire_enum;

wire_enum! {
    /// How one incident relates to another, read from the first: it is `related` to it, was
    /// `caused_by` it, or is a `recurrence_of` it. The other side reads `related`, `causes`
    /// and `recurred_as`; a link may be made from either side.
    LinkKind {
        Related = "related",
        CausedBy = "caused_by",
        RecurrenceOf = "recurrence_of",
        Causes = "causes",
        RecurredAs = "recurred_as",
    }
}

impl LinkKind {
    /// The kinds links are stored as (read from their `from` side).
    pub const STORED: &'static [LinkKind] = &[LinkKind::Related, LinkKind::CausedBy, LinkKind::RecurrenceOf];

    /// The kind as the other side reads it.
    pub fn inverse(self) -> LinkKind {
        match self {
            LinkKind::Related => LinkKind::Related,
            LinkKind::CausedBy => LinkKind::Causes,
            LinkKind::Causes => LinkKind::CausedBy,
            LinkKind::RecurrenceOf => LinkKind::RecurredAs,
            LinkKind::RecurredAs => LinkKind::RecurrenceOf,
        }
    }

    /// Whether the link reads the same from both sides.
    pub fn is_symmetric(self) -> bool {
        self == LinkKind::Related
    }

    /// How a timeline says it: "caused by", "a recurrence of".
    pub fn phrase(self) -> &'static str {
        match self {
            LinkKind::Related => "related to",
            LinkKind::CausedBy => "caused by",
            LinkKind::Causes => "the cause of",
            LinkKind::RecurrenceOf => "a recurrence of",
            LinkKind::RecurredAs => "recurred as",
        }
    }
}

/// A link as stored: `from` is `kind` (one of [`LinkKind::STORED`]) `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentLink {
    pub id: Uuid,
    pub from_incident_id: Uuid,
    pub to_incident_id: Uuid,
    pub kind: LinkKind,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

impl IncidentLink {
    /// The link `this` makes with `kind` to `other`, stored from the side that reads it in
    /// one of the stored kinds (`A causes B` is stored as `B caused_by A`).
    pub fn new(this: Uuid, kind: LinkKind, other: Uuid, created_by: &str, now: DateTime<Utc>) -> Self {
        let (from, to, kind) =
            if LinkKind::STORED.contains(&kind) { (this, other, kind) } else { (other, this, kind.inverse()) };
        IncidentLink {
            id: Uuid::now_v7(),
            from_incident_id: from,
            to_incident_id: to,
            kind,
            created_by: created_by.to_string(),
            created_at: now,
        }
    }

    /// The kind and the other incident, as `incident_id`'s side reads them.
    pub fn seen_from(&self, incident_id: Uuid) -> (LinkKind, Uuid) {
        if self.from_incident_id == incident_id {
            (self.kind, self.to_incident_id)
        } else {
            (self.kind.inverse(), self.from_incident_id)
        }
    }
}

/// The other incident of a link, as a list of links shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LinkedIncident {
    pub id: Uuid,
    #[schema(value_type = String, example = "INC-7")]
    pub reference: IncidentRef,
    pub title: String,
    pub status: Status,
}

/// A link as one of its incidents sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Link {
    pub id: Uuid,
    /// How this incident relates to the other.
    pub kind: LinkKind,
    pub incident: LinkedIncident,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

/// The affected components of two incidents together: each component once, with the worse
/// of the statuses they impose on it (the target's order first).
pub fn merge_components(target: &[AffectedComponent], source: &[AffectedComponent]) -> Vec<AffectedComponent> {
    let mut merged = target.to_vec();
    for c in source {
        match merged.iter_mut().find(|m| m.component_id == c.component_id) {
            Some(m) if c.status.rank() > m.status.rank() => m.status = c.status,
            Some(_) => {}
            None => merged.push(c.clone()),
        }
    }
    merged
}

/// Why an incident cannot take part in a merge as `role` ("source" or "target"), if it cannot.
fn unmergeable(incident: &Incident, role: &str) -> Option<String> {
    match incident.status {
        Status::Merged => Some(format!("the {role} {} was merged already and is read-only", incident.reference)),
        Status::Closed => Some(format!("the {role} {} is closed: closed incidents are final", incident.reference)),
        _ => None,
    }
}

impl Incident {
    /// Merges this incident (the duplicate) into `target`: the target takes its affected
    /// components (the worse status where both name one), its acknowledgement if the target
    /// has none, and the earlier start and detection; this one becomes `merged`, read-only,
    /// pointing at the target, affecting nothing. Merging into itself (`into`), into or from a
    /// merged or closed incident is refused and changes nothing.
    pub fn merge_into(&mut self, target: &mut Incident, now: DateTime<Utc>) -> Result<()> {
        if self.id == target.id {
            return Err(Error::invalid("into", "an incident cannot be merged into itself"));
        }
        if let Some(why) = unmergeable(target, "target").or_else(|| unmergeable(self, "source")) {
            return Err(Error::Conflict(format!("cannot merge {} into {}: {why}", self.reference, target.reference)));
        }
        let components = merge_components(&target.affected_components, &self.affected_components);
        if components.len() > validate::AFFECTED_COMPONENTS_MAX {
            return Err(Error::Conflict(format!(
                "cannot merge {} into {}: together they affect more than {} components",
                self.reference,
                target.reference,
                validate::AFFECTED_COMPONENTS_MAX
            )));
        }
        target.affected_components = components;
        if target.acknowledged_at.is_none() && self.acknowledged_at.is_some() {
            target.acknowledged_at = self.acknowledged_at;
            target.acknowledged_by = self.acknowledged_by.clone();
        }
        target.started_at = target.started_at.min(self.started_at);
        target.detected_at = target.detected_at.min(self.detected_at);
        target.touch(now);
        self.status = Status::Merged;
        self.merged_into = Some(target.id);
        self.affected_components.clear();
        self.touch(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::component::ComponentStatus;
    use crate::domain::incident::{NewIncident, Severity};

    fn incident(title: &str) -> Incident {
        let input = NewIncident { title: Some(title.into()), severity: Some(Severity::Sev2), ..Default::default() };
        let mut i = input.validate(Uuid::now_v7(), crate::domain::now()).unwrap().incident;
        i.reference = IncidentRef(title.len() as i64);
        i
    }

    #[test]
    fn each_side_reads_the_link_its_own_way() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let now = crate::domain::now();
        let link = IncidentLink::new(a, LinkKind::Causes, b, "alice", now);
        assert_eq!((link.from_incident_id, link.to_incident_id, link.kind), (b, a, LinkKind::CausedBy));
        assert_eq!(link.seen_from(a), (LinkKind::Causes, b));
        assert_eq!(link.seen_from(b), (LinkKind::CausedBy, a));
        let related = IncidentLink::new(a, LinkKind::Related, b, "alice", now);
        assert_eq!((related.seen_from(a).0, related.seen_from(b).0), (LinkKind::Related, LinkKind::Related));
        for k in LinkKind::ALL {
            assert_eq!(k.inverse().inverse(), *k);
        }
    }

    #[test]
    fn merging_moves_components_keeping_the_worse_status_and_refuses_what_it_must() {
        let now = crate::domain::now();
        let (c1, c2) = (Uuid::now_v7(), Uuid::now_v7());
        let mut target = incident("target");
        let mut source = incident("the duplicate");
        target.affected_components =
            vec![AffectedComponent { component_id: c1, status: ComponentStatus::DegradedPerformance }];
        source.affected_components = vec![
            AffectedComponent { component_id: c1, status: ComponentStatus::MajorOutage },
            AffectedComponent { component_id: c2, status: ComponentStatus::PartialOutage },
        ];
        source.acknowledged_at = Some(now);
        source.acknowledged_by = Some("bob".into());
        let mut same = source.clone();
        assert_eq!(same.clone().merge_into(&mut same, now).unwrap_err().violations()[0].field, "into");
        source.merge_into(&mut target, now).unwrap();
        let statuses: Vec<_> = target.affected_components.iter().map(|c| (c.component_id, c.status)).collect();
        assert_eq!(statuses, [(c1, ComponentStatus::MajorOutage), (c2, ComponentStatus::PartialOutage)]);
        assert_eq!(target.acknowledged_by.as_deref(), Some("bob"));
        assert_eq!(
            (source.status, source.merged_into, source.affected_components.len()),
            (Status::Merged, Some(target.id), 0)
        );
        assert!(matches!(incident("again").merge_into(&mut source, now), Err(Error::Conflict(_))), "into a merged one");
        let mut closed = incident("closed");
        closed.transition(Status::Resolved, now).unwrap();
        closed.transition(Status::Closed, now).unwrap();
        let mut other = incident("other");
        let before = other.clone();
        assert!(matches!(other.merge_into(&mut closed, now), Err(Error::Conflict(_))), "into a closed one");
        assert_eq!(other, before, "a refused merge changes nothing");
    }
}
