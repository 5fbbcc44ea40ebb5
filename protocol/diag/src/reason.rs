//! Why something could not be measured, in French.
//!
//! The agent and the classifier write the reasons of [`crate::Probe::Unknown`]
//! and [`crate::Unknown`] in English (they are stored in snapshots and
//! verdicts as plain strings). This catalogue gives the French report their
//! French version, keyed by the English text; a `{}` in a key stands for
//! any text (a field name, an error), carried over unchanged. A reason not
//! in the catalogue stays English and the report says so.
//!
//! Pure: no I/O.

/// English reason templates and their French versions, most specific
/// first (the first match wins). `{}` matches any text, in order; what it
/// matched is translated in turn when the catalogue knows it.
#[rustfmt::skip]
pub static CATALOGUE: &[(&str, &str)] = &[
    // Written by the Linux agent (agent/src/diag; its tests check that
    // each of its reasons has an entry here).
    ("/proc/pressure is not available (kernel without PSI, or psi=0)", "/proc/pressure n'est pas disponible (noyau sans PSI, ou psi=0)"),
    ("{}, and /proc/net/wireless is not readable", "{}, et /proc/net/wireless n'est pas lisible"),
    ("{}, and /proc/net/wireless does not list {}", "{}, et /proc/net/wireless ne mentionne pas {}"),
    ("the `iw` tool is not installed (Debian package iw)", "l'outil `iw` n'est pas installé (paquet Debian iw)"),
    ("cannot run iw: {}", "impossible de lancer iw : {}"),
    ("iw {} failed: {}", "iw {} a échoué : {}"),
    ("the gateway {} answered no ping and no TCP probe on ports 53, 80 or 443; it may still be fine", "la passerelle {} n'a répondu à aucun ping ni à aucune sonde TCP sur les ports 53, 80 ou 443 ; elle fonctionne peut-être quand même"),
    ("the gateway {} answered no TCP probe on ports 53, 80 or 443 and ICMP is not available to unprivileged programs here; it may still be fine", "la passerelle {} n'a répondu à aucune sonde TCP sur les ports 53, 80 ou 443 et l'ICMP n'est pas accessible aux programmes sans privilèges ici ; elle fonctionne peut-être quand même"),
    ("no round-trip probe was answered", "aucune sonde aller-retour n'a reçu de réponse"),
    ("the relay address did not resolve", "l'adresse du relais ne se résout pas"),
    ("no UDP socket could be opened", "aucun socket UDP n'a pu être ouvert"),
    ("no QUIC connection to the relay", "aucune connexion QUIC vers le relais"),
    ("the relay refused the measurement: {}", "le relais a refusé la mesure : {}"),
    ("the measurement could not start: {}", "la mesure n'a pas pu démarrer : {}"),
    ("the speed test was not run: {}", "le test de débit n'a pas été fait : {}"),
    ("the speed test was not run", "le test de débit n'a pas été fait"),
    ("cannot open a transfer stream: {}", "impossible d'ouvrir un flux de transfert : {}"),
    ("the relay's hourly speed-test allowance for this device ran out during the download", "le quota horaire de tests de débit de cet appareil sur le relais s'est épuisé pendant le test descendant"),
    ("download interrupted: {}", "test de débit descendant interrompu : {}"),
    ("upload interrupted: {}", "test de débit montant interrompu : {}"),
    ("the relay did not report what it received", "le relais n'a pas indiqué ce qu'il a reçu"),
    ("the relay refused the upload test: {}", "le relais a refusé le test de débit montant : {}"),
    ("unexpected answer to the upload test: {}", "réponse inattendue au test de débit montant : {}"),
    ("no data moved during the transfer", "aucune donnée n'a circulé pendant le transfert"),
    ("no temperature sensor is readable (common in virtual machines)", "aucun capteur de température n'est lisible (fréquent dans les machines virtuelles)"),
    ("network configuration unknown: {}", "configuration réseau inconnue : {}"),
    ("the local probes failed: {}", "les mesures locales ont échoué : {}"),
    ("no default gateway", "pas de passerelle par défaut"),
    ("not enrolled: no relay to measure", "non inscrit : aucun relais à mesurer"),
    ("not enrolled: no relay to compare with", "non inscrit : aucun relais avec lequel comparer"),
    // Written by the Windows agent (agent/src/diag/platform/windows; its
    // tests check these too).
    ("location permission off: Windows 11 (24H2 and later) shows Wi‑Fi details only to apps allowed to use the location; allow it in Settings > Privacy & security > Location (turn on Location services and Let desktop apps access your location), then run the check again", "autorisation de localisation désactivée : Windows 11 (24H2 et ultérieur) ne montre les détails du Wi‑Fi qu'aux applications autorisées à utiliser la localisation ; autorisez-la dans Paramètres > Confidentialité et sécurité > Localisation (activez les services de localisation et « Autoriser les applications de bureau à accéder à votre position »), puis relancez la vérification"),
    ("running under Wine, whose Native Wifi API (wlanapi) is a stub that lists no interface: the Wi‑Fi radio cannot be read", "exécuté sous Wine, dont l'API Native Wifi (wlanapi) est une ébauche qui ne liste aucune interface : la radio Wi‑Fi ne peut pas être lue"),
    ("running under Wine, which has no network connectivity status indicator (NCSI)", "exécuté sous Wine, qui n'a pas d'indicateur d'état de la connectivité réseau (NCSI)"),
    ("this Windows has no GetNetworkConnectivityHint (Windows 10 version 2004 or later has it)", "ce Windows n'a pas GetNetworkConnectivityHint (présent à partir de Windows 10 version 2004)"),
    ("GetNetworkConnectivityHint failed (status {})", "GetNetworkConnectivityHint a échoué (état {})"),
    ("GetAdaptersAddresses failed (Windows error {})", "GetAdaptersAddresses a échoué (erreur Windows {})"),
    ("Windows does not know the battery's state", "Windows ne connaît pas l'état de la batterie"),
    ("GetSystemPowerStatus failed", "GetSystemPowerStatus a échoué"),
    ("the WLAN AutoConfig service does not answer (WlanOpenHandle: Windows error {}); start it in services.msc", "le service de configuration automatique WLAN ne répond pas (WlanOpenHandle : erreur Windows {}) ; démarrez-le dans services.msc"),
    ("{}, and netsh could not run: {}", "{}, et netsh n'a pas pu être lancé : {}"),
    ("{}, and netsh wlan show interfaces lists no connected interface", "{}, et netsh wlan show interfaces ne liste aucune interface connectée"),
    ("wlanapi.dll is not available (Windows Server without the Wireless LAN Service)", "wlanapi.dll n'est pas disponible (Windows Server sans le service de réseau local sans fil)"),
    ("WlanEnumInterfaces failed (Windows error {})", "WlanEnumInterfaces a échoué (erreur Windows {})"),
    ("WlanQueryInterface (current connection) failed (Windows error {})", "WlanQueryInterface (connexion en cours) a échoué (erreur Windows {})"),
    ("{} failed (Windows error {})", "{} a échoué (erreur Windows {})"),
    // Written by the classifier (crate::verdict).
    ("device.memory.total_bytes is 0 (not collected)", "device.memory.total_bytes vaut 0 (non relevé)"),
    ("device.memory.available_bytes exceeds total_bytes (inconsistent reading)", "device.memory.available_bytes dépasse total_bytes (lecture incohérente)"),
    ("no system volume was reported", "aucun volume système n'a été fourni"),
    ("the system volume reported no size", "le volume système n'a pas indiqué sa taille"),
    ("no temperature sensor gave a usable reading", "aucun capteur de température n'a donné de lecture utilisable"),
    ("wifi.band and wifi.freq_mhz were not reported", "wifi.band et wifi.freq_mhz n'ont pas été fournis"),
    ("the default route's interface `{}` is not in network.interfaces", "l'interface `{}` de la route par défaut n'est pas dans network.interfaces"),
    ("the speed of {} was not reported", "la vitesse de {} n'a pas été fournie"),
    ("error counters of {} were not reported", "les compteurs d'erreurs de {} n'ont pas été fournis"),
    ("no probe was sent to the router", "aucune sonde n'a été envoyée au routeur"),
    ("the router ({}) answered none of {} {} probes, but the relay answered: the router probably ignores such probes", "le routeur ({}) n'a répondu à aucune des {} sondes {}, mais le relais a répondu : le routeur ignore sans doute ce type de sonde"),
    ("{} ({}) exceeds {} ({}): inconsistent counts", "{} ({}) dépasse {} ({}) : comptes incohérents"),
    ("no name was looked up", "aucun nom n'a été recherché"),
    ("dns.lookups durations are not usable numbers", "les durées de dns.lookups ne sont pas des nombres utilisables"),
    ("VPN interfaces are up ({}) but whether the relay path uses them was not reported", "des interfaces VPN sont actives ({}) mais leur utilisation par le chemin vers le relais n'a pas été indiquée"),
    ("no QUIC connection to the relay ({}), but {} already explain(s) a failure, so UDP blocking cannot be told apart", "aucune connexion QUIC vers le relais ({}), mais {} explique(nt) déjà un échec, donc un blocage UDP ne peut pas être distingué"),
    ("no datagram probe was sent to the relay", "aucune sonde datagramme n'a été envoyée au relais"),
    ("jitter needs at least two round trips; {} measured", "la gigue demande au moins deux allers-retours ; {} mesuré(s)"),
    ("latency under load was not measured", "le délai en charge n'a pas été mesuré"),
    ("the relay took {} ms to connect, but {} upstream may explain it", "le relais a mis {} ms à se connecter, mais {} en amont peut l'expliquer"),
    ("the relay answered none of {} probes, but {} upstream may explain it", "le relais n'a répondu à aucune des {} sondes, mais {} en amont peut l'expliquer"),
    ("the operating system's connectivity indicator gave no verdict ({})", "l'indicateur de connectivité du système n'a rien conclu ({})"),
    ("{} is not a usable number ({})", "{} n'est pas un nombre utilisable ({})"),
    ("{} is out of range ({}, expected {} to {})", "{} est hors limites ({}, attendu entre {} et {})"),
    ("{} is negative ({})", "{} est négatif ({})"),
    ("{} was not reported", "{} n'a pas été fourni"),
];

