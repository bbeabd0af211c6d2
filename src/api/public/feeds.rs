//! `/history.atom` (RFC 4287) and `/history.rss` (RSS 2.0): the public incident updates,
//! newest first. Each incident contributes an entry for its declaration, one for each
//! public update and one for its published postmortem, linking to the incident's page; each maintenance one for its scheduling and
//! one for each update after (start, completion, notes).

use atom_syndication as atom;
use chrono::{DateTime, FixedOffset, Utc};

use super::PublicSettings;
use super::i18n::Lang;
use crate::domain::public::PublicState;

/// At most this many entries in a feed.
const FEED_ENTRIES: usize = 100;

struct Item {
    id: String,
    title: String,
    link: String,
    body: String,
    at: DateTime<Utc>,
}

fn items(settings: &PublicSettings, state: &PublicState, lang: Lang) -> Vec<Item> {
    let t = lang.strings();
    let mut items = Vec::new();
    for page in state.active.iter().chain(&state.past) {
        let i = &page.incident;
        let reference = i.reference.to_string();
        let link = settings.incident_url(&reference);
        if let Some(p) = &page.postmortem {
            items.push(Item {
                id: format!("{link}#postmortem"),
                title: format!("{}: {} ({reference})", t.postmortem, i.title),
                link: link.clone(),
                body: p.summary.clone(),
                at: p.published_at,
            });
        }
        for u in &page.updates {
            items.push(Item {
                id: format!("{link}#{}", u.id),
                title: format!("{}: {} ({reference})", t.incident_status(u.status), i.title),
                link: link.clone(),
                body: u.body.clone(),
                at: u.created_at,
            });
        }
        let mut body = format!("{}: {}", t.impact, t.impact(i.impact));
        if !i.summary.is_empty() {
            body = format!("{}\n\n{body}", i.summary);
        }
        items.push(Item {
            id: link.clone(),
            title: format!("{} ({reference})", i.title),
            link,
            body,
            at: i.created_at,
        });
    }
    for page in &state.maintenances {
        let m = &page.maintenance;
        let link = format!("{}#maintenance-{}", settings.status_url, m.id);
        let window =
            format!("{}: {}", t.maintenance_window, t.window(m.scheduled_for, m.scheduled_until, state.time_zone));
        let scheduling = page.updates.last().map(|u| {
            let body = if m.body.is_empty() { window.clone() } else { format!("{}\n\n{window}", m.body) };
            (u, body)
        });
        let later = page.later_updates().iter().map(|u| (u, t.maintenance_update_body(u)));
        for (u, body) in later.chain(scheduling) {
            items.push(Item {
                id: format!("{link}/{}", u.id),
                title: format!("{} · {}: {}", t.maintenance, t.maintenance_status(u.status), m.title),
                link: link.clone(),
                body,
                at: u.created_at,
            });
        }
    }
    items.sort_by(|a, b| b.at.cmp(&a.at).then_with(|| b.id.cmp(&a.id)));
    items.truncate(FEED_ENTRIES);
    items
}

fn fixed(t: DateTime<Utc>) -> DateTime<FixedOffset> {
    t.fixed_offset()
}

pub fn atom(settings: &PublicSettings, state: &PublicState, lang: Lang) -> String {
    let entries: Vec<atom::Entry> = items(settings, state, lang)
        .into_iter()
        .map(|item| atom::Entry {
            id: item.id,
            title: atom::Text::plain(item.title),
            updated: fixed(item.at),
            published: Some(fixed(item.at)),
            links: vec![atom::Link {
                href: item.link,
                rel: "alternate".into(),
                mime_type: Some("text/html".into()),
                ..Default::default()
            }],
            content: Some(atom::Content {
                value: Some(item.body),
                content_type: Some("text".into()),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    let feed = atom::Feed {
        id: settings.status_url.clone(),
        title: atom::Text::plain(format!("{} · {}", settings.name, lang.strings().history)),
        updated: fixed(state.updated_at),
        lang: Some(lang.tag().into()),
        authors: vec![atom::Person { name: settings.name.clone(), ..Default::default() }],
        links: vec![
            atom::Link {
                href: settings.status_url.clone(),
                rel: "alternate".into(),
                mime_type: Some("text/html".into()),
                ..Default::default()
            },
            atom::Link {
                href: format!("{}/history.atom", settings.public_url),
                rel: "self".into(),
                mime_type: Some("application/atom+xml".into()),
                ..Default::default()
            },
        ],
        entries,
        ..Default::default()
    };
    feed.to_string()
}

pub fn rss(settings: &PublicSettings, state: &PublicState, lang: Lang) -> String {
    let items: Vec<rss::Item> = items(settings, state, lang)
        .into_iter()
        .map(|item| rss::Item {
            title: Some(item.title),
            link: Some(item.link),
            description: Some(item.body),
            guid: Some(rss::Guid { value: item.id, permalink: false }),
            pub_date: Some(item.at.to_rfc2822()),
            ..Default::default()
        })
        .collect();
    let channel = rss::Channel {
        title: format!("{} · {}", settings.name, lang.strings().history),
        link: settings.status_url.clone(),
        description: lang.strings().history.to_string(),
        language: Some(lang.tag().into()),
        last_build_date: Some(state.updated_at.to_rfc2822()),
        items,
        ..Default::default()
    };
    channel.to_string()
}
