//! Follow-up actions.

use async_trait::async_trait;
use chrono::NaiveDate;
use uuid::Uuid;

use crate::domain::Result;
use crate::domain::action::Action;
use crate::domain::page::PageToken;
use crate::domain::query::ActionFilter;

#[async_trait]
pub trait ActionStore {
    async fn get_action(&self, id: Uuid) -> Result<Option<Action>>;
    /// Actions open first, then by due date (none last), then id; after `after`, at most `limit`.
    async fn list_actions(&self, filter: &ActionFilter, after: Option<&PageToken>, limit: u32) -> Result<Vec<Action>>;
    /// Whether an open action is past its due date (before `today`) and not yet announced.
    async fn overdue_actions_due(&self, today: NaiveDate) -> Result<bool>;
}

#[async_trait]
pub trait ActionTx {
    async fn insert_action(&mut self, action: &Action) -> Result<()>;
    /// Reads an action and locks it.
    async fn lock_action(&mut self, id: Uuid) -> Result<Option<Action>>;
    async fn update_action(&mut self, action: &Action) -> Result<()>;
    async fn delete_action(&mut self, id: Uuid) -> Result<()>;
    /// Locks an open action past its due date (before `today`) whose overdue notice for that
    /// date has not gone out, skipping any another transaction holds, and records that it
    /// goes out now: each is announced once per due date.
    async fn claim_overdue_action(&mut self, today: NaiveDate) -> Result<Option<Action>>;
}
