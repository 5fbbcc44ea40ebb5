//! Home gateway checks: can the device reach its router, without loss and
//! quickly?
//!
//! A weak link explains gateway trouble, so gateway findings are qualified
//! by the link stage.

use super::{fmt, number, Confidence, Finding, Judge, Severity, Skip, Stage, Upstream};
use crate::snapshot::{Gateway, Probe};

const AFTER_LINK: Upstream = Upstream {
    stages: &[Stage::Link],
    also: &[],
};

const RESTART_ROUTER_EN: &str = "Restart your internet box or router (unplug it for 30 seconds), and if you are on Wi‑Fi, move closer to it or use a network cable.";
const RESTART_ROUTER_FR: &str = "Redémarrez votre box internet ou votre routeur (débranchez-le 30 secondes) et, si vous êtes en Wi‑Fi, rapprochez-vous-en ou branchez un câble réseau.";

fn gateway<'a>(j: &mut Judge<'a>) -> Result<&'a Gateway, Skip> {
    let snapshot = j.snapshot;
    let gateway = j.probe("gateway", &snapshot.gateway)?;
    if gateway.sent == 0 {
        return Err(Skip::Covered("gateway.reachable".to_owned()));
    }
    Ok(gateway)
}

/// Whether the relay answered probes, which proves the router forwards
/// traffic even if it ignores probes addressed to itself.
fn relay_answers(j: &Judge<'_>) -> bool {
    matches!(&j.snapshot.path, Probe::Measured(path) if path.udp_ok && path.probes_received > 0)
}

/// The router answers at all.
pub(super) fn reachable(j: &mut Judge<'_>) -> Result<Vec<Finding>, Skip> {
    let snapshot = j.snapshot;
    let gateway = j.probe("gateway", &snapshot.gateway)?;
    if gateway.sent == 0 {
        return Err(Skip::Unknown("no probe was sent to the router".to_owned()));
    }
    if gateway.received > 0 {
        return Ok(vec![]);
    }
    if relay_answers(j) {
        return Err(Skip::Unknown(format!(
            "the router ({}) answered none of {} {} probes, but the relay answered: the router probably ignores such probes",
            gateway.address, gateway.sent, gateway.method
        )));
    }
    // Routers may ignore probes; when the relay could not be measured
    // either, that possibility remains.
    let relay_failed = matches!(&snapshot.path, Probe::Measured(path) if !path.udp_ok || path.probes_received == 0);
    let finding = Finding::new("gateway.unreachable", Stage::Gateway, Severity::Critical)
        .title(
            "Your internet box or router does not answer",
            "Votre box internet ou votre routeur ne répond pas",
        )
        .number(
            "gateway.received",
            0.0,
            format!("= 0 of {} sent", gateway.sent),
        )
        .advice(RESTART_ROUTER_EN, RESTART_ROUTER_FR)
        .note(
            format!(
                "No answer from the gateway {} to {} {} probes{}.",
                gateway.address,
                gateway.sent,
                gateway.method,
                if relay_failed {
                    " and the relay could not be reached either"
                } else {
                    "; the relay could not be measured, so the router may simply ignore these probes"
                }
            ),
            format!(
                "La passerelle {} n'a répondu à aucune des {} sondes {}{}.",
                gateway.address,
                gateway.sent,
                gateway.method,
                if relay_failed {
                    " et le relais n'a pas pu être joint non plus"
                } else {
                    " ; le relais n'a pas pu être mesuré, donc le routeur ignore peut-être simplement ces sondes"
                }
            ),
        )
        .confidence(if relay_failed {
            Confidence::High
        } else {
            Confidence::Medium
        });
    Ok(vec![j.qualify(finding, &AFTER_LINK)])
}

