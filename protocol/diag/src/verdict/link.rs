//! Link checks: the Wi‑Fi radio or the Ethernet cable between the device
//! and the home router.
//!
//! The snapshot's `wifi` probe is "not applicable" when the default route
//! does not leave over Wi‑Fi; the Wi‑Fi checks then do not apply either.

use super::{fmt, number_in, percent, Finding, Judge, Severity, Skip, Stage};
use crate::snapshot::{Band, Interface, InterfaceKind, Wifi};

fn wifi<'a>(j: &mut Judge<'a>) -> Result<&'a Wifi, Skip> {
    let snapshot = j.snapshot;
    j.probe("wifi", &snapshot.wifi)
}

/// The signal level, which several checks need. Drivers report 0 dBm (or
/// more) when they have no value, so only negative readings count.
fn signal(wifi: &Wifi) -> Result<f64, Skip> {
    number_in(wifi.signal_dbm, "wifi.signal_dbm", -130.0..=-1.0)
}

const MOVE_CLOSER_EN: &str = "Move closer to your Wi‑Fi router (or the router closer to you), with fewer walls in between, or connect with a network cable.";
const MOVE_CLOSER_FR: &str = "Rapprochez-vous de votre box ou routeur Wi‑Fi (ou rapprochez-la de vous), avec moins de murs entre les deux, ou branchez un câble réseau.";

/// Signal strength (RSSI).
pub(super) fn signal_level(j: &mut Judge<'_>) -> Result<Vec<Finding>, Skip> {
    let t = j.thresholds;
    let wifi = wifi(j)?;
    let dbm = signal(wifi)?;
    let (id, severity, limit, title) = if dbm < t.wifi_signal_unusable_dbm {
        (
            "wifi.signal_unusable",
            Severity::Critical,
            t.wifi_signal_unusable_dbm,
            (
                "The Wi‑Fi signal is too weak to use",
                "Le signal Wi‑Fi est trop faible pour être utilisable",
            ),
        )
    } else if dbm < t.wifi_signal_weak_dbm {
        (
            "wifi.signal_weak",
            Severity::Warning,
            t.wifi_signal_weak_dbm,
            ("The Wi‑Fi signal is weak", "Le signal Wi‑Fi est faible"),
        )
    } else if dbm < t.wifi_signal_fair_dbm {
        (
            "wifi.signal_fair",
            Severity::Info,
            t.wifi_signal_fair_dbm,
            (
                "The Wi‑Fi signal is only fair",
                "Le signal Wi‑Fi est tout juste correct",
            ),
        )
    } else {
        return Ok(vec![]);
    };
    let (note_en, note_fr) = match severity {
        Severity::Info => (
            format!(
                "RSSI {} dBm is below the {} dBm design target for voice and video (Cisco) but usually fine for a remote session; it matters if retries or loss are also high.",
                fmt(dbm),
                fmt(t.wifi_signal_fair_dbm)
            ),
            format!(
                "Un RSSI de {} dBm est sous l'objectif de {} dBm pour la voix et la vidéo (Cisco), mais suffit en général pour une session à distance ; cela compte si les retransmissions ou les pertes sont aussi élevées.",
                fmt(dbm).replace('.', ","),
                fmt(t.wifi_signal_fair_dbm).replace('.', ",")
            ),
        ),
        _ => (
            format!(
                "RSSI {} dBm on {} (source: {}): expect rate drops, retries and loss on the link itself.",
                fmt(dbm),
                wifi.interface,
                if wifi.source.is_empty() { "unknown" } else { &wifi.source }
            ),
            format!(
                "RSSI de {} dBm sur {} (source : {}) : attendez-vous à des baisses de débit, des retransmissions et des pertes sur la liaison elle-même.",
                fmt(dbm).replace('.', ","),
                wifi.interface,
                if wifi.source.is_empty() { "inconnue" } else { &wifi.source }
            ),
        ),
    };
    Ok(vec![Finding::new(id, Stage::Link, severity)
        .title(title.0, title.1)
        .number("wifi.signal_dbm", dbm, format!("< {} dBm", fmt(limit)))
        .advice(MOVE_CLOSER_EN, MOVE_CLOSER_FR)
        .note(note_en, note_fr)])
}

