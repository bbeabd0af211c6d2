//! Shields-style SVG badges: `/badge.svg` (the page's overall status) and
//! `/components/{id}/badge.svg` (one component's), each with a `<title>` that reads the whole
//! badge out.

use crate::domain::ComponentStatus;

/// Colours shields.io uses (`brightgreen`, `blue`, `yellow`, `orange`, `red`).
fn colour(class: &str) -> &'static str {
    match class {
        "s0" => "#4c1",
        "s1" => "#007ec6",
        "s2" => "#dfb317",
        "s3" => "#fe7d37",
        _ => "#e05d44",
    }
}

/// Text width in Verdana 11 px, as shields estimates it: about 7 px a character.
fn width(text: &str) -> usize {
    text.chars().map(|c| if c.is_ascii_uppercase() || c == 'm' || c == 'w' { 8 } else { 7 }).sum::<usize>() + 10
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A badge reading `label | value`, the value on the status's colour (`s0` … `s4`).
pub fn badge(label: &str, value: &str, class: &str) -> String {
    let (lw, vw) = (width(label), width(value));
    let total = lw + vw;
    let (label, value) = (escape(label), escape(value));
    let fill = colour(class);
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="20" role="img" aria-label="{label}: {value}"><title>{label}: {value}</title><linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient><clipPath id="r"><rect width="{total}" height="20" rx="3" fill="#fff"/></clipPath><g clip-path="url(#r)"><rect width="{lw}" height="20" fill="#555"/><rect x="{lw}" width="{vw}" height="20" fill="{fill}"/><rect width="{total}" height="20" fill="url(#s)"/></g><g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11"><text x="{lx}" y="14">{label}</text><text x="{vx}" y="14">{value}</text></g></svg>"##,
        lx = lw / 2,
        vx = lw + vw / 2,
    )
}

/// The badge value of a component status.
pub fn status_text(s: ComponentStatus) -> &'static str {
    match s {
        ComponentStatus::Operational => "operational",
        ComponentStatus::DegradedPerformance => "degraded performance",
        ComponentStatus::PartialOutage => "partial outage",
        ComponentStatus::MajorOutage => "major outage",
        ComponentStatus::UnderMaintenance => "under maintenance",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_badge_is_svg_with_a_title_and_escaped_text() {
        let svg = badge("Checkout & <Pay>", "major outage", "s4");
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.contains("<title>Checkout &amp; &lt;Pay&gt;: major outage</title>"), "{svg}");
        assert!(svg.contains("#e05d44"));
        assert!(!svg.contains("<Pay>"));
    }
}