/// The French version of `reason`, or `None` when the catalogue has none.
/// Two reasons joined by `; ` (the classifier's way of giving both) are
/// translated when each is.
pub fn french(reason: &str) -> Option<String> {
    let whole = CATALOGUE.iter().find_map(|(en, fr)| {
        let values: Vec<String> = captures(en, reason)?
            .into_iter()
            .map(|value| french(value).unwrap_or_else(|| value.to_owned()))
            .collect();
        fill(fr, &values)
    });
    whole.or_else(|| {
        let (first, second) = reason.split_once("; ")?;
        Some(format!("{} ; {}", french(first)?, french(second)?))
    })
}

/// The texts `template`'s `{}` stand for in `text`, if it matches.
fn captures<'t>(template: &str, text: &'t str) -> Option<Vec<&'t str>> {
    let parts: Vec<&str> = template.split("{}").collect();
    let mut rest = text.strip_prefix(parts[0])?;
    let mut captured = Vec::new();
    for (i, part) in parts.iter().enumerate().skip(1) {
        let last = i == parts.len() - 1;
        let at = if last {
            rest.strip_suffix(part).map(str::len)?
        } else if part.is_empty() {
            return None;
        } else {
            rest.find(part)?
        };
        captured.push(&rest[..at]);
        rest = &rest[at + part.len()..];
    }
    rest.is_empty().then_some(captured)
}

