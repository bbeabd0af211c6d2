//! Customer subscribers: people who asked, on the status page, to hear about incidents and
//! maintenance by email. The rules live here: what an address must be, the double opt-in
//! lifecycle (`pending → confirmed → unsubscribed`, and back to `pending` on a new request),
//! how often one address may be mailed, and the signed links every mail carries.
//!
//! **Links** are `<purpose>.<payload>` tokens: the subscriber's id, an expiry and an
//! HMAC-SHA256 tag (truncated to 128 bits) under a key only the service holds, in base64url.
//! A confirmation link expires ([`CONFIRM_TTL`]); unsubscribe and manage links do not (a mail
//! read months later must still unsubscribe, RFC 8058), and stop working only when the
//! subscriber is gone. Nothing in a link is secret but the tag: forging one needs the key.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

use super::error::{Error, Result};
use super::validate::Violations;
use super::wire_enum;

wire_enum! {
    /// Where a subscriber stands.
    SubscriberStatus {
        /// Asked; the confirmation mail is out. Nothing else is sent.
        Pending = "pending",
        /// Followed the confirmation link: gets the notifications.
        Confirmed = "confirmed",
        /// Unsubscribed (one click, or an operator removed them).
        Unsubscribed = "unsubscribed",
    }
}

/// How long a confirmation link works.
pub const CONFIRM_TTL: Duration = Duration::hours(48);
/// At most one mail asking to confirm (or saying the address is already subscribed) goes to
/// an address in this time.
pub const MAIL_INTERVAL: Duration = Duration::minutes(5);
/// At most this many such mails go to one address in a day.
pub const MAILS_PER_DAY: i32 = 5;
/// The longest address accepted (RFC 5321's path limit).
pub const EMAIL_MAX: usize = 254;

/// A customer subscriber.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Subscriber {
    pub id: Uuid,
    /// As given, with the domain lower-cased.
    pub email: String,
    /// Only incidents and maintenance affecting these components; everything when empty.
    pub components: Vec<Uuid>,
    /// The language of the mails (`en` or `de`).
    pub lang: String,
    pub status: SubscriberStatus,
    pub created_at: DateTime<Utc>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub unsubscribed_at: Option<DateTime<Utc>>,
    /// When the last confirmation (or already-subscribed) mail was queued, and how many were
    /// queued that day: the per-address limit (bookkeeping, not shown).
    #[serde(skip)]
    pub mailed_at: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub mails_today: i32,
    pub updated_at: DateTime<Utc>,
}

/// The key under which an address is unique: all of it lower-cased.
pub fn email_key(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Checks an address and returns it trimmed, with its domain lower-cased.
pub fn normalize_email(v: &mut Violations, field: &str, raw: Option<&str>) -> String {
    let email = raw.unwrap_or_default().trim();
    if email.is_empty() {
        v.add(field, "is required");
        return String::new();
    }
    if email.len() > EMAIL_MAX {
        v.add(field, format!("must be at most {EMAIL_MAX} characters"));
        return String::new();
    }
    let Some((local, domain)) = email.rsplit_once('@') else {
        v.add(field, "must be an email address such as jane@example.com");
        return String::new();
    };
    let normalized = format!("{local}@{}", domain.to_lowercase());
    let valid = normalized.parse::<lettre::Address>().is_ok()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.');
    if !valid {
        v.add(field, "must be an email address such as jane@example.com");
        return String::new();
    }
    normalized
}

/// The language of a subscriber's mails: `en` (also when absent) or `de`.
pub fn parse_lang(v: &mut Violations, field: &str, raw: Option<&str>) -> &'static str {
    match raw.map(str::trim) {
        None | Some("") | Some("en") => "en",
        Some("de") => "de",
        Some(_) => {
            v.add(field, "must be en or de");
            "en"
        }
    }
}

impl Subscriber {
    /// A new subscriber, pending, with components already checked for count and repeats.
    pub fn new(email: String, components: Vec<Uuid>, lang: &str, now: DateTime<Utc>) -> Self {
        Subscriber {
            id: Uuid::now_v7(),
            email,
            components,
            lang: lang.to_string(),
            status: SubscriberStatus::Pending,
            created_at: now,
            confirmed_at: None,
            unsubscribed_at: None,
            mailed_at: None,
            mails_today: 0,
            updated_at: now,
        }
    }

