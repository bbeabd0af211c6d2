//! The snapshot the public routes serve: every document rendered, compressed (gzip and
//! brotli) and tagged once per change, so a request costs a lookup and a copy, never a
//! database query or a rendering. Incident pages (one per incident and language, a thousand
//! and more during an alert storm) are not rendered ahead: the first request after a rebuild
//! renders one from the snapshot's state, in memory, and the page is cached until the next.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use axum::body::Bytes;
use chrono::Datelike;
use sha2::{Digest, Sha256};

use super::i18n::Lang;
use super::statuspage::MaintenanceList;
use super::{PublicSettings, badge, feeds, html, statuspage};
use crate::domain::IncidentRef;
use crate::domain::public::{PublicIncidentPage, PublicState};

/// One document in every encoding it is served in.
#[derive(Debug, Clone)]
pub struct Doc {
    pub content_type: &'static str,
    /// A strong entity tag: a hash of the identity bytes.
    pub etag: String,
    pub identity: Bytes,
    pub gzip: Bytes,
    pub br: Bytes,
}

impl Doc {
    /// Compresses `body`, unless `previous` holds the same bytes already compressed.
    pub fn new(content_type: &'static str, body: Vec<u8>, previous: Option<&Doc>) -> Doc {
        let digest = Sha256::digest(&body);
        let etag = format!("\"{}\"", hex(&digest[..16]));
        if let Some(p) = previous.filter(|p| p.etag == etag && p.content_type == content_type) {
            return p.clone();
        }
        Doc { content_type, gzip: gzip(&body).into(), br: brotli(&body).into(), identity: body.into(), etag }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn gzip(body: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    encoder.write_all(body).expect("writing to memory");
    encoder.finish().expect("writing to memory")
}

fn brotli(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let params = brotli::enc::BrotliEncoderParams { quality: 6, lgwin: 20, ..Default::default() };
    brotli::BrotliCompress(&mut std::io::Cursor::new(body), &mut out, &params).expect("writing to memory");
    out
}

pub const HTML: &str = "text/html; charset=utf-8";
pub const JSON: &str = "application/json";
pub const ATOM: &str = "application/atom+xml; charset=utf-8";
pub const RSS: &str = "application/rss+xml; charset=utf-8";
pub const SVG: &str = "image/svg+xml";

/// Everything public, as of one state.
pub struct Snapshot {
    /// Counts rebuilds: what was cached for an older one is stale.
    pub generation: u64,
    pub state: Arc<PublicState>,
    /// By path (and `|<lang>` for pages).
    docs: HashMap<String, Doc>,
}

/// The key of a page in one language.
pub fn page_key(path: &str, lang: Lang) -> String {
    format!("{path}|{}", lang.tag())
}

impl Snapshot {
    /// How many documents it serves.
    pub fn documents(&self) -> usize {
        self.docs.len()
    }

    pub fn get(&self, key: &str) -> Option<&Doc> {
        self.docs.get(key)
    }

    /// The incident with this reference, if the state holds it.
    pub fn incident(&self, reference: IncidentRef) -> Option<&PublicIncidentPage> {
        self.state.active.iter().chain(&self.state.past).find(|p| p.incident.reference == reference)
    }

    /// Renders every document of `state`, reusing what `previous` compressed when unchanged.
    pub fn build(
        settings: &PublicSettings,
        state: PublicState,
        previous: Option<&Snapshot>,
        generation: u64,
    ) -> anyhow::Result<Snapshot> {
        let mut docs: HashMap<String, Doc> = HashMap::new();
        let mut put = |key: String, content_type: &'static str, body: Vec<u8>| {
            let doc = Doc::new(content_type, body, previous.and_then(|p| p.docs.get(&key)));
            docs.insert(key, doc);
        };
        let documents = statuspage::Documents::new(settings, &state);
        put("/api/v2/summary.json".into(), JSON, json(&documents.summary()));
        put("/api/v2/status.json".into(), JSON, json(&documents.status_doc()));
        put("/api/v2/components.json".into(), JSON, json(&documents.components_doc()));
        put("/api/v2/incidents.json".into(), JSON, json(&documents.incidents_doc()));
        put("/api/v2/incidents/unresolved.json".into(), JSON, json(&documents.unresolved_doc()));
        for (path, list) in [
            ("/api/v2/scheduled-maintenances.json", MaintenanceList::All),
            ("/api/v2/scheduled-maintenances/upcoming.json", MaintenanceList::Upcoming),
            ("/api/v2/scheduled-maintenances/active.json", MaintenanceList::Active),
        ] {
            put(path.into(), JSON, json(&documents.maintenances_doc(list)));
        }
        let feed_lang = settings.default_lang();
        put("/history.atom".into(), ATOM, feeds::atom(settings, &state, feed_lang).into_bytes());
        put("/history.rss".into(), RSS, feeds::rss(settings, &state, feed_lang).into_bytes());
        let overall = statuspage::indicator(&state);
        let overall_class = match overall.indicator {
            "critical" => "s4",
            "major" => "s3",
            "minor" => "s2",
            _ => "s0",
        };
        put(
            "/badge.svg".into(),
            SVG,
            badge::badge(&settings.name, &overall.description.to_lowercase(), overall_class).into_bytes(),
        );
        for c in &state.components {
            let svg =
                badge::badge(&c.name, badge::status_text(c.effective_status), html::status_class(c.effective_status));
            put(format!("/components/{}/badge.svg", c.id), SVG, svg.into_bytes());
        }
        for lang in Lang::ALL {
            let renderer = html::Renderer { settings, state: &state, lang };
            put(page_key("/status", lang), HTML, renderer.index()?.into_bytes());
            let window: Vec<_> = state
                .active
                .iter()
                .chain(&state.past)
                .filter(|p| p.incident.created_at >= state.since)
                .cloned()
                .collect();
            let first = state.since.with_timezone(&state.time_zone).date_naive().with_day(1);
            let last = state.at.with_timezone(&state.time_zone).date_naive().with_day(1);
            put(
                page_key("/status/history", lang),
                HTML,
                renderer
                    .history("/status/history", &window, first.unwrap_or_default(), last.unwrap_or_default())?
                    .into_bytes(),
            );
        }
        Ok(Snapshot { generation, state: Arc::new(state), docs })
    }
}

/// A document's JSON.
fn json(document: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec(document).expect("JSON serializes")
}
