//! Path checks: UDP reachability of the relay (a configuration question),
//! the ISP's path to it (loss, delay, jitter, latency under load,
//! throughput) and the relay itself (service).
//!
//! These sit at the end of the path, so they are the ones most often
//! explained by something upstream; see the precedence rules in the parent
//! module.

use super::{fmt, number, Confidence, Finding, Judge, Segment, Severity, Skip, Stage, Upstream};
use crate::snapshot::{Grade, Path, Probe, Throughput};

/// ISP findings depend on the home network.
const AFTER_HOME: Upstream = Upstream {
    stages: &[Stage::Link, Stage::Gateway],
    also: &[],
};

/// Timing findings also depend on the device having CPU time to answer
/// probes promptly.
const TIMING_AFTER_HOME: Upstream = Upstream {
    stages: &[Stage::Link, Stage::Gateway],
    also: &["device.cpu_busy"],
};

/// Service findings depend on everything before the relay.
const AFTER_EVERYTHING: Upstream = Upstream {
    stages: &[
        Stage::Link,
        Stage::Gateway,
        Stage::Configuration,
        Stage::Isp,
    ],
    also: &["device.cpu_busy"],
};

/// What explains "no QUIC connection" besides UDP being blocked.
const BEFORE_UDP: Upstream = Upstream {
    stages: &[Stage::Link, Stage::Gateway],
    also: &[
        "config.no_default_route",
        "dns.failing",
        "dns.partial_failure",
    ],
};

const ISP_ADVICE_EN: &str = "Restart your internet box. If the problem continues, note the time and contact your internet provider, or ask IT for help.";
const ISP_ADVICE_FR: &str = "Redémarrez votre box internet. Si le problème continue, notez l'heure et contactez votre fournisseur d'accès à internet, ou demandez de l'aide au service informatique.";

/// The path, when a QUIC connection to the relay was made. Otherwise one
/// unknown entry `path` says why nothing on it could be measured.
fn connected<'a>(j: &mut Judge<'a>) -> Result<&'a Path, Skip> {
    let snapshot = j.snapshot;
    let path = j.probe("path", &snapshot.path)?;
    if !path.udp_ok {
        j.add_unknown(
            "path",
            &format!(
                "no QUIC connection to the relay ({})",
                path.udp_error.as_deref().unwrap_or("no error reported")
            ),
        );
        return Err(Skip::Covered("path".to_owned()));
    }
    if path.connect_ms.is_none() && path.idle_rtt.is_none() && path.probes_sent == 0 {
        // Connected, but the measurement never started (the relay refused
        // it, or the agent gave up): one entry rather than one per check.
        let reason = path
            .download
            .reason()
            .filter(|_| matches!(path.download, Probe::Unknown { .. }))
            .unwrap_or("the measurement did not start");
        j.add_unknown("path", &format!("connected to the relay, but {reason}"));
        return Err(Skip::Covered("path".to_owned()));
    }
    Ok(path)
}

fn through_vpn(j: &Judge<'_>) -> bool {
    matches!(j.snapshot.network.value(), Some(network) if network.relay_via_vpn == Some(true))
}

/// Caps confidence when the path runs through a VPN: the VPN's own path
/// and server are suspects too.
fn vpn_caveat(j: &Judge<'_>, mut finding: Finding) -> Finding {
    if through_vpn(j) {
        finding.confidence = finding.confidence.min(Confidence::Medium);
        finding.add_note(
            "The path to the relay goes through a VPN, so the VPN's path or server may be responsible rather than the ISP.",
            "Le chemin vers le relais passe par un VPN : le trajet ou le serveur du VPN peut être en cause plutôt que le fournisseur d'accès.",
        );
    }
    finding
}

/// How recent a successful UDP connection must be to count as proof that
/// this device could reach the relay (a laptop that moved to another
/// network since proves nothing, so keep it short).
const RECENT_CONNECTION_MS: i64 = 6 * 3600 * 1000;

/// Advice when the evidence points at the service: nothing to change here.
const SERVICE_ADVICE_EN: &str = "Nothing to change on this computer: the support service itself does not answer. Try again in a few minutes; if it continues, tell IT.";
const SERVICE_ADVICE_FR: &str = "Rien à changer sur cet ordinateur : c'est le service d'assistance lui-même qui ne répond pas. Réessayez dans quelques minutes ; si cela continue, prévenez le service informatique.";