    /// A subscriber brought over from another tool, where the address was confirmed already.
    pub fn imported(email: String, components: Vec<Uuid>, lang: &str, now: DateTime<Utc>) -> Self {
        Subscriber {
            status: SubscriberStatus::Confirmed,
            confirmed_at: Some(now),
            ..Subscriber::new(email, components, lang, now)
        }
    }

    /// Whether one more confirmation (or already-subscribed) mail may go to this address now,
    /// and if so, counts it.
    pub fn take_mail(&mut self, now: DateTime<Utc>) -> bool {
        if let Some(last) = self.mailed_at {
            if now - last < MAIL_INTERVAL {
                return false;
            }
            if last.date_naive() != now.date_naive() {
                self.mails_today = 0;
            }
        }
        if self.mails_today >= MAILS_PER_DAY {
            return false;
        }
        self.mails_today += 1;
        self.mailed_at = Some(now);
        self.updated_at = now;
        true
    }

    /// A new request for an address already known: a pending or unsubscribed subscriber
    /// starts over as pending with the components and language asked for now; a confirmed
    /// one keeps what it has (changing that takes the manage link its mails carry).
    pub fn ask_again(&mut self, components: Vec<Uuid>, lang: &str, now: DateTime<Utc>) {
        if self.status != SubscriberStatus::Confirmed {
            self.status = SubscriberStatus::Pending;
            self.components = components;
            self.lang = lang.to_string();
            self.unsubscribed_at = None;
            self.updated_at = now;
        }
    }

    /// Follows the confirmation link: pending becomes confirmed (again: no change).
    pub fn confirm(&mut self, now: DateTime<Utc>) -> Result<bool> {
        match self.status {
            SubscriberStatus::Pending => {
                self.status = SubscriberStatus::Confirmed;
                self.confirmed_at = Some(now);
                self.updated_at = now;
                Ok(true)
            }
            SubscriberStatus::Confirmed => Ok(false),
            SubscriberStatus::Unsubscribed => Err(Error::invalid("token", LINK_CANCELLED)),
        }
    }

    /// A link of a subscription that has ended (unsubscribed, or removed) works no more.
    pub fn still_subscribed(&self) -> Result<()> {
        match self.status {
            SubscriberStatus::Unsubscribed => Err(Error::invalid("token", LINK_CANCELLED)),
            SubscriberStatus::Pending | SubscriberStatus::Confirmed => Ok(()),
        }
    }

    /// Follows the manage link's form: from now on only these components (checked for count
    /// and repeats already), or everything when empty.
    pub fn choose_components(&mut self, components: Vec<Uuid>, now: DateTime<Utc>) -> Result<bool> {
        self.still_subscribed()?;
        if self.components == components {
            return Ok(false);
        }
        self.components = components;
        self.updated_at = now;
        Ok(true)
    }

    /// Unsubscribes (again: no change).
    pub fn unsubscribe(&mut self, now: DateTime<Utc>) -> bool {
        if self.status == SubscriberStatus::Unsubscribed {
            return false;
        }
        self.status = SubscriberStatus::Unsubscribed;
        self.unsubscribed_at = Some(now);
        self.updated_at = now;
        true
    }
}

/// A mail that is no event's delivery (the confirmation mail), queued in the transaction
/// that decided to send it and sent by the workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundMail {
    pub id: Uuid,
    pub subscriber_id: Option<Uuid>,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// Extra headers (`List-Unsubscribe`, ...).
    pub headers: Vec<(String, String)>,
    pub status: MailStatus,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

wire_enum! {
    /// Where a queued mail stands.
    MailStatus {
        Pending = "pending",
        Sent = "sent",
        /// Every attempt failed.
        Failed = "failed",
    }
}

/// A queued mail is tried at most this often.
pub const MAIL_ATTEMPTS: i32 = 8;

impl OutboundMail {
    pub fn new(
        subscriber_id: Option<Uuid>,
        to: String,
        (subject, text, html): (String, String, String),
        headers: Vec<(String, String)>,
        now: DateTime<Utc>,
    ) -> Self {
        OutboundMail {
            id: Uuid::now_v7(),
            subscriber_id,
            to,
            subject,
            text,
            html,
            headers,
            status: MailStatus::Pending,
            attempts: 0,
            next_attempt_at: now,
            last_error: None,
            created_at: now,
            sent_at: None,
        }
    }

