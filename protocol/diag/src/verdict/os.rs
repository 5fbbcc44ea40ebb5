//! The operating system's own connectivity verdict against ours.
//!
//! Windows shows "No Internet" in the taskbar when its Network Connectivity
//! Status Indicator (NCSI) fails to fetch a file from a Microsoft web server
//! and to resolve a Microsoft name. A proxy that wants authentication, a
//! firewall or a VPN client that blocks those probes, or a policy that turns
//! active probing off, make it say so while the internet works, and
//! programs that trust it (Outlook, OneDrive, the Store) then act offline:
//! a classic helpdesk call. When the relay answered over QUIC, the internet
//! demonstrably works, and the finding says the icon is wrong.

use super::{Finding, Judge, Severity, Skip, Stage};
use crate::snapshot::ConnectivityLevel;

/// Windows says "no internet" while the relay answered.
pub(super) fn indicator(j: &mut Judge<'_>) -> Result<Vec<Finding>, Skip> {
    let snapshot = j.snapshot;
    // Absent: an OS without such an indicator, or an older agent.
    let Some(probe) = &snapshot.os_connectivity else {
        return Err(Skip::NotApplicable);
    };
    let os = j.probe("os_connectivity", probe)?;
    if matches!(
        os.level,
        ConnectivityLevel::Unknown | ConnectivityLevel::Hidden
    ) {
        return Err(Skip::Unknown(format!(
            "the operating system's connectivity indicator gave no verdict ({})",
            os.level.as_str()
        )));
    }
    if !os.says_no_internet() {
        return Ok(vec![]);
    }
    let path = j.probe("path", &snapshot.path)?;
    if !path.udp_ok {
        // Windows and we agree that the internet is not reachable; the
        // path rules say why.
        return Ok(vec![]);
    }
    let level = os.level.as_str();
    let (what_en, what_fr) = match os.level {
        ConnectivityLevel::ConstrainedInternetAccess => (
            "limited access (a sign-in page, or captive portal)",
            "un accès limité (page de connexion, ou portail captif)",
        ),
        ConnectivityLevel::None => ("no network", "aucun réseau"),
        _ => ("local network only", "réseau local seulement"),
    };
    Ok(vec![Finding::new(
        "config.os_no_internet_false",
        Stage::Configuration,
        Severity::Warning,
    )
    .title(
        "Windows says “No Internet”, but the internet works",
        "Windows indique « Pas d'Internet », mais Internet fonctionne",
    )
    .text(
        "os_connectivity.level",
        level,
        "none, local_access or constrained_internet_access",
    )
    .flag("path.udp_ok", true, "")
    .advice(
        "Your internet connection works: the “No Internet” sign in the taskbar is wrong. If Outlook, OneDrive or another app says it is offline, restart the computer; if the sign stays, tell IT, who can fix the setting that causes it.",
        "Votre connexion Internet fonctionne : le symbole « Pas d'Internet » de la barre des tâches est faux. Si Outlook, OneDrive ou une autre application se dit hors ligne, redémarrez l'ordinateur ; si le symbole reste, prévenez le service informatique, qui peut corriger le réglage en cause.",
    )
    .note(
        format!(
            "Windows' connectivity indicator (NCSI, GetNetworkConnectivityHint) reports {what_en} ({level}) while a QUIC connection to the relay succeeded. NCSI fetches http://www.msftconnecttest.com/connecttest.txt and resolves dns.msftncsi.com: check for a proxy that needs authentication or is not applied to the system, a firewall or VPN client that blocks those probes, and the policy HKLM\\SOFTWARE\\Policies\\Microsoft\\Windows\\NetworkConnectivityStatusIndicator (NoActiveProbe, or custom probe hosts). Applications that follow Network List Manager (Outlook, OneDrive, the Store) act offline while it lasts."
        ),
        format!(
            "L'indicateur de connectivité de Windows (NCSI, GetNetworkConnectivityHint) signale {what_fr} ({level}) alors qu'une connexion QUIC vers le relais a réussi. NCSI télécharge http://www.msftconnecttest.com/connecttest.txt et résout dns.msftncsi.com : cherchez un proxy qui demande une authentification ou ne s'applique pas au système, un pare-feu ou un client VPN qui bloque ces sondes, et la stratégie HKLM\\SOFTWARE\\Policies\\Microsoft\\Windows\\NetworkConnectivityStatusIndicator (NoActiveProbe, ou des hôtes de sonde personnalisés). Les applications qui suivent le Network List Manager (Outlook, OneDrive, le Store) se comportent comme hors ligne tant que cela dure."
        ),
    )])
}

