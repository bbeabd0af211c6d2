//! Components: the parts of the product customers see, each with a manually set status and
//! the effective status open incidents impose on it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::error::Result;
use super::validate::{self, Violations};
use super::version::{bump, etag};
use super::wire_enum;

wire_enum! {
    /// A component's status, as on Atlassian Statuspage.
    ComponentStatus {
        Operational = "operational",
        DegradedPerformance = "degraded_performance",
        PartialOutage = "partial_outage",
        MajorOutage = "major_outage",
        UnderMaintenance = "under_maintenance",
    }
}

impl ComponentStatus {
    /// How bad a status is: operational < under_maintenance < degraded_performance <
    /// partial_outage < major_outage.
    pub fn rank(self) -> u8 {
        match self {
            ComponentStatus::Operational => 0,
            ComponentStatus::UnderMaintenance => 1,
            ComponentStatus::DegradedPerformance => 2,
            ComponentStatus::PartialOutage => 3,
            ComponentStatus::MajorOutage => 4,
        }
    }
}

/// The effective status: the worst status imposed by open incidents, else the manual one.
pub fn effective_status(
    manual: ComponentStatus,
    imposed: impl IntoIterator<Item = ComponentStatus>,
) -> ComponentStatus {
    imposed.into_iter().max_by_key(|s| s.rank()).unwrap_or(manual)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Component {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub group: Option<String>,
    pub position: i32,
    /// The manually set status.
    pub status: ComponentStatus,
    /// The worst status imposed by open incidents, else `status`.
    pub effective_status: ComponentStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

impl Component {
    pub fn etag(&self) -> String {
        etag(self.version)
    }

    /// The case-folded name: unique among components, and the name's sort key.
    pub fn name_key(&self) -> String {
        super::fold_case(&self.name)
    }

    /// The case-folded group (empty without one): the group's sort key.
    pub fn group_key(&self) -> String {
        super::fold_case(self.group.as_deref().unwrap_or(""))
    }

    fn normalize(&mut self, v: &mut Violations) {
        self.name = v.required_text("name", Some(&self.name), validate::COMPONENT_NAME_MAX);
        v.text("description", &self.description, validate::COMPONENT_DESCRIPTION_MAX);
        self.group = v.optional_text("group", self.group.as_deref(), validate::COMPONENT_GROUP_MAX);
    }

    /// Applies a patch; returns whether anything changed (the version moves only then).
    /// `imposed` are the statuses open incidents impose, to recompute the effective status.
    pub fn apply_patch(
        &mut self,
        patch: ComponentPatch,
        imposed: &[ComponentStatus],
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let before = self.clone();
        if let Some(name) = patch.name {
            self.name = name;
        }
        if let Some(d) = patch.description {
            self.description = d;
        }
        if let Some(g) = patch.group {
            self.group = g;
        }
        if let Some(p) = patch.position {
            self.position = p;
        }
        if let Some(s) = patch.status {
            self.status = s;
        }
        let mut v = Violations::new();
        self.normalize(&mut v);
        v.finish()?;
        self.effective_status = effective_status(self.status, imposed.iter().copied());
        let changed = *self != before;
        if changed {
            bump(&mut self.version, &mut self.updated_at, now);
        }
        Ok(changed)
    }
}

/// The input to create a component, before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NewComponent {
    pub name: Option<String>,
    pub description: Option<String>,
    pub group: Option<String>,
    pub position: Option<i32>,
    pub status: Option<ComponentStatus>,
}

impl NewComponent {
    pub fn validate(self, id: Uuid, now: DateTime<Utc>) -> Result<Component> {
        let mut v = Violations::new();
        if self.name.is_none() {
            v.add("name", "is required");
        }
        let status = self.status.unwrap_or(ComponentStatus::Operational);
        let mut c = Component {
            id,
            name: self.name.unwrap_or_else(|| "-".into()),
            description: self.description.unwrap_or_default(),
            group: self.group,
            position: self.position.unwrap_or(0),
            status,
            effective_status: status,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        c.normalize(&mut v);
        v.finish()?;
        Ok(c)
    }
}

/// A partial update of a component; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComponentPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub group: Option<Option<String>>,
    pub position: Option<i32>,
    pub status: Option<ComponentStatus>,
}