/// Signal-to-noise ratio, reported or computed from signal and noise.
pub(super) fn snr(j: &mut Judge<'_>) -> Result<Vec<Finding>, Skip> {
    let t = j.thresholds;
    let wifi = wifi(j)?;
    let (snr, metric) = match wifi.snr_db {
        Some(_) => (
            number_in(wifi.snr_db, "wifi.snr_db", -50.0..=120.0)?,
            "wifi.snr_db",
        ),
        None => {
            let noise = number_in(
                wifi.noise_dbm,
                "wifi.noise_dbm (and wifi.snr_db)",
                -150.0..=-1.0,
            )?;
            (signal(wifi)? - noise, "wifi.snr_db")
        }
    };
    if snr >= t.wifi_snr_db {
        return Ok(vec![]);
    }
    Ok(vec![Finding::new("wifi.snr_low", Stage::Link, Severity::Warning)
        .title("Too much radio noise on the Wi‑Fi", "Trop de parasites radio sur le Wi‑Fi")
        .number(metric, snr, format!("< {} dB", fmt(t.wifi_snr_db)))
        .advice(
            "Move closer to the router and away from microwaves, baby monitors and other wireless devices; if your router offers it, use its 5 GHz network.",
            "Rapprochez-vous de la box et éloignez-vous des micro-ondes, babyphones et autres appareils sans fil ; si votre box le propose, utilisez son réseau 5 GHz.",
        )
        .note(
            "The signal barely rises above the noise floor (Cisco recommends ≥ 25 dB for voice): interference or distance forces low rates and retries.",
            "Le signal dépasse à peine le bruit de fond (Cisco recommande au moins 25 dB pour la voix) : les interférences ou la distance imposent des débits bas et des retransmissions.",
        )])
}

/// Share of frames that needed retransmission.
pub(super) fn retries(j: &mut Judge<'_>) -> Result<Vec<Finding>, Skip> {
    let t = j.thresholds;
    let wifi = wifi(j)?;
    let value = percent(wifi.tx_retries_percent, "wifi.tx_retries_percent")?;
    if value <= t.wifi_retries_percent {
        return Ok(vec![]);
    }
    Ok(vec![Finding::new("wifi.retries_high", Stage::Link, Severity::Warning)
        .title("Wi‑Fi data often has to be resent", "Les données Wi‑Fi doivent souvent être renvoyées")
        .number("wifi.tx_retries_percent", value, format!("> {} %", fmt(t.wifi_retries_percent)))
        .advice(MOVE_CLOSER_EN, MOVE_CLOSER_FR)
        .note(
            format!(
                "{} % of transmitted frames needed retries during the sample (Cisco: keep below 20 %){}: interference, distance or a crowded channel; this adds latency and jitter before any ISP hop.",
                fmt(value),
                wifi.tx_failed.map(|n| format!(", {n} frames failed")).unwrap_or_default()
            ),
            format!(
                "{} % des trames envoyées ont dû être retransmises pendant l'échantillon (Cisco : rester sous 20 %){} : interférences, distance ou canal encombré ; cela ajoute du délai et de la gigue avant même le réseau du fournisseur d'accès.",
                fmt(value).replace('.', ","),
                wifi.tx_failed.map(|n| format!(", {n} trames en échec")).unwrap_or_default()
            ),
        )])
}