/// `template` with its `{}` replaced by `values`, in order.
fn fill(template: &str, values: &[String]) -> Option<String> {
    let parts: Vec<&str> = template.split("{}").collect();
    if parts.len() != values.len() + 1 {
        return None;
    }
    let mut out = parts[0].to_owned();
    for (value, part) in values.iter().zip(&parts[1..]) {
        out.push_str(value);
        out.push_str(part);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_translated_with_their_values_kept() {
        // (English reason, French reason)
        let cases = [
            ("no default gateway", "pas de passerelle par défaut"),
            ("wifi.snr_db was not reported", "wifi.snr_db n'a pas été fourni"),
            (
                "the speed of eth0 was not reported",
                "la vitesse de eth0 n'a pas été fournie",
            ),
            (
                "the `iw` tool is not installed (Debian package iw), and /proc/net/wireless does not list wlan0",
                "l'outil `iw` n'est pas installé (paquet Debian iw), et /proc/net/wireless ne mentionne pas wlan0",
            ),
            (
                "wifi.snr_db was not reported; no temperature sensor gave a usable reading",
                "wifi.snr_db n'a pas été fourni ; aucun capteur de température n'a donné de lecture utilisable",
            ),
            (
                "path.probes_received (3) exceeds path.probes_sent (2): inconsistent counts",
                "path.probes_received (3) dépasse path.probes_sent (2) : comptes incohérents",
            ),
        ];
        for (en, fr) in cases {
            assert_eq!(french(en).as_deref(), Some(fr), "{en}");
        }
    }

    #[test]
    fn an_unknown_reason_has_no_french() {
        assert_eq!(french("Access is denied"), None);
        assert_eq!(french("no default gateway today"), None);
        assert_eq!(french("Access is denied; no default gateway"), None);
    }

    #[test]
    fn every_template_has_as_many_values_in_french_as_in_english() {
        for (en, fr) in CATALOGUE {
            assert_eq!(en.matches("{}").count(), fr.matches("{}").count(), "{en}");
            assert!(
                !en.contains("{}{}"),
                "adjacent values cannot be split: {en}"
            );
        }
    }
}