/// Minutes since the agent's last successful UDP connection, when recent
/// enough to count as evidence.
fn recent_connection_minutes(j: &Judge<'_>, path: &Path) -> Option<i64> {
    let last = path.last_connected_ms?;
    let age = j.snapshot.taken_at_ms.checked_sub(last)?;
    (0..=RECENT_CONNECTION_MS)
        .contains(&age)
        .then_some(age / 60_000)
}

/// QUIC (UDP) reaches the relay. When it does not, says which fact was
/// seen (the relay's name does not resolve; its host does not answer at
/// all; its host answers over TCP but not over UDP) and only blames this
/// computer's settings when nothing points at the service.
pub(super) fn udp(j: &mut Judge<'_>) -> Result<Vec<Finding>, Skip> {
    let snapshot = j.snapshot;
    let path = j.probe("path", &snapshot.path)?;
    if path.udp_ok {
        return Ok(vec![]);
    }
    let error = path.udp_error.as_deref().unwrap_or("no error reported");
    let error_fr = path
        .udp_error
        .as_deref()
        .unwrap_or("aucune erreur signalée");
    let problems = j.upstream_problems(&BEFORE_UDP);
    if !problems.is_empty() {
        return Err(Skip::Unknown(format!(
            "no QUIC connection to the relay ({error}), but {} already explain(s) a failure, so UDP blocking cannot be told apart",
            problems.join(", ")
        )));
    }
    let gateway_works = j.passed("gateway.reachable");
    let dns_works = j.passed("dns.resolution");
    let recent = recent_connection_minutes(j, path);
    let evidence = |mut finding: Finding| {
        finding = finding
            .flag("path.udp_ok", false, "")
            .text("path.udp_error", error, "");
        if let Some(answers) = path.tcp_reachable {
            finding = finding.flag("path.tcp_reachable", answers, "");
        }
        if let Some(minutes) = recent {
            finding = finding.number("path.last_connected_minutes_ago", minutes as f64, "");
        }
        finding
    };
    let since = |minutes: i64| match minutes {
        0 => "less than a minute ago".to_owned(),
        1 => "1 minute ago".to_owned(),
        n => format!("{n} minutes ago"),
    };
    let since_fr = |minutes: i64| match minutes {
        0 => "il y a moins d'une minute".to_owned(),
        1 => "il y a 1 minute".to_owned(),
        n => format!("il y a {n} minutes"),
    };

    // The relay's name does not resolve.
    if path.relay_resolved == Some(false) {
        let (segment, confidence, why, why_fr) = if dns_works {
            (
                Segment::Service,
                Confidence::Medium,
                "other names resolve, so the resolver works: the relay's DNS record is the likely cause (a resolver that filters this one name is not ruled out)",
                "d'autres noms se résolvent, donc le résolveur fonctionne : l'enregistrement DNS du relais est la cause probable (un résolveur qui filtre ce seul nom n'est pas exclu)",
            )
        } else {
            (
                Segment::Unknown,
                Confidence::Low,
                "DNS could not be confirmed working for other names, so a resolver problem is not ruled out",
                "le bon fonctionnement du DNS pour d'autres noms n'a pas pu être confirmé, donc un problème de résolveur n'est pas exclu",
            )
        };
        let finding = Finding::new("path.relay_name_unresolved", Stage::Service, Severity::Critical)
            .segment(segment)
            .confidence(confidence)
            .title(
                "The support service's address cannot be found",
                "L'adresse du service d'assistance est introuvable",
            )
            .advice(
                "Nothing to change on this computer for now: tell IT that the support service's address cannot be found.",
                "Rien à changer sur cet ordinateur pour l'instant : signalez au service informatique que l'adresse du service d'assistance est introuvable.",
            )
            .note(
                format!(
                    "The relay name in {} did not resolve ({error}); {why}.",
                    path.relay
                ),
                format!(
                    "Le nom du relais dans {} ne se résout pas ({error_fr}) ; {why_fr}.",
                    path.relay
                ),
            );
        return Ok(vec![evidence(finding)]);
    }

    // The relay's host answers over TCP, but QUIC gets nothing: either UDP
    // is blocked on the way, or the relay service is down on a running host.
    if path.tcp_reachable == Some(true) {
        if let Some(minutes) = recent {
            let finding = Finding::new("path.relay_not_answering", Stage::Service, Severity::Critical)
                .confidence(Confidence::Medium)
                .title(
                    "The support service is not answering",
                    "Le service d'assistance ne répond pas",
                )
                .advice(SERVICE_ADVICE_EN, SERVICE_ADVICE_FR)
                .note(
                    format!(
                        "No QUIC connection to {} ({error}), although its host answers over TCP and this agent last connected to the relay over UDP {}: the relay service is most likely down or restarting. A UDP block that appeared since (another network, a new firewall rule) cannot be ruled out from one device; if other devices connect, look here.",
                        path.relay,
                        since(minutes)
                    ),
                    format!(
                        "Aucune connexion QUIC vers {} ({error_fr}), alors que son hôte répond en TCP et que cet agent s'est connecté au relais en UDP {} : le service du relais est très probablement arrêté ou en train de redémarrer. Un blocage UDP apparu depuis (autre réseau, nouvelle règle de pare-feu) ne peut pas être exclu depuis un seul appareil ; si d'autres appareils se connectent, cherchez de ce côté.",
                        path.relay,
                        since_fr(minutes)
                    ),
                );
            return Ok(vec![evidence(finding)]);
        }
        let confirmed: Vec<&str> = [
            ("the gateway answers", gateway_works),
            ("DNS resolves", dns_works),
        ]
        .into_iter()
        .filter_map(|(what, ok)| ok.then_some(what))
        .collect();
        let confirmed_fr: Vec<&str> = [
            ("la passerelle répond", gateway_works),
            ("le DNS résout", dns_works),
        ]
        .into_iter()
        .filter_map(|(what, ok)| ok.then_some(what))
        .collect();
        let finding = Finding::new("path.udp_blocked", Stage::Configuration, Severity::Critical)
            .title(
                "The connection to the support service is blocked, or the service is down",
                "La connexion au service d'assistance est bloquée, ou le service est arrêté",
            )
            .advice(
                "If you are on a hotel, public or company network, or connected to a VPN, try again from your home network without the VPN. If it fails there too, tell IT: the support service may be down.",
                "Si vous êtes sur le réseau d'un hôtel, un Wi‑Fi public ou un réseau d'entreprise, ou connecté à un VPN, réessayez depuis votre réseau personnel sans VPN. Si cela échoue aussi, prévenez le service informatique : le service d'assistance est peut-être arrêté.",
            )
            .note(
                format!(
                    "No QUIC (UDP) connection to {} ({error}) although the relay's host answers over TCP{}{}: either UDP is blocked on the way (firewall, VPN, network) or the relay service is down on a running host. One device cannot tell these apart, and this agent has no recent UDP connection to the relay to compare with; if every device reports it, check the relay.",
                    path.relay,
                    if confirmed.is_empty() { "" } else { " and " },
                    confirmed.join(" and ")
                ),
                format!(
                    "Aucune connexion QUIC (UDP) vers {} ({error_fr}) alors que l'hôte du relais répond en TCP{}{} : soit l'UDP est bloqué en chemin (pare-feu, VPN, réseau), soit le service du relais est arrêté sur un hôte en marche. Un seul appareil ne peut pas faire la différence, et cet agent n'a pas de connexion UDP récente au relais pour comparer ; si tous les appareils le signalent, vérifiez le relais.",
                    path.relay,
                    if confirmed_fr.is_empty() { "" } else { " et que " },
                    confirmed_fr.join(" et que ")
                ),
            )
            .confidence(if gateway_works && dns_works {
                Confidence::Medium
            } else {
                Confidence::Low
            });
        return Ok(vec![evidence(finding)]);
    }

    // The relay's host does not answer at all (or it was not asked).
    let network_works = gateway_works || dns_works;
    let (segment, confidence, why, why_fr) = match (recent, network_works) {
        (Some(minutes), true) => (
            Segment::Service,
            Confidence::Medium,
            format!(
                "the local network works and this agent connected to the relay over UDP {}, so the relay's host is most likely down or unreachable from the internet; a filter dropping all traffic to it from this network is not ruled out",
                since(minutes)
            ),
            format!(
                "le réseau local fonctionne et cet agent s'est connecté au relais en UDP {}, donc l'hôte du relais est très probablement arrêté ou injoignable depuis internet ; un filtre qui bloque tout le trafic vers lui depuis ce réseau n'est pas exclu",
                since_fr(minutes)
            ),
        ),
        (_, true) => (
            Segment::Unknown,
            Confidence::Low,
            "the local network works, but a host that is down, an outage on the way and a filter dropping all traffic to it look the same from one device".to_owned(),
            "le réseau local fonctionne, mais un hôte arrêté, une panne en chemin et un filtre qui bloque tout le trafic vers lui se ressemblent vus d'un seul appareil".to_owned(),
        ),
        (_, false) => (
            Segment::Unknown,
            Confidence::Low,
            "neither the gateway nor DNS could be confirmed working, so no connectivity, a filter and a relay outage cannot be told apart".to_owned(),
            "ni la passerelle ni le DNS n'ont pu être confirmés en état de marche : une absence de connexion, un filtre et une panne du relais ne peuvent pas être distingués".to_owned(),
        ),
    };
    let finding = Finding::new("path.relay_unreachable", Stage::Service, Severity::Critical)
        .segment(segment)
        .confidence(confidence)
        .title(
            "The support service cannot be reached",
            "Le service d'assistance est injoignable",
        )
        .advice(
            if segment == Segment::Service {
                SERVICE_ADVICE_EN
            } else {
                "Check that other websites open. If they do, nothing needs changing on this computer: tell IT that the support service cannot be reached. If they do not, restart your internet box."
            },
            if segment == Segment::Service {
                SERVICE_ADVICE_FR
            } else {
                "Vérifiez que d'autres sites internet s'ouvrent. Si oui, rien à changer sur cet ordinateur : signalez au service informatique que le service d'assistance est injoignable. Sinon, redémarrez votre box internet."
            },
        )
        .note(
            format!(
                "No QUIC connection to {} ({error}) and its host {} over TCP; {why}.",
                path.relay,
                if path.tcp_reachable == Some(false) {
                    "does not answer"
                } else {
                    "was not tested"
                }
            ),
            format!(
                "Aucune connexion QUIC vers {} ({error_fr}) et son hôte {} en TCP ; {why_fr}.",
                path.relay,
                if path.tcp_reachable == Some(false) {
                    "ne répond pas"
                } else {
                    "n'a pas été testé"
                }
            ),
        );
    Ok(vec![evidence(finding)])
}

