//! Sending the mails confirmed customer subscribers get about incidents and maintenance. The
//! sequencer queues one per event and subscriber in the event's fan-out
//! (`domain::customer_mail` decides who and what); the workers claim them in batches under a
//! lease, render each event once per language, give every mail its subscriber's own links,
//! and hand them to SMTP over a bounded number of reused connections
//! (`INCIDENTD_SMTP_CONNECTIONS`). A failed mail is retried with backoff; a subscriber who
//! unsubscribed in the meantime is skipped.

use std::collections::HashMap;

use chrono::Duration;
use futures::StreamExt;
use uuid::Uuid;

use super::Service;
use crate::domain::customer_mail::{CustomerMailOutcome, CustomerMailStatus};
use crate::domain::i18n::Lang;
use crate::domain::subscriber::{LinkPurpose, OutboundMail, SubscriberStatus};
use crate::domain::{Result, now};
use crate::notify::customer::{self, Notice, NoticeContext};

/// How many customer mails one claim takes.
const BATCH: u32 = 500;
/// How long a worker holds the mails it claimed before another may try them: a batch at the
/// slowest SMTP server's pace (15 s per mail over one connection) fits well inside.
const LEASE: Duration = Duration::minutes(10);

impl Service {
    /// The workers' step: sends every customer mail that is due, batch by batch. Returns how
    /// many were sent.
    pub async fn send_due_customer_mails(&self) -> Result<usize> {
        if !self.store.customer_mail_due(now()).await? {
            return Ok(0);
        }
        let key = self.link_key().await?.clone();
        let names: HashMap<Uuid, String> = self.component_names().await?.into_iter().collect();
        let cx = NoticeContext {
            page: &self.page_name,
            public_url: &self.public_url,
            time_zone: self.time_zone,
            component_names: &names,
        };
        let sender = self.dispatcher.sender();
        let mut sent = 0;
        loop {
            let at = now();
            let claimed = self.store.claim_customer_mails(at, at + LEASE, BATCH).await?;
            if claimed.is_empty() {
                return Ok(sent);
            }
            let mut notices: HashMap<(Uuid, Lang), Option<Notice>> = HashMap::new();
            let mut outcomes = Vec::with_capacity(claimed.len());
            // Each subscriber's mails, to go out one after another in the order of their
            // events (a resolution never overtakes its declaration); different subscribers' at
            // once.
            let mut by_subscriber: HashMap<Uuid, Vec<(i64, Uuid, i32, OutboundMail)>> = HashMap::new();
            for c in claimed {
                let s = &c.subscriber;
                let skip = |why: &str| CustomerMailOutcome::skipped(c.event_id, s.id, why, at);
                let Some(event) = &c.event else {
                    outcomes.push(skip("the event is no longer stored"));
                    continue;
                };
                if s.status != SubscriberStatus::Confirmed {
                    outcomes.push(skip("the subscriber unsubscribed before it was sent"));
                    continue;
                }
                let lang = Lang::parse(&s.lang).unwrap_or(Lang::En);
                let notice = notices.entry((event.id, lang)).or_insert_with(|| customer::notice(event, lang, &cx));
                let Some(notice) = notice else {
                    outcomes.push(skip("the event is not public"));
                    continue;
                };
                let unsubscribe = self.signed_link(&key, LinkPurpose::Unsubscribe, s.id);
                let manage = self.signed_link(&key, LinkPurpose::Manage, s.id);
                let content = notice.for_subscriber(lang, &self.page_name, &manage, &unsubscribe);
                let mail = OutboundMail::new(
                    Some(s.id),
                    s.email.clone(),
                    content,
                    customer::unsubscribe_headers(&unsubscribe),
                    at,
                );
                by_subscriber.entry(s.id).or_default().push((
                    event.seq.unwrap_or_default(),
                    c.event_id,
                    c.attempts,
                    mail,
                ));
            }
            let results: Vec<Vec<CustomerMailOutcome>> = futures::stream::iter(by_subscriber.into_values())
                .map(|mut mails| async move {
                    mails.sort_by_key(|m| m.0);
                    let mut outcomes = Vec::with_capacity(mails.len());
                    let mut failed = false;
                    for (_, event_id, attempts, mail) in mails {
                        let subscriber = mail.subscriber_id.unwrap_or_default();
                        // After a failure the later ones wait too, so the order holds.
                        let result = if failed {
                            Err("waiting for an earlier mail to this address".to_string())
                        } else {
                            sender.send_mail(&mail).await
                        };
                        outcomes.push(match result {
                            Ok(()) => CustomerMailOutcome::sent(event_id, subscriber, now()),
                            Err(e) => {
                                if !failed {
                                    tracing::warn!(event = %event_id, %subscriber, error = %e, "a customer mail failed; trying again later");
                                }
                                failed = true;
                                CustomerMailOutcome::failed(event_id, subscriber, attempts, e, now())
                            }
                        });
                    }
                    outcomes
                })
                .buffer_unordered(sender.smtp_connections())
                .collect()
                .await;
            let results: Vec<CustomerMailOutcome> = results.into_iter().flatten().collect();
            sent += results.iter().filter(|o| o.status == CustomerMailStatus::Sent).count();
            outcomes.extend(results);
            self.store.record_customer_mails(&outcomes, now()).await?;
        }
    }
}