/// Share of time the channel was busy.
pub(super) fn channel_load(j: &mut Judge<'_>) -> Result<Vec<Finding>, Skip> {
    let t = j.thresholds;
    let wifi = wifi(j)?;
    let value = percent(wifi.channel_busy_percent, "wifi.channel_busy_percent")?;
    if value <= t.wifi_channel_busy_percent {
        return Ok(vec![]);
    }
    Ok(vec![Finding::new("wifi.channel_busy", Stage::Link, Severity::Warning)
        .title("The Wi‑Fi channel is crowded", "Le canal Wi‑Fi est encombré")
        .number("wifi.channel_busy_percent", value, format!("> {} %", fmt(t.wifi_channel_busy_percent)))
        .advice(
            "Many networks or devices share your Wi‑Fi channel. Restarting the router often makes it pick a quieter channel; pausing big downloads or video streams at home also helps.",
            "Beaucoup de réseaux ou d'appareils partagent votre canal Wi‑Fi. Redémarrer la box lui fait souvent choisir un canal plus calme ; mettre en pause les gros téléchargements ou vidéos à la maison aide aussi.",
        )
        .note(
            format!(
                "Channel {} busy {} % of the sample (Cisco: keep utilisation below 40–50 %): airtime contention from neighbours or local traffic.",
                wifi.channel.map(|c| c.to_string()).unwrap_or_else(|| "?".to_owned()),
                fmt(value)
            ),
            format!(
                "Canal {} occupé {} % de l'échantillon (Cisco : rester sous 40 à 50 %) : concurrence pour le temps d'antenne avec les voisins ou le trafic local.",
                wifi.channel.map(|c| c.to_string()).unwrap_or_else(|| "?".to_owned()),
                fmt(value).replace('.', ",")
            ),
        )])
}

/// The band, from the report or from the frequency.
fn band(wifi: &Wifi) -> Option<Band> {
    wifi.band.or_else(|| match wifi.freq_mhz {
        Some(f) if (2400.0..2500.0).contains(&f) => Some(Band::Ghz2_4),
        Some(f) if (5150.0..5925.0).contains(&f) => Some(Band::Ghz5),
        Some(f) if (5925.0..7125.0).contains(&f) => Some(Band::Ghz6),
        _ => None,
    })
}

/// 2.4 GHz with a fair or worse signal (information).
pub(super) fn band_choice(j: &mut Judge<'_>) -> Result<Vec<Finding>, Skip> {
    let t = j.thresholds;
    let wifi = wifi(j)?;
    let Some(band) = band(wifi) else {
        return Err(Skip::Unknown(
            "wifi.band and wifi.freq_mhz were not reported".to_owned(),
        ));
    };
    if band != Band::Ghz2_4 {
        return Ok(vec![]);
    }
    // The signal check already reports an unreadable signal.
    let dbm = signal(wifi).map_err(|_| Skip::Covered("wifi.signal".to_owned()))?;
    if dbm >= t.wifi_signal_fair_dbm {
        return Ok(vec![]);
    }
    Ok(vec![Finding::new("wifi.band_2_4ghz", Stage::Link, Severity::Info)
        .title("The Wi‑Fi uses the crowded 2.4 GHz band", "Le Wi‑Fi utilise la bande 2,4 GHz, très encombrée")
        .text("wifi.band", "2.4GHz", "")
        .number("wifi.signal_dbm", dbm, format!("< {} dBm", fmt(t.wifi_signal_fair_dbm)))
        .advice(
            "If your router has a 5 GHz network (often the same name with \"5G\"), connect to it when you are in the same room as the router.",
            "Si votre box propose un réseau 5 GHz (souvent le même nom suivi de « 5G »), connectez-vous-y quand vous êtes dans la même pièce que la box.",
        )
        .note(
            "2.4 GHz is the most crowded band; 5/6 GHz is preferred for calls and remote desktop, though its range is shorter.",
            "La bande 2,4 GHz est la plus encombrée ; préférez 5 ou 6 GHz pour les appels et le bureau à distance, malgré une portée plus courte.",
        )])
}

/// The interface the default route leaves by.
fn active_interface<'a>(j: &mut Judge<'a>) -> Result<&'a Interface, Skip> {
    let snapshot = j.snapshot;
    let network = j.probe("network", &snapshot.network)?;
    // Without a default route there is no active link to judge; the
    // configuration check reports the missing route itself.
    let route = network.default_route.as_ref().ok_or(Skip::NotApplicable)?;
    network
        .interfaces
        .iter()
        .find(|i| i.name == route.interface)
        .ok_or_else(|| {
            Skip::Unknown(format!(
                "the default route's interface `{}` is not in network.interfaces",
                route.interface
            ))
        })
}