#[cfg(test)]
mod tests {
    use crate::snapshot::{ConnectivityLevel, Probe, Snapshot};
    use crate::testkit::*;
    use crate::verdict::{Confidence, Segment, Severity};

    const FINDING: &str = "config.os_no_internet_false";

    fn with_ncsi(level: ConnectivityLevel) -> Snapshot {
        let mut snapshot = healthy();
        snapshot.os_connectivity = Some(Probe::Measured(ncsi(level)));
        snapshot
    }

    #[test]
    fn windows_saying_no_internet_while_the_relay_answers_is_a_configuration_warning() {
        for level in [
            ConnectivityLevel::LocalAccess,
            ConnectivityLevel::None,
            ConnectivityLevel::ConstrainedInternetAccess,
        ] {
            let verdict = judged(&with_ncsi(level));
            let finding = verdict.finding(FINDING).expect("the false icon is flagged");
            assert_eq!(finding.segment, Segment::Configuration);
            assert_eq!(finding.severity, Severity::Warning);
            assert_eq!(finding.confidence, Confidence::High);
            assert_eq!(verdict.primary, Some(Segment::Configuration));
            assert!(finding.technician_note.en.contains(level.as_str()));
            assert!(!finding.advice.fr.is_empty() && !finding.title.fr.is_empty());
        }
    }

    #[test]
    fn windows_agreeing_with_us_gives_no_finding() {
        // Windows says internet, and the relay answers.
        let verdict = judged(&with_ncsi(ConnectivityLevel::InternetAccess));
        assert_eq!(verdict.findings, vec![]);
        assert!(verdict.ok_checks.iter().any(|c| c == "os.connectivity"));
        // Windows says no internet, and the relay does not answer either:
        // the path rules explain it; the icon is right.
        let mut offline = with_ncsi(ConnectivityLevel::LocalAccess);
        path(&mut offline).udp_ok = false;
        let verdict = judged(&offline);
        assert!(verdict.finding(FINDING).is_none());
    }

    #[test]
    fn no_verdict_from_windows_is_unknown_never_a_fault() {
        // Wine, or a Windows older than 10 2004: the agent says why.
        let mut snapshot = healthy();
        snapshot.os_connectivity = Some(Probe::unknown(
            "GetNetworkConnectivityHint is not available (Windows 10 version 2004 or later has it)",
        ));
        let verdict = judged(&snapshot);
        assert_eq!(verdict.findings, vec![]);
        assert_eq!(verdict.primary, None);
        let unknown = verdict
            .unknowns
            .iter()
            .find(|u| u.what == "os_connectivity")
            .expect("listed as unknown");
        assert!(unknown.reason.contains("GetNetworkConnectivityHint"));
        // Windows has not decided yet.
        let verdict = judged(&with_ncsi(ConnectivityLevel::Unknown));
        assert_eq!(verdict.findings, vec![]);
        assert!(verdict.unknowns.iter().any(|u| u.what == "os.connectivity"));
    }

    #[test]
    fn the_report_shows_windows_verdict_beside_ours() {
        use crate::report::{render, Lang, Style};
        let mut snapshot = with_ncsi(ConnectivityLevel::LocalAccess);
        if let Some(Probe::Measured(os)) = &mut snapshot.os_connectivity {
            os.cost = crate::snapshot::ConnectionCost::Fixed;
        }
        let verdict = judged(&snapshot);
        let english = render(&verdict, &snapshot, Lang::En, Style { color: false });
        assert!(
            english.contains("Windows says")
                && english.contains("no internet (local network only), metered connection"),
            "{english}"
        );
        assert!(
            english.contains("Windows says “No Internet”, but the internet works"),
            "{english}"
        );
        let french = render(&verdict, &snapshot, Lang::Fr, Style { color: false });
        assert!(french.contains("Selon Windows"), "{french}");
        assert!(
            french.contains("pas d'Internet (réseau local seulement)"),
            "{french}"
        );
        // Without Windows' verdict (Linux, Wine), no such line.
        let linux = render(
            &judged(&healthy()),
            &healthy(),
            Lang::En,
            Style { color: false },
        );
        assert!(!linux.contains("Windows says"), "{linux}");
    }

    #[test]
    fn snapshots_without_the_indicator_are_judged_as_before() {
        let verdict = judged(&healthy());
        assert!(!verdict.ok_checks.iter().any(|c| c == "os.connectivity"));
        assert!(!verdict.unknowns.iter().any(|u| u.what.starts_with("os")));
    }
}
