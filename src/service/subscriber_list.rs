//! The operators' side of customer subscriptions (`subscriptions:manage`): list, count per
//! component, look up, remove, export as CSV and import a list from another tool, each
//! change and export written to the audit trail (without the addresses).

use serde_json::json;
use uuid::Uuid;

use super::Service;
use crate::domain::page::{Page, PageToken};
use crate::domain::subscriber::{Subscriber, SubscriberStatus};
use crate::domain::subscriber_list::{
    ImportLine, ImportReport, SubscriberCounts, SubscriberFilter, export_header, export_rows, parse_import, skip_reason,
};
use crate::domain::validate::Violations;
use crate::domain::{AuditEvent, Caller, Error, PageRequest, Permission, Result, now};

/// The export reads the list this many at a time.
const EXPORT_BATCH: u32 = 1000;

impl Service {
    /// Customer subscribers, newest first.
    pub async fn list_subscribers(
        &self,
        caller: &Caller,
        filter: SubscriberFilter,
        page: PageRequest,
    ) -> Result<Page<Subscriber>> {
        caller.require(Permission::ManageSubscriptions)?;
        check_filter(&filter)?;
        let rows = self.store.list_subscribers(&filter, page.after.as_ref(), page.size + 1).await?;
        Ok(Page::from_rows(rows, page.size, |s| PageToken::Time { at: s.created_at, id: s.id }))
    }

    pub async fn get_subscriber(&self, caller: &Caller, id: Uuid) -> Result<Subscriber> {
        caller.require(Permission::ManageSubscriptions)?;
        self.store.get_subscriber(id).await?.ok_or_else(|| not_found(id))
    }

    /// How many subscribers there are per status, and how many hear about each component.
    pub async fn count_subscribers(&self, caller: &Caller) -> Result<SubscriberCounts> {
        caller.require(Permission::ManageSubscriptions)?;
        let figures = self.store.subscriber_figures().await?;
        let components = self.component_names().await?;
        Ok(SubscriberCounts::new(&figures.by_status, figures.all_components, &figures.chose, &components))
    }

    /// Removes a subscriber for good (the address and what is queued for it).
    pub async fn delete_subscriber(&self, caller: &Caller, id: Uuid) -> Result<()> {
        caller.require(Permission::ManageSubscriptions)?;
        let mut tx = self.store.begin().await?;
        if !tx.delete_subscriber(id).await? {
            return Err(not_found(id));
        }
        tx.insert_audit_event(&AuditEvent::new(caller, "subscriber.delete", "subscriber", id, json!({}), now()))
            .await?;
        tx.commit().await
    }

    /// The subscribers `filter` selects as CSV (see `domain::subscriber_list`), and how many.
    pub async fn export_subscribers(&self, caller: &Caller, filter: SubscriberFilter) -> Result<(String, usize)> {
        caller.require(Permission::ManageSubscriptions)?;
        check_filter(&filter)?;
        let mut out = export_header()?;
        let mut after: Option<PageToken> = None;
        let mut count = 0;
        loop {
            let batch = self.store.list_subscribers(&filter, after.as_ref(), EXPORT_BATCH).await?;
            export_rows(&mut out, &batch)?;
            count += batch.len();
            match batch.last() {
                Some(last) if batch.len() == EXPORT_BATCH as usize => {
                    after = Some(PageToken::Time { at: last.created_at, id: last.id });
                }
                _ => break,
            }
        }
        let bytes = out.into_inner().map_err(|e| Error::Internal(format!("writing the CSV: {e}")))?;
        let csv = String::from_utf8(bytes).map_err(|e| Error::Internal(e.to_string()))?;
        let mut tx = self.store.begin().await?;
        let details = json!({"count": count});
        tx.insert_audit_event(&AuditEvent::new(caller, "subscriber.export", "subscriber", Uuid::nil(), details, now()))
            .await?;
        tx.commit().await?;
        Ok((csv, count))
    }

    /// Imports a list (CSV with a header; see `domain::subscriber_list`) as confirmed
    /// subscribers, in one transaction: all lines that can be taken are, or none when the
    /// file as a whole is refused. Addresses known already are left as they are.
    pub async fn import_subscribers(&self, caller: &Caller, csv: &str) -> Result<ImportReport> {
        caller.require(Permission::ManageSubscriptions)?;
        let components = self.component_names().await?;
        let (rows, mut report) = parse_import(csv, &components)?;
        let now = now();
        let mut tx = self.store.begin().await?;
        for row in rows {
            let known = match tx.lock_subscriber_by_email(&row.email).await? {
                Some(s) => Some(s.status),
                None => {
                    let s = Subscriber::imported(row.email.clone(), row.components, row.lang, now);
                    (!tx.insert_subscriber(&s).await?).then_some(SubscriberStatus::Confirmed)
                }
            };
            match known {
                Some(status) => report.skipped.push(ImportLine {
                    line: row.line,
                    email: Some(row.email),
                    reason: skip_reason(status).into(),
                }),
                None => report.imported += 1,
            }
        }
        let details =
            json!({"imported": report.imported, "skipped": report.skipped.len(), "rejected": report.rejected.len()});
        tx.insert_audit_event(&AuditEvent::new(caller, "subscriber.import", "subscriber", Uuid::nil(), details, now))
            .await?;
        tx.commit().await?;
        Ok(report)
    }
}

fn check_filter(filter: &SubscriberFilter) -> Result<()> {
    let mut v = Violations::new();
    v.search_text("q", filter.search.as_deref().unwrap_or_default());
    v.finish()
}

fn not_found(id: Uuid) -> Error {
    Error::NotFound { resource: "subscriber", id: id.to_string() }
}