/// A slow negotiated Ethernet speed (information).
pub(super) fn ethernet_speed(j: &mut Judge<'_>) -> Result<Vec<Finding>, Skip> {
    let t = j.thresholds;
    let interface = active_interface(j)?;
    if interface.kind != InterfaceKind::Ethernet || !interface.up {
        return Err(Skip::NotApplicable);
    }
    let Some(speed) = interface.speed_mbps else {
        return Err(Skip::Unknown(format!(
            "the speed of {} was not reported",
            interface.name
        )));
    };
    if speed >= t.ethernet_min_mbps {
        return Ok(vec![]);
    }
    Ok(vec![Finding::new("ethernet.slow_link", Stage::Link, Severity::Info)
        .title("The network cable connection runs at reduced speed", "Le câble réseau fonctionne à vitesse réduite")
        .number(
            format!("network.interfaces[{}].speed_mbps", interface.name),
            f64::from(speed),
            format!("< {} Mbit/s", t.ethernet_min_mbps),
        )
        .advice(
            "Try another network cable or another port on the router; a damaged or very old cable often limits the speed.",
            "Essayez un autre câble réseau ou une autre prise sur la box ; un câble abîmé ou très ancien limite souvent la vitesse.",
        )
        .note(
            format!(
                "{} negotiated {speed} Mbit/s: enough for a session, but on gigabit hardware it usually means a cable with a broken pair, a Cat5 cable, or a 100 Mbit/s switch port.",
                interface.name
            ),
            format!(
                "{} a négocié {speed} Mbit/s : assez pour une session, mais sur du matériel gigabit cela signale en général un câble avec une paire coupée, un câble Cat5 ou un port de commutateur à 100 Mbit/s.",
                interface.name
            ),
        )])
}

/// Error counters on the active interface (information: they are totals
/// since boot).
pub(super) fn errors(j: &mut Judge<'_>) -> Result<Vec<Finding>, Skip> {
    let t = j.thresholds;
    let interface = active_interface(j)?;
    let (rx, tx) = (interface.rx_errors, interface.tx_errors);
    if rx.is_none() && tx.is_none() {
        return Err(Skip::Unknown(format!(
            "error counters of {} were not reported",
            interface.name
        )));
    }
    let total = rx.unwrap_or(0).saturating_add(tx.unwrap_or(0));
    if total <= t.interface_errors {
        return Ok(vec![]);
    }
    let mut finding = Finding::new("link.interface_errors", Stage::Link, Severity::Info)
        .title("The network card has recorded errors", "La carte réseau a enregistré des erreurs")
        .advice(
            "If you use a cable, check that it is firmly plugged in at both ends, or try another one.",
            "Si vous utilisez un câble, vérifiez qu'il est bien branché aux deux bouts, ou essayez-en un autre.",
        )
        .note(
            format!(
                "{}: {} receive and {} transmit errors since boot. Totals only: a rising count (compare two snapshots) points at a cable, duplex or driver problem.",
                interface.name,
                rx.map(|n| n.to_string()).unwrap_or_else(|| "?".to_owned()),
                tx.map(|n| n.to_string()).unwrap_or_else(|| "?".to_owned())
            ),
            format!(
                "{} : {} erreurs en réception et {} en émission depuis le démarrage. Ce sont des totaux : un nombre qui augmente (comparez deux instantanés) désigne un problème de câble, de duplex ou de pilote.",
                interface.name,
                rx.map(|n| n.to_string()).unwrap_or_else(|| "?".to_owned()),
                tx.map(|n| n.to_string()).unwrap_or_else(|| "?".to_owned())
            ),
        );
    if let Some(rx) = rx {
        finding = finding.number(
            format!("network.interfaces[{}].rx_errors", interface.name),
            rx as f64,
            format!("> {} (with tx)", t.interface_errors),
        );
    }
    if let Some(tx) = tx {
        finding = finding.number(
            format!("network.interfaces[{}].tx_errors", interface.name),
            tx as f64,
            format!("> {} (with rx)", t.interface_errors),
        );
    }
    Ok(vec![finding])
}