/// Datagram probe loss to the relay.
pub(super) fn loss(j: &mut Judge<'_>) -> Result<Vec<Finding>, Skip> {
    let t = j.thresholds;
    let path = connected(j)?;
    if path.probes_sent == 0 {
        return Err(Skip::Unknown(
            "no datagram probe was sent to the relay".to_owned(),
        ));
    }
    if path.probes_received > path.probes_sent {
        return Err(Skip::Unknown(format!(
            "path.probes_received ({}) exceeds path.probes_sent ({}): inconsistent counts",
            path.probes_received, path.probes_sent
        )));
    }
    if path.probes_received == 0 {
        // Connected but nothing answered: the service check reports it.
        return Err(Skip::NotApplicable);
    }
    let Some(loss) = path.loss_percent() else {
        return Err(Skip::Unknown(
            "no datagram probe was sent to the relay".to_owned(),
        ));
    };
    let (severity, limit) = if loss > t.path_loss_critical_percent {
        (Severity::Critical, t.path_loss_critical_percent)
    } else if loss > t.path_loss_percent {
        (Severity::Warning, t.path_loss_percent)
    } else {
        return Ok(vec![]);
    };
    let finding = Finding::new("path.loss", Stage::Isp, severity)
        .title(
            "Data is lost on the way to the support service",
            "Des données se perdent en route vers le service d'assistance",
        )
        .number("path.loss_percent", loss, format!("> {} %", fmt(limit)))
        .advice(ISP_ADVICE_EN, ISP_ADVICE_FR)
        .note(
            format!(
                "{} of {} datagram probes to {} were lost (Teams needs < 1 % over 15 s): calls drop words and remote screens stall.",
                path.probes_sent - path.probes_received,
                path.probes_sent,
                path.relay
            ),
            format!(
                "{} sondes datagrammes sur {} vers {} ont été perdues (Teams exige moins de 1 % sur 15 s) : les appels perdent des mots et les écrans à distance se figent.",
                path.probes_sent - path.probes_received,
                path.probes_sent,
                path.relay
            ),
        );
    let finding = j.qualify(finding, &AFTER_HOME);
    Ok(vec![vpn_caveat(j, finding)])
}