    /// Records a failed attempt: tried again after a growing pause (30 s, 1 min, 2 min, …),
    /// or failed for good after [`MAIL_ATTEMPTS`].
    pub fn failed(&mut self, error: String, now: DateTime<Utc>) {
        self.last_error = Some(error);
        if self.attempts >= MAIL_ATTEMPTS {
            self.status = MailStatus::Failed;
        } else {
            self.next_attempt_at = now + Duration::seconds(30 << (self.attempts.clamp(1, 10) - 1));
        }
    }

    pub fn sent(&mut self, now: DateTime<Utc>) {
        self.status = MailStatus::Sent;
        self.sent_at = Some(now);
        self.last_error = None;
    }
}

/// Why a link did not work: the messages of its errors, which the pages word themselves.
pub const LINK_INVALID: &str = "is not a valid link: copy the whole link from the mail";
pub const LINK_EXPIRED: &str = "has expired: subscribe again on the status page for a new link";
pub const LINK_CANCELLED: &str = "belongs to a subscription cancelled since: subscribe again on the status page";

/// Why a link did not work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkProblem {
    Invalid,
    Expired,
    Cancelled,
}

/// Which [`LinkProblem`] an error of a link is, if it is one.
pub fn link_problem(e: &Error) -> Option<LinkProblem> {
    match e {
        Error::Validation(v) => v.iter().find(|f| f.field == "token").and_then(|f| match f.message.as_str() {
            LINK_INVALID => Some(LinkProblem::Invalid),
            LINK_EXPIRED => Some(LinkProblem::Expired),
            LINK_CANCELLED => Some(LinkProblem::Cancelled),
            _ => None,
        }),
        _ => None,
    }
}

/// What a link lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkPurpose {
    Confirm,
    Unsubscribe,
    Manage,
}

impl LinkPurpose {
    /// The page under `/status/subscribe/` a link of this purpose opens.
    pub fn page(self) -> &'static str {
        match self {
            LinkPurpose::Confirm => "confirm",
            LinkPurpose::Unsubscribe => "unsubscribe",
            LinkPurpose::Manage => "manage",
        }
    }

    fn tag(self) -> &'static str {
        match self {
            LinkPurpose::Confirm => "c",
            LinkPurpose::Unsubscribe => "u",
            LinkPurpose::Manage => "m",
        }
    }
}

/// The key links are signed with (32 random bytes, shared by every replica).
#[derive(Clone)]
pub struct LinkKey([u8; 32]);

impl std::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkKey(…)")
    }
}

/// Bytes of the tag kept.
const TAG_BYTES: usize = 16;
/// The expiry of links that do not expire.
const NEVER: i64 = i64::MAX;

impl LinkKey {
    pub fn new(bytes: [u8; 32]) -> Self {
        LinkKey(bytes)
    }

