//! shields.io badges per SLO (`/badge/{slo}.json`, an endpoint badge, and
//! `/badge/{slo}.svg`, drawn here without an external font or CDN): the
//! SLI over the SLO window, colored by how the SLO stands.
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::api::{Failed, error, public_json};
use super::atom::xml_escape;
use super::rules::{ComponentStatus, slo_condition};
use crate::alerting::AlertStore;
use crate::api::ApiState;
use crate::slo::{self, SloState, SloStatus};
use crate::store::now_ms;

/// A badge: shields.io named color and its hex for the SVG.
#[derive(Clone, Debug, PartialEq)]
pub struct Badge {
    pub label: String,
    pub message: String,
    pub color: &'static str,
}

impl Badge {
    /// The shields.io endpoint schema.
    pub fn to_json(&self) -> Value {
        json!({
            "schemaVersion": 1,
            "label": self.label,
            "message": self.message,
            "color": self.color,
        })
    }

    fn hex(&self) -> &'static str {
        match self.color {
            "brightgreen" => "#4c1",
            "yellow" => "#dfb317",
            "orange" => "#fe7d37",
            "red" => "#e05d44",
            _ => "#9f9f9f",
        }
    }
}

/// The SLI over the SLO window as a percentage, cut (not rounded) to two
/// decimals so 99.996 % never shows as 100 %.
pub fn percent(sli: f64) -> String {
    if sli >= 1.0 {
        return "100%".into();
    }
    let cut = ((sli * 10_000.0) + 1e-6).floor() / 100.0;
    format!("{cut:.2}%")
}

/// An SLO's badge: the SLI over its window; the color says how it stands:
/// red = major outage (see [`slo_condition`]), orange = partial outage or
/// budget exhausted, yellow = degraded, green = fine, grey = no data or too
/// little of it (`insufficient_data`) while otherwise fine.
pub fn badge_for(status: &SloStatus, escalating: bool) -> Badge {
    let label = status.id.clone();
    let Some(sli) = status
        .sli_value
        .filter(|_| status.state != SloState::NoData)
    else {
        return Badge {
            label,
            message: "no data".into(),
            color: "lightgrey",
        };
    };
    let color = match slo_condition(status, escalating) {
        ComponentStatus::MajorOutage => "red",
        ComponentStatus::PartialOutage => "orange",
        _ if status.state == SloState::Exhausted => "orange",
        ComponentStatus::DegradedPerformance => "yellow",
        ComponentStatus::Operational if status.state == SloState::InsufficientData => "lightgrey",
        ComponentStatus::Operational => "brightgreen",
    };
    Badge {
        label,
        message: percent(sli),
        color,
    }
}

/// Approximate advance of `c` in Verdana 11px (what shields.io badges use;
/// the viewer's font may differ a little, the padding absorbs it).
fn char_width(c: char) -> f64 {
    match c {
        'i' | 'l' | 'j' | '.' | ',' | ':' | ';' | '\'' | '!' | '|' | 'I' => 3.6,
        ' ' => 3.9,
        'f' | 't' | 'r' | '-' | '(' | ')' => 4.6,
        'm' => 10.7,
        'w' => 8.9,
        'M' | 'W' => 10.0,
        '%' => 11.9,
        '0'..='9' => 7.0,
        c if c.is_ascii_uppercase() => 7.5,
        _ => 6.7,
    }
}

fn text_width(s: &str) -> f64 {
    s.chars().map(char_width).sum()
}

/// A flat two-part badge drawn here (no external font or CDN): grey label,
/// colored message, each text with a 1px shadow like shields.io's.
pub fn badge_svg(b: &Badge) -> String {
    let lw = (text_width(&b.label) + 12.0).round();
    let mw = (text_width(&b.message) + 12.0).round();
    let w = lw + mw;
    let (label, message) = (xml_escape(&b.label), xml_escape(&b.message));
    let color = b.hex();
    let text = |x: f64, t: &str| {
        format!(
            r##"<text x="{x}" y="15" fill="#010101" fill-opacity=".3">{t}</text><text x="{x}" y="14">{t}</text>"##
        )
    };
    [
        format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="20" role="img" aria-label="{label}: {message}">"#
        ),
        format!("<title>{label}: {message}</title>"),
        r##"<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>"##.to_string(),
        format!(r##"<clipPath id="r"><rect width="{w}" height="20" rx="3" fill="#fff"/></clipPath>"##),
        format!(
            r##"<g clip-path="url(#r)"><rect width="{lw}" height="20" fill="#555"/><rect x="{lw}" width="{mw}" height="20" fill="{color}"/><rect width="{w}" height="20" fill="url(#s)"/></g>"##
        ),
        r##"<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" text-rendering="geometricPrecision" font-size="11">"##.to_string(),
        text(lw / 2.0, &label),
        text(lw + mw / 2.0, &message),
        "</g></svg>".to_string(),
    ]
    .concat()
}

/// `/badge/{slo}.json` (shields.io endpoint) or `/badge/{slo}.svg`.
pub(super) async fn badge(
    State(st): State<ApiState>,
    Path(file): Path<String>,
) -> Result<Response, Failed> {
    let (slo_id, svg) = match (file.strip_suffix(".json"), file.strip_suffix(".svg")) {
        (Some(id), _) => (id, false),
        (_, Some(id)) => (id, true),
        _ => {
            return Ok(error(
                StatusCode::NOT_FOUND,
                "badges are /badge/<slo>.json (shields.io endpoint) or /badge/<slo>.svg",
            ));
        }
    };
    let catalog = st.catalog.borrow().catalog.clone();
    let Some(def) = catalog.slos.iter().find(|s| s.id == slo_id) else {
        return Ok(error(
            StatusCode::NOT_FOUND,
            &format!("no SLO `{slo_id}` in the catalog"),
        ));
    };
    let (status, escalating) = st
        .storage
        .run("badge", async {
            let status = slo::evaluate_one(&st.store, &catalog, def, now_ms()).await?;
            let escalating = st
                .store
                .escalation_alerts()
                .await?
                .iter()
                .any(|(f, _)| f.alert.slo == slo_id);
            Ok((status, escalating))
        })
        .await?;
    let b = badge_for(&status, escalating);
    if !svg {
        return Ok(public_json(b.to_json()));
    }
    Ok((
        [
            (header::CONTENT_TYPE, "image/svg+xml; charset=utf-8"),
            // Image proxies (GitHub's camo) keep badges as long as allowed.
            (header::CACHE_CONTROL, "no-cache, max-age=0"),
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        badge_svg(&b),
    )
        .into_response())
}
