//! Customer subscriptions from the status page: subscribing (double opt-in), confirming and
//! unsubscribing through signed links, and the workers' sending of the queued mails.
//!
//! A subscribe request gets the same answer whatever the address's state, so nobody learns
//! from it whether an address is subscribed: a new or pending address gets a confirmation
//! mail, a confirmed one a note that it is subscribed already (with its links), each at most
//! as often as [`Subscriber::take_mail`] allows.

use chrono::Duration;
use uuid::Uuid;

use super::Service;
use crate::domain::subscriber::{
    LinkKey, LinkPurpose, OutboundMail, Subscriber, SubscriberStatus, normalize_email, parse_lang,
};
use crate::domain::validate::Violations;
use crate::domain::{Error, Result, now};
use crate::notify::customer;
use crate::store::Transaction;

/// The name of the link-signing key in `service_keys`.
const LINK_KEY: &str = "subscriber_links";
/// How long a worker holds a mail it is sending before another may try it.
const MAIL_LEASE: Duration = Duration::seconds(60);

/// A request to subscribe, before validation.
#[derive(Debug, Clone, Default)]
pub struct SubscribeRequest {
    pub email: Option<String>,
    /// Only these components; every one when empty.
    pub components: Vec<Uuid>,
    /// `en` or `de`; English when absent.
    pub lang: Option<String>,
}

impl Service {
    /// The key links are signed with: read (or made, once for every replica) on first use.
    pub(super) async fn link_key(&self) -> Result<&LinkKey> {
        self.link_key
            .get_or_try_init(|| async {
                let mut tx = self.store.begin().await?;
                let stored = tx.service_key(LINK_KEY, LinkKey::generate().bytes(), now()).await?;
                tx.commit().await?;
                let bytes: [u8; 32] =
                    stored.try_into().map_err(|_| Error::Internal("the stored link key is not 32 bytes".into()))?;
                Ok(LinkKey::new(bytes))
            })
            .await
    }

    /// The link of `purpose` for a subscriber, signed with `key`: a page under
    /// `/status/subscribe/` carrying the token.
    pub(super) fn signed_link(&self, key: &LinkKey, purpose: LinkPurpose, subscriber: Uuid) -> String {
        let token = key.sign(purpose, subscriber, now());
        format!("{}/status/subscribe/{}?token={token}", self.public_url, purpose.page())
    }

    async fn link(&self, purpose: LinkPurpose, subscriber: Uuid) -> Result<String> {
        Ok(self.signed_link(self.link_key().await?, purpose, subscriber))
    }