/// Idle round trip to the relay. Through a VPN, a long round trip is a
/// configuration matter (the VPN's route), not the ISP's.
pub(super) fn rtt(j: &mut Judge<'_>) -> Result<Vec<Finding>, Skip> {
    let t = j.thresholds;
    let path = connected(j)?;
    if path.probes_sent > 0 && path.probes_received == 0 {
        return Err(Skip::NotApplicable);
    }
    let Some(stats) = &path.idle_rtt else {
        return Err(Skip::Unknown("path.idle_rtt was not reported".to_owned()));
    };
    let median = number(Some(stats.median_ms), "path.idle_rtt.median_ms")?;
    if median < 0.0 {
        return Err(Skip::Unknown(format!(
            "path.idle_rtt.median_ms is negative ({median})"
        )));
    }
    let (severity, limit) = if median > t.path_rtt_critical_ms {
        (Severity::Critical, t.path_rtt_critical_ms)
    } else if median > t.path_rtt_ms {
        (Severity::Warning, t.path_rtt_ms)
    } else {
        return Ok(vec![]);
    };
    let evidence = |finding: Finding| {
        finding.number(
            "path.idle_rtt.median_ms",
            median,
            format!("> {} ms", fmt(limit)),
        )
    };
    let finding = if through_vpn(j) {
        evidence(Finding::new("vpn.rtt_high", Stage::Configuration, severity))
            .confidence(Confidence::Medium)
            .title(
                "The VPN makes the connection slow to respond",
                "Le VPN rend la connexion lente à réagir",
            )
            .advice(
                "Your connection goes through a VPN that adds delay. Ask IT whether you may disconnect the VPN during support sessions.",
                "Votre connexion passe par un VPN qui ajoute du délai. Demandez au service informatique si vous pouvez déconnecter le VPN pendant les sessions d'assistance.",
            )
            .note(
                format!(
                    "Idle median RTT {} ms (min {} ms) with the relay route through a VPN: the VPN server's location or load is the likely cause; consider split tunnelling for the relay.",
                    fmt(median),
                    fmt(stats.min_ms)
                ),
                format!(
                    "RTT médian au repos de {} ms (min. {} ms) avec une route vers le relais passant par un VPN : l'emplacement ou la charge du serveur VPN est la cause probable ; envisagez un tunnel partagé (split tunnelling) pour le relais.",
                    fmt(median).replace('.', ","),
                    fmt(stats.min_ms).replace('.', ",")
                ),
            )
    } else {
        evidence(Finding::new("path.rtt_high", Stage::Isp, severity))
            .title(
                "The connection is slow to respond",
                "La connexion est lente à réagir",
            )
            .advice(ISP_ADVICE_EN, ISP_ADVICE_FR)
            .note(
                format!(
                    "Idle median RTT to {} is {} ms (min {}, p95 {}); Teams needs < 100 ms and ITU-T G.114 puts the limit of comfortable interaction at 150 ms one way.",
                    path.relay,
                    fmt(median),
                    fmt(stats.min_ms),
                    fmt(stats.p95_ms)
                ),
                format!(
                    "Le RTT médian au repos vers {} est de {} ms (min. {}, p95 {}) ; Teams exige moins de 100 ms et l'UIT-T G.114 place la limite d'une interaction confortable à 150 ms dans un sens.",
                    path.relay,
                    fmt(median).replace('.', ","),
                    fmt(stats.min_ms).replace('.', ","),
                    fmt(stats.p95_ms).replace('.', ",")
                ),
            )
    };
    Ok(vec![j.qualify(finding, &TIMING_AFTER_HOME)])
}