/// Probe loss to the router.
pub(super) fn loss(j: &mut Judge<'_>) -> Result<Vec<Finding>, Skip> {
    let t = j.thresholds;
    let gateway = gateway(j)?;
    if gateway.received == 0 {
        // All lost: the reachability check reports it.
        return Err(Skip::NotApplicable);
    }
    if gateway.received > gateway.sent {
        return Err(Skip::Unknown(format!(
            "gateway.received ({}) exceeds gateway.sent ({}): inconsistent counts",
            gateway.received, gateway.sent
        )));
    }
    let loss = 100.0 * f64::from(gateway.sent - gateway.received) / f64::from(gateway.sent);
    let (severity, limit) = if loss > t.gateway_loss_critical_percent {
        (Severity::Critical, t.gateway_loss_critical_percent)
    } else if loss > t.gateway_loss_percent {
        (Severity::Warning, t.gateway_loss_percent)
    } else {
        return Ok(vec![]);
    };
    let finding = Finding::new("gateway.loss", Stage::Gateway, severity)
        .title(
            "Data is lost between this computer and your router",
            "Des données se perdent entre l'ordinateur et votre box",
        )
        .number("gateway.loss_percent", loss, format!("> {} %", fmt(limit)))
        .advice(RESTART_ROUTER_EN, RESTART_ROUTER_FR)
        .note(
            format!(
                "{} of {} {} probes to the gateway {} were lost: loss inside the home, before the ISP.",
                gateway.sent - gateway.received,
                gateway.sent,
                gateway.method,
                gateway.address
            ),
            format!(
                "{} sondes {} sur {} vers la passerelle {} ont été perdues : les pertes ont lieu dans le domicile, avant le fournisseur d'accès.",
                gateway.sent - gateway.received,
                gateway.method,
                gateway.sent,
                gateway.address
            ),
        );
    Ok(vec![j.qualify(finding, &AFTER_LINK)])
}

/// Round trip to the router.
pub(super) fn rtt(j: &mut Judge<'_>) -> Result<Vec<Finding>, Skip> {
    let t = j.thresholds;
    let gateway = gateway(j)?;
    if gateway.received == 0 {
        return Err(Skip::NotApplicable);
    }
    let Some(rtt) = &gateway.rtt else {
        return Err(Skip::Unknown("gateway.rtt was not reported".to_owned()));
    };
    let median = number(Some(rtt.median_ms), "gateway.rtt.median_ms")?;
    if median < 0.0 {
        return Err(Skip::Unknown(format!(
            "gateway.rtt.median_ms is negative ({median})"
        )));
    }
    if median <= t.gateway_rtt_ms {
        return Ok(vec![]);
    }
    let on_wifi = matches!(j.snapshot.wifi, Probe::Measured(_));
    let mut finding = Finding::new("gateway.rtt_high", Stage::Gateway, Severity::Warning)
        .title("Your home network is slow to answer", "Votre réseau domestique répond lentement")
        .number("gateway.rtt.median_ms", median, format!("> {} ms", fmt(t.gateway_rtt_ms)))
        .advice(RESTART_ROUTER_EN, RESTART_ROUTER_FR)
        .note(
            format!(
                "Median round trip to the gateway {} is {} ms (p95 {} ms); a healthy LAN answers in under 5 ms. The 20 ms default is deskside's budget (a fifth of Teams' 100 ms RTT).",
                gateway.address,
                fmt(median),
                fmt(rtt.p95_ms)
            ),
            format!(
                "L'aller-retour médian vers la passerelle {} est de {} ms (p95 {} ms) ; un réseau local sain répond en moins de 5 ms. La valeur par défaut de 20 ms est le budget de deskside (un cinquième des 100 ms de RTT de Teams).",
                gateway.address,
                fmt(median).replace('.', ","),
                fmt(rtt.p95_ms).replace('.', ",")
            ),
        );
    if on_wifi {
        finding = finding.confidence(Confidence::Medium);
        finding.add_note(
            "On Wi‑Fi, power saving can delay answers to sparse probes; confirm with the relay round trip.",
            "En Wi‑Fi, l'économie d'énergie peut retarder les réponses à des sondes espacées ; confirmez avec l'aller-retour vers le relais.",
        );
    }
    Ok(vec![j.qualify(finding, &AFTER_LINK)])
}
