//! Configuration checks: the machine's routes, name resolution, clock,
//! proxy and VPN settings.
//!
//! DNS trouble can come from a broken home network, so DNS findings are
//! qualified by the link and gateway stages.

use super::{fmt, median, Confidence, Finding, Judge, Severity, Skip, Stage, Upstream};
use crate::snapshot::{Dns, NetworkConfig};

const AFTER_HOME: Upstream = Upstream {
    stages: &[Stage::Link, Stage::Gateway],
    also: &["config.no_default_route"],
};

fn network<'a>(j: &mut Judge<'a>) -> Result<&'a NetworkConfig, Skip> {
    let snapshot = j.snapshot;
    j.probe("network", &snapshot.network)
}

fn dns<'a>(j: &mut Judge<'a>) -> Result<&'a Dns, Skip> {
    let snapshot = j.snapshot;
    let dns = j.probe("dns", &snapshot.dns)?;
    if dns.lookups.is_empty() {
        return Err(Skip::Covered("dns.resolution".to_owned()));
    }
    Ok(dns)
}

/// Where the resolver configuration stands, for technician notes (English,
/// French).
fn resolver_note(j: &Judge<'_>) -> (String, String) {
    match j.snapshot.network.value() {
        Some(network) if network.dns_local_stub => (
            format!(
                "The system resolver is a local stub (servers listed: {}); check its upstream servers (e.g. `resolvectl status`).",
                list(&network.dns_servers)
            ),
            format!(
                "Le résolveur du système est un relais local (serveurs indiqués : {}) ; vérifiez ses serveurs en amont (par exemple `resolvectl status`).",
                list_fr(&network.dns_servers)
            ),
        ),
        Some(network) => (
            format!("DNS servers: {}.", list(&network.dns_servers)),
            format!("Serveurs DNS : {}.", list_fr(&network.dns_servers)),
        ),
        None => (
            "DNS servers unknown.".to_owned(),
            "Serveurs DNS inconnus.".to_owned(),
        ),
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

fn list_fr(items: &[String]) -> String {
    if items.is_empty() {
        "aucun".to_owned()
    } else {
        items.join(", ")
    }
}

/// A default route exists.
pub(super) fn default_route(j: &mut Judge<'_>) -> Result<Vec<Finding>, Skip> {
    let network = network(j)?;
    if network.default_route.is_some() {
        return Ok(vec![]);
    }
    let up: Vec<&str> = network
        .interfaces
        .iter()
        .filter(|i| i.up)
        .map(|i| i.name.as_str())
        .collect();
    Ok(vec![Finding::new("config.no_default_route", Stage::Configuration, Severity::Critical)
        .title("This computer is not connected to any network", "L'ordinateur n'est connecté à aucun réseau")
        .text("network.default_route", "none", "")
        .advice(
            "Check that Wi‑Fi is switched on and connected to your home network (or that the network cable is plugged in), then try again.",
            "Vérifiez que le Wi‑Fi est activé et connecté à votre réseau (ou que le câble réseau est branché), puis réessayez.",
        )
        .note(
            format!(
                "No IPv4 default route; interfaces up: {}. Either the link is down, DHCP failed, or a VPN/firewall tool removed the route.",
                list(&up.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
            ),
            format!(
                "Aucune route IPv4 par défaut ; interfaces actives : {}. Soit la liaison est coupée, soit le DHCP a échoué, soit un VPN ou un pare-feu a retiré la route.",
                list_fr(&up.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
            ),
        )])
}

/// Lookups succeed.
pub(super) fn dns_resolution(j: &mut Judge<'_>) -> Result<Vec<Finding>, Skip> {
    let snapshot = j.snapshot;
    let dns = j.probe("dns", &snapshot.dns)?;
    if dns.lookups.is_empty() {
        return Err(Skip::Unknown("no name was looked up".to_owned()));
    }
    let failed: Vec<_> = dns
        .lookups
        .iter()
        .filter(|l| l.error.is_some() || l.duration_ms.is_none())
        .collect();
    if failed.is_empty() {
        return Ok(vec![]);
    }
    let all = failed.len() == dns.lookups.len();
    let mut finding = if all {
        Finding::new("dns.failing", Stage::Configuration, Severity::Critical).title(
            "Internet names cannot be found (DNS)",
            "Les noms des sites internet ne sont pas trouvés (DNS)",
        )
    } else {
        Finding::new(
            "dns.partial_failure",
            Stage::Configuration,
            Severity::Warning,
        )
        .title(
            "Some internet names cannot be found (DNS)",
            "Certains noms de sites internet ne sont pas trouvés (DNS)",
        )
    };
    for lookup in &failed {
        finding = finding.text(
            format!("dns.lookups[{}].error", lookup.name),
            lookup
                .error
                .clone()
                .unwrap_or_else(|| "no answer".to_owned()),
            "",
        );
    }
    finding = finding
        .advice(
            "Restart the computer and your internet box. If you set a custom DNS server or use a VPN or filtering software, turn it off and try again, or ask IT.",
            "Redémarrez l'ordinateur et votre box internet. Si vous avez réglé un serveur DNS particulier ou utilisez un VPN ou un logiciel de filtrage, désactivez-le et réessayez, ou demandez au service informatique.",
        )
        .note(
            format!(
                "{} of {} lookups through the system resolver failed. {}",
                failed.len(),
                dns.lookups.len(),
                resolver_note(j).0
            ),
            format!(
                "{} recherche{} sur {} par le résolveur du système en échec. {}",
                failed.len(),
                if failed.len() == 1 { "" } else { "s" },
                dns.lookups.len(),
                resolver_note(j).1
            ),
        );
    // The relay reached by address proves there is connectivity, so the
    // failure is the resolver's; without that proof it is less certain.
    let direct_ok: Vec<&str> = dns
        .direct
        .iter()
        .filter(|d| d.error.is_none() && d.answers > 0 && failed.iter().any(|f| f.name == d.name))
        .map(|d| d.server.as_str())
        .collect();
    if !direct_ok.is_empty() {
        finding.add_note(
            &format!(
                "Asked directly, the DNS server(s) {} answered for the same names: the local resolver (stub resolver, /etc/resolv.conf, VPN or filtering software) is at fault, not the DNS server.",
                direct_ok.join(", ")
            ),
            &format!(
                "Interrogé(s) directement, le ou les serveurs DNS {} ont répondu pour les mêmes noms : c'est le résolveur local (relais local, /etc/resolv.conf, VPN ou logiciel de filtrage) qui est en cause, pas le serveur DNS.",
                direct_ok.join(", ")
            ),
        );
    } else if dns.relay_reachable == Some(true) {
        finding.add_note(
            "The relay was reachable by address, so connectivity works and the resolver is at fault.",
            "Le relais était joignable par son adresse : la connexion fonctionne et c'est le résolveur qui est en cause.",
        );
    } else {
        finding = finding.confidence(Confidence::Medium);
        finding.add_note(
            "The relay was not reached by address either, so this may be no connectivity at all rather than DNS.",
            "Le relais n'a pas été joint par son adresse non plus : il se peut qu'il n'y ait aucune connexion, plutôt qu'un problème de DNS.",
        );
    }
    Ok(vec![j.qualify(finding, &AFTER_HOME)])
}

/// Lookups are quick.
pub(super) fn dns_latency(j: &mut Judge<'_>) -> Result<Vec<Finding>, Skip> {
    let t = j.thresholds;
    let dns = dns(j)?;
    let mut durations: Vec<f64> = dns
        .lookups
        .iter()
        .filter(|l| l.error.is_none())
        .filter_map(|l| l.duration_ms)
        .collect();
    if durations.is_empty() {
        // Every lookup failed: the resolution check reports it.
        return Err(Skip::Covered("dns.resolution".to_owned()));
    }
    durations.retain(|d| d.is_finite() && *d >= 0.0);
    let Some(median) = median(&mut durations) else {
        return Err(Skip::Unknown(
            "dns.lookups durations are not usable numbers".to_owned(),
        ));
    };
    if median <= t.dns_slow_ms {
        return Ok(vec![]);
    }
    let finding = Finding::new("dns.slow", Stage::Configuration, Severity::Warning)
        .title("Finding internet names is slow (DNS)", "La recherche des noms de sites internet est lente (DNS)")
        .number("dns.lookups.median_duration_ms", median, format!("> {} ms", fmt(t.dns_slow_ms)))
        .advice(
            "Restart your internet box. If you use a VPN or a custom DNS server, try without it, or ask IT.",
            "Redémarrez votre box internet. Si vous utilisez un VPN ou un serveur DNS particulier, essayez sans, ou demandez au service informatique.",
        )
        .note(
            format!(
                "Median lookup time {} ms over {} lookups: every new connection waits this long. {}",
                fmt(median),
                durations.len(),
                resolver_note(j).0
            ),
            format!(
                "Durée médiane de recherche de {} ms sur {} recherches : chaque nouvelle connexion attend autant. {}",
                fmt(median).replace('.', ","),
                durations.len(),
                resolver_note(j).1
            ),
        );
    Ok(vec![j.qualify(finding, &AFTER_HOME)])
}

/// The clock agrees with the relay's.
pub(super) fn clock(j: &mut Judge<'_>) -> Result<Vec<Finding>, Skip> {
    let t = j.thresholds;
    let snapshot = j.snapshot;
    let clock = j.probe("clock", &snapshot.clock)?;
    let offset_ms = clock.offset_ms as f64;
    let offset_s = clock.offset_ms.unsigned_abs() as f64 / 1000.0;
    let (severity, limit) = if offset_s > t.clock_offset_critical_s {
        (Severity::Critical, t.clock_offset_critical_s)
    } else if offset_s > t.clock_offset_s {
        (Severity::Warning, t.clock_offset_s)
    } else {
        return Ok(vec![]);
    };
    let (uncertainty, uncertainty_fr) = if clock.rtt_ms.is_finite() && clock.rtt_ms >= 0.0 {
        (
            format!(
                " (± {} ms from the exchange's round trip)",
                fmt(clock.rtt_ms / 2.0)
            ),
            format!(
                " (± {} ms d'après l'aller-retour de l'échange)",
                fmt(clock.rtt_ms / 2.0).replace('.', ",")
            ),
        )
    } else {
        (String::new(), String::new())
    };
    Ok(vec![Finding::new("clock.offset", Stage::Configuration, severity)
        .title("The computer's clock is wrong", "L'horloge de l'ordinateur n'est pas à l'heure")
        .number("clock.offset_ms", offset_ms, format!("|offset| > {} s", fmt(limit)))
        .advice(
            "Turn on \"Set time automatically\" in the date and time settings, check the time zone, then restart the computer.",
            "Activez « Régler l'heure automatiquement » dans les paramètres de date et d'heure, vérifiez le fuseau horaire, puis redémarrez l'ordinateur.",
        )
        .note(
            format!(
                "Relay clock minus device clock is {} s{uncertainty}: time synchronisation (NTP) is not working. Secure connections, sign-in tokens and one-time codes fail when clocks disagree.",
                fmt(offset_ms / 1000.0)
            ),
            format!(
                "L'horloge du relais moins celle de l'ordinateur donne {} s{uncertainty_fr} : la synchronisation de l'heure (NTP) ne fonctionne pas. Les connexions sécurisées, les jetons de connexion et les codes à usage unique échouent quand les horloges divergent.",
                fmt(offset_ms / 1000.0).replace('.', ",")
            ),
        )])
}

/// Hides credentials in a proxy URL (`http://user:secret@host` →
/// `http://***@host`).
fn redact(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    match rest.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}***@{host}"),
        None => url.to_owned(),
    }
}

/// A proxy is configured (information: it may matter).
pub(super) fn proxy(j: &mut Judge<'_>) -> Result<Vec<Finding>, Skip> {
    let network = network(j)?;
    let proxy = &network.proxy;
    let set: Vec<(&str, &String)> = [
        ("http", &proxy.http),
        ("https", &proxy.https),
        ("all", &proxy.all),
    ]
    .into_iter()
    .filter_map(|(name, value)| {
        value
            .as_ref()
            .filter(|v| !v.trim().is_empty())
            .map(|v| (name, v))
    })
    .collect();
    if set.is_empty() {
        return Ok(vec![]);
    }
    let mut finding = Finding::new("config.proxy", Stage::Configuration, Severity::Info)
        .title("A proxy is configured", "Un proxy est configuré")
        .advice(
            "A proxy server is set on this computer. If you did not set it up yourself or your company does not use one, tell IT.",
            "Un serveur proxy est réglé sur cet ordinateur. Si vous ne l'avez pas installé vous-même ou si votre entreprise n'en utilise pas, signalez-le au service informatique.",
        )
        .note(
            format!(
                "Proxy settings from {}{}. QUIC to the relay does not use HTTP proxies, but browsers and other tools do; a stale proxy breaks them.",
                proxy.source.as_deref().unwrap_or("an unknown source"),
                proxy.no_proxy.as_deref().map(|n| format!(", no_proxy={n}")).unwrap_or_default()
            ),
            format!(
                "Réglages de proxy venant de {}{}. QUIC vers le relais n'utilise pas les proxys HTTP, mais les navigateurs et d'autres outils si ; un proxy périmé les bloque.",
                proxy.source.as_deref().unwrap_or("une source inconnue"),
                proxy.no_proxy.as_deref().map(|n| format!(", no_proxy={n}")).unwrap_or_default()
            ),
        );
    for (name, value) in set {
        finding = finding.text(format!("network.proxy.{name}"), redact(value), "");
    }
    Ok(vec![finding])
}

/// The relay path goes through a VPN (information).
pub(super) fn vpn(j: &mut Judge<'_>) -> Result<Vec<Finding>, Skip> {
    let network = network(j)?;
    match network.relay_via_vpn {
        Some(false) => Ok(vec![]),
        None if network.vpn_interfaces.is_empty() => Ok(vec![]),
        None => Err(Skip::Unknown(format!(
            "VPN interfaces are up ({}) but whether the relay path uses them was not reported",
            network.vpn_interfaces.join(", ")
        ))),
        Some(true) => Ok(vec![Finding::new("config.vpn", Stage::Configuration, Severity::Info)
            .title("The connection goes through a VPN", "La connexion passe par un VPN")
            .flag("network.relay_via_vpn", true, "")
            .advice(
                "Your connection to the support service goes through a VPN, which can slow it down. If a session is slow, ask IT whether you may disconnect the VPN.",
                "Votre connexion au service d'assistance passe par un VPN, ce qui peut la ralentir. Si la session est lente, demandez au service informatique si vous pouvez déconnecter le VPN.",
            )
            .note(
                format!(
                    "The route to the relay leaves through VPN interface(s) {}: path measurements include the VPN's own path and server.",
                    list(&network.vpn_interfaces)
                ),
                format!(
                    "La route vers le relais sort par la ou les interfaces VPN {} : les mesures du chemin incluent le trajet et le serveur du VPN.",
                    list_fr(&network.vpn_interfaces)
                ),
            )]),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn proxy_credentials_are_hidden() {
        let cases = [
            (
                "http://user:secret@proxy.corp:3128",
                "http://***@proxy.corp:3128",
            ),
            ("http://proxy.corp:3128", "http://proxy.corp:3128"),
            ("user:p@ss@proxy:8080", "***@proxy:8080"),
        ];
        for (url, expected) in cases {
            assert_eq!(redact(url), expected);
        }
    }
}