/// Jitter on the idle path.
pub(super) fn jitter(j: &mut Judge<'_>) -> Result<Vec<Finding>, Skip> {
    let t = j.thresholds;
    let path = connected(j)?;
    if path.probes_sent > 0 && path.probes_received == 0 {
        return Err(Skip::NotApplicable);
    }
    let Some(stats) = &path.idle_rtt else {
        return Err(Skip::Unknown("path.idle_rtt was not reported".to_owned()));
    };
    if stats.samples < 2 {
        return Err(Skip::Unknown(format!(
            "jitter needs at least two round trips; {} measured",
            stats.samples
        )));
    }
    // Agents that probe like a call (20 ms apart) report the RFC 3550
    // interarrival jitter; older snapshots only have the mean difference of
    // back-to-back probes.
    let (metric, jitter, definition_en, definition_fr) = match path.media_jitter_ms {
        Some(media) => (
            "path.media_jitter_ms",
            number(Some(media), "path.media_jitter_ms")?,
            "RFC 3550 interarrival jitter of probes sent 20 ms apart, as a call's audio meets it",
            "gigue d'arrivée RFC 3550 de sondes espacées de 20 ms, telle que la subit le son d'un appel",
        ),
        None => (
            "path.idle_rtt.jitter_ms",
            number(Some(stats.jitter_ms), "path.idle_rtt.jitter_ms")?,
            "mean absolute difference between consecutive RTT samples, as Cloudflare defines it",
            "écart absolu moyen entre mesures de RTT consécutives, selon la définition de Cloudflare",
        ),
    };
    if jitter < 0.0 {
        return Err(Skip::Unknown(format!("{metric} is negative ({jitter})")));
    }
    if jitter <= t.path_jitter_ms {
        return Ok(vec![]);
    }
    let finding = Finding::new("path.jitter_high", Stage::Isp, Severity::Warning)
        .title("The connection is unsteady", "La connexion est irrégulière")
        .number(metric, jitter, format!("> {} ms", fmt(t.path_jitter_ms)))
        .advice(ISP_ADVICE_EN, ISP_ADVICE_FR)
        .note(
            format!(
                "Jitter ({definition_en}) is {} ms over {} samples; Teams needs < 30 ms. Audio and video stutter.",
                fmt(jitter),
                stats.samples
            ),
            format!(
                "La gigue ({definition_fr}) est de {} ms sur {} mesures ; Teams exige moins de 30 ms. Le son et la vidéo saccadent.",
                fmt(jitter).replace('.', ","),
                stats.samples
            ),
        );
    let finding = j.qualify(finding, &TIMING_AFTER_HOME);
    Ok(vec![vpn_caveat(j, finding)])
}