    /// Subscribes an address (no key needed): see the module's notes.
    pub async fn subscribe(&self, input: SubscribeRequest) -> Result<()> {
        if !self.dispatcher.sender().can_email() {
            return Err(Error::NotConfigured(
                "this status page sends no email (INCIDENTD_SMTP_URL is not set): follow its feeds instead".into(),
            ));
        }
        let mut v = Violations::new();
        let email = normalize_email(&mut v, "email", input.email.as_deref());
        v.component_ids("components", &input.components);
        let lang = parse_lang(&mut v, "lang", input.lang.as_deref());
        v.finish()?;
        // Read (or made) before the transaction: making it takes a transaction of its own.
        self.link_key().await?;
        let now = now();
        let mut tx = self.store.begin().await?;
        super::components::refuse_unknown_components(tx.as_mut(), "components", &input.components, |_| true).await?;
        let mut subscriber = match tx.lock_subscriber_by_email(&email).await? {
            Some(mut s) => {
                s.ask_again(input.components.clone(), lang, now);
                s
            }
            None => {
                let s = Subscriber::new(email.clone(), input.components.clone(), lang, now);
                if tx.insert_subscriber(&s).await? {
                    s
                } else {
                    // Another request for the address got there first.
                    let mut s = tx
                        .lock_subscriber_by_email(&email)
                        .await?
                        .ok_or_else(|| Error::Internal("a subscriber vanished between two statements".into()))?;
                    s.ask_again(input.components.clone(), lang, now);
                    s
                }
            }
        };
        if subscriber.take_mail(now) {
            let mail = self.welcome_mail(&subscriber).await?;
            tx.insert_mail(&mail).await?;
        }
        tx.update_subscriber(&subscriber).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The mail a subscribe request sends: the confirmation, or the note that the address is
    /// subscribed already. Both carry the one-click unsubscribe headers.
    async fn welcome_mail(&self, s: &Subscriber) -> Result<OutboundMail> {
        let unsubscribe = self.link(LinkPurpose::Unsubscribe, s.id).await?;
        let manage = self.link(LinkPurpose::Manage, s.id).await?;
        let content = if s.status == SubscriberStatus::Confirmed {
            customer::already_subscribed(&self.page_name, &s.lang, &manage, &unsubscribe)
        } else {
            let confirm = self.link(LinkPurpose::Confirm, s.id).await?;
            customer::confirmation(&self.page_name, &s.lang, &confirm, &manage, &unsubscribe)
        };
        Ok(OutboundMail::new(Some(s.id), s.email.clone(), content, customer::unsubscribe_headers(&unsubscribe), now()))
    }

    /// The subscriber a link of `purpose` names, without changing anything (the page that
    /// asks before unsubscribing).
    pub async fn subscriber_for_link(&self, purpose: LinkPurpose, token: &str) -> Result<Subscriber> {
        let id = self.link_key().await?.verify(purpose, token, now())?;
        self.store.get_subscriber(id).await?.ok_or_else(invalid_link)
    }

    /// Follows a confirmation link.
    pub async fn confirm_subscriber(&self, token: &str) -> Result<Subscriber> {
        let id = self.link_key().await?.verify(LinkPurpose::Confirm, token, now())?;
        let mut tx = self.store.begin().await?;
        let mut s = locked(tx.as_mut(), id).await?;
        if s.confirm(now())? {
            tx.update_subscriber(&s).await?;
            tx.commit().await?;
        }
        Ok(s)
    }

    /// The subscriber a manage link names, to show what it chose; an ended subscription's
    /// link works no more.
    pub async fn subscriber_to_manage(&self, token: &str) -> Result<Subscriber> {
        let s = self.subscriber_for_link(LinkPurpose::Manage, token).await?;
        s.still_subscribed()?;
        Ok(s)
    }

    /// Follows the manage link's form: the subscriber hears only of `components` from now on
    /// (of everything when empty).
    pub async fn choose_components(&self, token: &str, components: Vec<Uuid>) -> Result<Subscriber> {
        let id = self.link_key().await?.verify(LinkPurpose::Manage, token, now())?;
        let mut v = Violations::new();
        v.component_ids("components", &components);
        v.finish()?;
        let mut tx = self.store.begin().await?;
        super::components::refuse_unknown_components(tx.as_mut(), "components", &components, |_| true).await?;
        let mut s = locked(tx.as_mut(), id).await?;
        if s.choose_components(components, now())? {
            tx.update_subscriber(&s).await?;
            tx.commit().await?;
        }
        Ok(s)
    }

    /// Follows an unsubscribe link (or its one-click POST).
    pub async fn unsubscribe_subscriber(&self, token: &str) -> Result<Subscriber> {
        let id = self.link_key().await?.verify(LinkPurpose::Unsubscribe, token, now())?;
        let mut tx = self.store.begin().await?;
        let mut s = locked(tx.as_mut(), id).await?;
        if s.unsubscribe(now()) {
            tx.update_subscriber(&s).await?;
            tx.commit().await?;
        }
        Ok(s)
    }

    /// The workers' step: sends every queued mail that is due, each under a lease (so
    /// another worker leaves it alone), recording the outcome; a failure is retried later.
    pub async fn send_due_mails(&self) -> Result<usize> {
        let mut sent = 0;
        if !self.store.mail_due(now()).await? {
            return Ok(0);
        }
        loop {
            let mut tx = self.store.begin().await?;
            let at = now();
            let Some(mut mail) = tx.claim_mail(at, at + MAIL_LEASE).await? else { return Ok(sent) };
            tx.commit().await?;
            let outcome = self.dispatcher.sender().send_mail(&mail).await;
            let done = now();
            match outcome {
                Ok(()) => {
                    mail.sent(done);
                    sent += 1;
                }
                Err(e) => {
                    tracing::warn!(mail = %mail.id, error = %e, "sending a queued mail failed; trying again later");
                    mail.failed(e, done);
                }
            }
            let mut tx = self.store.begin().await?;
            tx.update_mail(&mail).await?;
            tx.commit().await?;
        }
    }
}

/// The subscriber a valid link names; one removed since reads as an invalid link.
async fn locked(tx: &mut dyn Transaction, id: Uuid) -> Result<Subscriber> {
    tx.lock_subscriber(id).await?.ok_or_else(invalid_link)
}

fn invalid_link() -> Error {
    Error::invalid("token", crate::domain::subscriber::LINK_INVALID)
}