    /// A fresh random key.
    pub fn generate() -> Self {
        LinkKey(rand::random())
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn mac(&self, purpose: LinkPurpose, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(purpose.tag().as_bytes());
        mac.update(payload);
        mac
    }

    /// A link token for `subscriber`: a confirmation expires after [`CONFIRM_TTL`], the
    /// others never.
    pub fn sign(&self, purpose: LinkPurpose, subscriber: Uuid, now: DateTime<Utc>) -> String {
        let expires = match purpose {
            LinkPurpose::Confirm => (now + CONFIRM_TTL).timestamp(),
            LinkPurpose::Unsubscribe | LinkPurpose::Manage => NEVER,
        };
        let mut payload = Vec::with_capacity(16 + 8 + TAG_BYTES);
        payload.extend_from_slice(subscriber.as_bytes());
        payload.extend_from_slice(&expires.to_be_bytes());
        let tag = self.mac(purpose, &payload).finalize().into_bytes();
        payload.extend_from_slice(&tag[..TAG_BYTES]);
        format!("{}.{}", purpose.tag(), URL_SAFE_NO_PAD.encode(payload))
    }

    /// The subscriber a token of `purpose` names, if its tag is right and it has not expired.
    pub fn verify(&self, purpose: LinkPurpose, token: &str, now: DateTime<Utc>) -> Result<Uuid> {
        let invalid = || Error::invalid("token", LINK_INVALID);
        let rest = token.strip_prefix(purpose.tag()).and_then(|r| r.strip_prefix('.')).ok_or_else(invalid)?;
        let bytes = URL_SAFE_NO_PAD.decode(rest).map_err(|_| invalid())?;
        if bytes.len() != 16 + 8 + TAG_BYTES {
            return Err(invalid());
        }
        let (payload, tag) = bytes.split_at(16 + 8);
        self.mac(purpose, payload).verify_truncated_left(tag).map_err(|_| invalid())?;
        let id = Uuid::from_slice(&payload[..16]).map_err(|_| invalid())?;
        let expires = i64::from_be_bytes(payload[16..].try_into().map_err(|_| invalid())?);
        if expires != NEVER && now.timestamp() > expires {
            return Err(Error::invalid("token", LINK_EXPIRED));
        }
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn addresses_are_checked_and_their_domain_lower_cased() {
        let mut v = Violations::new();
        assert_eq!(normalize_email(&mut v, "email", Some(" Jane.Doe@Example.COM ")), "Jane.Doe@example.com");
        assert!(v.finish().is_ok());
        for bad in ["", "jane", "jane@", "@example.com", "jane@localhost", "jane doe@example.com", "jane@example."] {
            let mut v = Violations::new();
            normalize_email(&mut v, "email", Some(bad));
            assert!(v.finish().is_err(), "{bad:?} was accepted");
        }
        assert_eq!(email_key("Jane.Doe@Example.com"), "jane.doe@example.com");
    }

    #[test]
    fn links_verify_only_for_their_purpose_key_and_lifetime() {
        let key = LinkKey::new([7; 32]);
        let id = Uuid::now_v7();
        let confirm = key.sign(LinkPurpose::Confirm, id, t(0));
        assert_eq!(key.verify(LinkPurpose::Confirm, &confirm, t(3600)).unwrap(), id);
        assert!(key.verify(LinkPurpose::Confirm, &confirm, t(49 * 3600)).is_err(), "expired after 48 h");
        assert!(key.verify(LinkPurpose::Unsubscribe, &confirm, t(0)).is_err(), "another purpose");
        assert!(LinkKey::new([8; 32]).verify(LinkPurpose::Confirm, &confirm, t(0)).is_err(), "another key");
        let mut forged = confirm.clone().into_bytes();
        let last = forged.len() - 3;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        assert!(key.verify(LinkPurpose::Confirm, std::str::from_utf8(&forged).unwrap(), t(0)).is_err());
        let unsubscribe = key.sign(LinkPurpose::Unsubscribe, id, t(0));
        assert_eq!(
            key.verify(LinkPurpose::Unsubscribe, &unsubscribe, t(10 * 365 * 86400)).unwrap(),
            id,
            "never expires"
        );
        assert!(key.verify(LinkPurpose::Manage, "m.", t(0)).is_err());
    }

    #[test]
    fn one_address_gets_at_most_one_mail_per_interval_and_five_a_day() {
        let mut s = Subscriber::new("a@example.com".into(), vec![], "en", t(0));
        assert!(s.take_mail(t(0)));
        assert!(!s.take_mail(t(60)), "within five minutes");
        for i in 1..5 {
            assert!(s.take_mail(t(i * 600)), "mail {i}");
        }
        assert!(!s.take_mail(t(5 * 600)), "the sixth of the day");
        assert!(s.take_mail(t(86_400 * 2)), "a new day");
    }

    #[test]
    fn the_lifecycle_is_double_opt_in() {
        let mut s = Subscriber::new("a@example.com".into(), vec![], "en", t(0));
        assert_eq!(s.status, SubscriberStatus::Pending);
        assert!(s.confirm(t(1)).unwrap());
        assert!(!s.confirm(t(2)).unwrap(), "confirming twice changes nothing");
        let c = Uuid::now_v7();
        s.ask_again(vec![c], "de", t(3));
        assert_eq!(
            (s.status, s.components.len()),
            (SubscriberStatus::Confirmed, 0),
            "a confirmed one keeps its choice"
        );
        assert!(s.unsubscribe(t(4)));
        assert!(!s.unsubscribe(t(5)));
        assert!(s.confirm(t(6)).is_err(), "an old confirmation link does not resubscribe");
        s.ask_again(vec![c], "de", t(7));
        assert_eq!((s.status, s.components.clone(), s.lang.as_str()), (SubscriberStatus::Pending, vec![c], "de"));
    }
}