/// Latency added under load (bufferbloat).
pub(super) fn bufferbloat(j: &mut Judge<'_>) -> Result<Vec<Finding>, Skip> {
    let t = j.thresholds;
    let path = connected(j)?;
    let worse = path.loaded.as_ref().and_then(|l| l.worse());
    let added = path
        .added_latency_under_load_ms()
        .filter(|a| a.is_finite() && *a >= 0.0);
    let grade = match (path.bufferbloat, added) {
        (Some(grade), _) => grade,
        (None, Some(added)) => Grade::from_added_latency(added),
        (None, None) => {
            let not_requested = matches!(path.download, Probe::NotApplicable { .. })
                && matches!(path.upload, Probe::NotApplicable { .. });
            return if not_requested {
                Err(Skip::NotApplicable)
            } else {
                Err(Skip::Unknown(
                    "latency under load was not measured".to_owned(),
                ))
            };
        }
    };
    let (severity, limit) = if grade >= t.bufferbloat_critical_grade {
        (Severity::Critical, t.bufferbloat_critical_grade)
    } else if grade >= t.bufferbloat_grade {
        (Severity::Warning, t.bufferbloat_grade)
    } else {
        return Ok(vec![]);
    };
    let mut finding = Finding::new("path.bufferbloat", Stage::Isp, severity)
        .title(
            "The connection slows down a lot when it is busy",
            "La connexion ralentit beaucoup quand elle est chargée",
        )
        .text(
            "path.bufferbloat",
            grade.name(),
            format!("{} or worse", limit.name()),
        );
    if let Some(added) = added {
        finding = finding.number(
            "path.added_latency_ms",
            added,
            "grade bands: C ≥ 60 ms, D ≥ 200 ms, F ≥ 400 ms",
        );
    }
    if let Some((direction, load)) = worse {
        finding = finding.text("path.loaded.direction", direction, "the worse direction");
        if let Some(loss) = load.loss_percent() {
            finding = finding.number(
                format!("path.loaded.{direction}.loss_percent"),
                loss,
                "probe loss while the transfer ran",
            );
        }
    }
    if let Some(rpm) = path
        .loaded
        .as_ref()
        .and_then(|l| l.rpm)
        .filter(|r| r.is_finite())
    {
        finding = finding.number(
            "path.responsiveness_rpm",
            rpm,
            "round trips per minute under load: 60 000 / the loaded median round trip in ms",
        );
    }
    let finding = finding
        .advice(
            "When someone at home downloads, uploads or streams, your calls and sessions suffer. Pause large transfers during calls; your internet box may have a setting (\"smart queue\", \"QoS\") that fixes this.",
            "Quand quelqu'un à la maison télécharge, envoie des fichiers ou regarde des vidéos, vos appels et sessions en souffrent. Mettez en pause les gros transferts pendant les appels ; votre box a peut-être un réglage (« QoS », « gestion de file ») qui corrige cela.",
        )
        .note(
            "Latency rises under load (bufferbloat grade as in the common public tests): the queue is usually in the internet box or modem; SQM/smart queue management on the router or a better ISP profile fixes it.",
            "Le délai augmente en charge (note de bufferbloat comme dans les tests publics courants) : la file d'attente est en général dans la box internet ou le modem ; une gestion intelligente des files (SQM) sur le routeur ou une meilleure offre du fournisseur d'accès corrige cela.",
        );
    Ok(vec![j.qualify(finding, &TIMING_AFTER_HOME)])
}

