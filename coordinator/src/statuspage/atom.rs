//! The incident history as an RFC 4287 Atom feed (`/history.atom`): one
//! entry per incident update, newest first, with permanent `urn:uuid:` ids
//! whatever host name the feed is fetched under.
use std::fmt::Write as _;

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use sha2::Digest;

use super::api::shortlink;
use super::api::{Failed, feed};
use super::page::PageState;
use super::rules::ComponentStatus;
use super::{Incident, IncidentUpdate, Site};
use crate::api::ApiState;
use crate::clock::rfc3339_ms;

/// Text safe inside XML elements and attribute values.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters are not allowed in XML 1.0.
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\r' | '\t') => {}
            c => out.push(c),
        }
    }
    out
}

/// A stable `urn:uuid:` (RFC 9562 version 8, from a hash) for Atom ids:
/// permanent, whatever host name the feed is fetched under.
pub(super) fn urn_uuid(parts: &[&str]) -> String {
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    let mut b: [u8; 16] = [0; 16];
    b.copy_from_slice(&h.finalize()[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let x = hex::encode(b);
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &x[..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..]
    )
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// The RFC 4287 feed: one entry per incident update, newest first.
pub fn atom_feed(page: &PageState, incidents: &[Incident], site: &Site) -> String {
    let base = site.base.as_str();
    let mut entries: Vec<(&Incident, &IncidentUpdate)> = incidents
        .iter()
        .flat_map(|i| i.updates.iter().map(move |u| (i, u)))
        .collect();
    entries.sort_by(|a, b| {
        b.1.created_ms
            .cmp(&a.1.created_ms)
            .then_with(|| b.1.id.cmp(&a.1.id))
    });
    let updated = entries
        .first()
        .map_or(page.updated_ms, |(_, u)| u.created_ms.max(page.updated_ms));
    let mut x = String::new();
    let _ = write!(
        x,
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
         <feed xmlns=\"http://www.w3.org/2005/Atom\" xml:lang=\"en\">\n\
         \x20 <id>{}</id>\n\
         \x20 <title>{} status history</title>\n\
         \x20 <updated>{}</updated>\n\
         \x20 <link rel=\"self\" type=\"application/atom+xml\" href=\"{}\"/>\n\
         \x20 <link rel=\"alternate\" type=\"application/json\" href=\"{}\"/>\n\
         \x20 <author><name>{}</name></author>\n\
         \x20 <generator>authpulse</generator>\n",
        urn_uuid(&["page", &page.id]),
        xml_escape(&site.name),
        rfc3339_ms(updated),
        xml_escape(&format!("{base}/history.atom")),
        xml_escape(&format!("{base}/api/v2/summary.json")),
        xml_escape(&site.name),
    );
    for (i, u) in entries {
        let affected = u
            .affected
            .iter()
            .map(|a| {
                let status = ComponentStatus::parse(&a.new_status)
                    .map_or_else(|| a.new_status.clone(), |c| c.words().to_string());
                format!("{}: {status}", a.name)
            })
            .collect::<Vec<_>>()
            .join(", ");
        let content = if affected.is_empty() {
            u.body.clone()
        } else {
            format!("{}\n\nComponents: {affected}", u.body)
        };
        let _ = write!(
            x,
            "  <entry>\n\
             \x20   <id>{}</id>\n\
             \x20   <title>{}</title>\n\
             \x20   <updated>{}</updated>\n\
             \x20   <published>{}</published>\n\
             \x20   <link rel=\"alternate\" type=\"application/json\" href=\"{}\"/>\n\
             \x20   <category term=\"{}\" label=\"impact\"/>\n\
             \x20   <summary type=\"text\">{}</summary>\n\
             \x20   <content type=\"text\">{}</content>\n\
             \x20 </entry>\n",
            urn_uuid(&["update", &page.id, &i.id, &u.id]),
            xml_escape(&format!("{} — {}", i.name, capitalized(&u.status))),
            rfc3339_ms(u.created_ms),
            rfc3339_ms(u.created_ms),
            xml_escape(&shortlink(base, &i.id)),
            xml_escape(&i.impact),
            xml_escape(&u.body),
            xml_escape(&content),
        );
    }
    x.push_str("</feed>\n");
    x
}

pub(super) async fn history(
    State(st): State<ApiState>,
    headers: HeaderMap,
) -> Result<Response, Failed> {
    let f = feed(&st).await?;
    let (page, recent) = (&f.page, &f.recent);
    let site = Site::of(&st.status_page, &headers);
    let body = atom_feed(page, recent, &site);
    Ok((
        [
            (header::CONTENT_TYPE, "application/atom+xml; charset=utf-8"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        body,
    )
        .into_response())
}