fn throughput(
    j: &mut Judge<'_>,
    direction: &'static str,
    minimum: f64,
    probe: fn(&Path) -> &Probe<Throughput>,
) -> Result<Vec<Finding>, Skip> {
    let path = connected(j)?;
    let what = format!("path.{direction}");
    let measured = j.probe(&what, probe(path))?;
    let mbps = number(Some(measured.mbps), &format!("path.{direction}.mbps"))?;
    if mbps < 0.0 {
        return Err(Skip::Unknown(format!(
            "path.{direction}.mbps is negative ({mbps})"
        )));
    }
    if mbps >= minimum {
        return Ok(vec![]);
    }
    let (id, title) = if direction == "download" {
        (
            "path.download_slow",
            (
                "Receiving data is too slow",
                "La réception de données est trop lente",
            ),
        )
    } else {
        (
            "path.upload_slow",
            (
                "Sending data is too slow",
                "L'envoi de données est trop lent",
            ),
        )
    };
    let finding = Finding::new(id, Stage::Isp, Severity::Warning)
        .title(title.0, title.1)
        .number(format!("path.{direction}.mbps"), mbps, format!("< {} Mbit/s", fmt(minimum)))
        .advice(
            "Pause downloads, cloud backups and video streaming at home during sessions. If it stays slow, check your internet plan with your provider.",
            "Mettez en pause les téléchargements, sauvegardes en ligne et vidéos à la maison pendant les sessions. Si cela reste lent, vérifiez votre abonnement auprès de votre fournisseur.",
        )
        .note(
            format!(
                "{direction} goodput {} Mbit/s over {} ms on one QUIC connection; a remote session or HD call needs about 1.5 Mbit/s each way. One flow can understate capacity on long paths, but not below this level.",
                fmt(mbps),
                measured.duration_ms
            ),
            format!(
                "Débit utile {} de {} Mbit/s sur {} ms avec une seule connexion QUIC ; une session à distance ou un appel HD demande environ 1,5 Mbit/s dans chaque sens. Un seul flux peut sous-estimer la capacité sur les longs trajets, mais pas en dessous de ce niveau.",
                if direction == "download" { "descendant" } else { "montant" },
                fmt(mbps).replace('.', ","),
                measured.duration_ms
            ),
        );
    let finding = j.qualify(finding, &AFTER_HOME);
    Ok(vec![vpn_caveat(j, finding)])
}

/// Download speed.
pub(super) fn download(j: &mut Judge<'_>) -> Result<Vec<Finding>, Skip> {
    let minimum = j.thresholds.download_min_mbps;
    throughput(j, "download", minimum, |p| &p.download)
}

/// Upload speed.
pub(super) fn upload(j: &mut Judge<'_>) -> Result<Vec<Finding>, Skip> {
    let minimum = j.thresholds.upload_min_mbps;
    throughput(j, "upload", minimum, |p| &p.upload)
}

/// Time to connect to the relay, when nothing upstream explains a delay.
pub(super) fn relay_connect(j: &mut Judge<'_>) -> Result<Vec<Finding>, Skip> {
    let t = j.thresholds;
    let path = connected(j)?;
    let connect = number(path.connect_ms, "path.connect_ms")?;
    if connect < 0.0 {
        return Err(Skip::Unknown(format!(
            "path.connect_ms is negative ({connect})"
        )));
    }
    if connect <= t.relay_connect_slow_ms {
        return Ok(vec![]);
    }
    let problems = j.upstream_problems(&AFTER_EVERYTHING);
    if !problems.is_empty() {
        return Err(Skip::Unknown(format!(
            "the relay took {} ms to connect, but {} upstream may explain it",
            fmt(connect),
            problems.join(", ")
        )));
    }
    let finding = Finding::new("service.relay_slow", Stage::Service, Severity::Warning)
        .title(
            "The support service is slow to answer",
            "Le service d'assistance met du temps à répondre",
        )
        .number("path.connect_ms", connect, format!("> {} ms", fmt(t.relay_connect_slow_ms)))
        .advice(
            "The delay is on our side, not yours. You do not need to change anything; IT has been told through this report.",
            "Le retard vient de notre côté, pas du vôtre. Vous n'avez rien à changer ; le service informatique en est informé par ce rapport.",
        )
        .note(
            format!(
                "Connecting and authenticating to {} took {} ms while the path is clean: check the relay's load, its database and its logs.",
                path.relay,
                fmt(connect)
            ),
            format!(
                "La connexion et l'authentification auprès de {} ont pris {} ms alors que le chemin est sain : vérifiez la charge du relais, sa base de données et ses journaux.",
                path.relay,
                fmt(connect).replace('.', ",")
            ),
        );
    Ok(vec![j.qualify(finding, &AFTER_EVERYTHING)])
}

/// The relay answers the datagram probes on an established connection.
pub(super) fn relay_answers(j: &mut Judge<'_>) -> Result<Vec<Finding>, Skip> {
    let path = connected(j)?;
    if path.probes_sent == 0 {
        return Err(Skip::Covered("path.loss".to_owned()));
    }
    if path.probes_received > 0 {
        return Ok(vec![]);
    }
    let problems = j.upstream_problems(&AFTER_EVERYTHING);
    if !problems.is_empty() {
        return Err(Skip::Unknown(format!(
            "the relay answered none of {} probes, but {} upstream may explain it",
            path.probes_sent,
            problems.join(", ")
        )));
    }
    let finding = Finding::new("service.relay_unresponsive", Stage::Service, Severity::Critical)
        .title(
            "The support service accepts the connection but does not answer",
            "Le service d'assistance accepte la connexion mais ne répond pas",
        )
        .number("path.probes_received", 0.0, format!("= 0 of {} sent", path.probes_sent))
        .advice(
            "The problem is on our side, not yours. You do not need to change anything; IT has been told through this report.",
            "Le problème vient de notre côté, pas du vôtre. Vous n'avez rien à changer ; le service informatique en est informé par ce rapport.",
        )
        .note(
            format!(
                "The QUIC connection to {} was established, so UDP passes both ways, yet none of {} datagram probes was answered: check the relay's measurement handler and its logs.",
                path.relay, path.probes_sent
            ),
            format!(
                "La connexion QUIC vers {} a été établie, donc l'UDP passe dans les deux sens, mais aucune des {} sondes datagrammes n'a reçu de réponse : vérifiez le traitement des mesures du relais et ses journaux.",
                path.relay, path.probes_sent
            ),
        );
    Ok(vec![j.qualify(finding, &AFTER_EVERYTHING)])
}
