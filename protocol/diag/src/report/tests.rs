//! Report tests: what the employee and the technician read.

use super::*;
use crate::snapshot::Probe;
use crate::testkit::*;

fn weak_wifi() -> Snapshot {
    healthy().with(|s| wifi(s).signal_dbm = Some(-78.0))
}

fn plain(snapshot: &Snapshot, lang: Lang) -> String {
    render(&judged(snapshot), snapshot, lang, Style { color: false })
}

#[test]
fn english_weak_wifi_report_puts_the_verdict_first_with_the_evidence() {
    let text = plain(&weak_wifi(), Lang::En);
    let first = text.lines().next().unwrap();
    assert_eq!(first, "Your connection problem comes from your Wi‑Fi link.");
    for expected in [
        "[warning] The Wi‑Fi signal is weak",
        "wifi.signal_dbm = -78 dBm  (limit < -75 dBm)",
        "What to do: Move closer to your Wi‑Fi router",
        "For the technician: RSSI -78 dBm",
        "What we measured",
        "Wi‑Fi",
        "-78 dBm, 5 GHz, channel 36",
        "30 ms, jitter 3 ms, 0 % loss",
        "80 Mbit/s down, 20 Mbit/s up",
        "grade A (+10 ms)",
        "200 GiB free (40 %)",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(
        !text.contains('\x1b'),
        "ANSI escapes without colour:\n{text}"
    );
    assert!(!text.contains("Could not measure"), "{text}");
}

#[test]
fn french_weak_wifi_report_is_in_french() {
    let text = plain(&weak_wifi(), Lang::Fr);
    let first = text.lines().next().unwrap();
    assert_eq!(
        first,
        "Votre problème de connexion vient de votre liaison Wi‑Fi."
    );
    for expected in [
        "1 problème détecté.",
        "[attention] Le signal Wi‑Fi est faible (réseau domestique, certitude élevée)",
        "wifi.signal_dbm = -78 dBm  (seuil < -75 dBm)",
        "Que faire\u{a0}: Rapprochez-vous de votre box",
        "Ce que nous avons mesuré",
        "-78 dBm, 5 GHz, canal 36",
        "80 Mbit/s en réception, 20 Mbit/s en envoi",
        "200 Gio libres (40 %)",
        "décalage de 0,12 s",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(!text.contains('\x1b'));
    assert!(
        !text.contains("What to do"),
        "English left in the French report:\n{text}"
    );
}

#[test]
fn french_numbers_use_a_decimal_comma() {
    let snapshot = healthy().with(|s| {
        gateway(s).rtt.as_mut().unwrap().median_ms = 2.5;
        download(s).mbps = 1.25;
    });
    let text = plain(&snapshot, Lang::Fr);
    assert!(text.contains("2,5 ms"), "{text}");
    assert!(text.contains("(seuil < 1,5 Mbit/s)"), "{text}");
    assert!(plain(&snapshot, Lang::En).contains("(limit < 1.5 Mbit/s)"));
}

#[test]
fn a_healthy_report_says_so() {
    assert_eq!(
        plain(&healthy(), Lang::En).lines().next(),
        Some("No problem found.")
    );
    assert_eq!(
        plain(&healthy(), Lang::Fr).lines().next(),
        Some("Aucun problème détecté.")
    );
    assert!(!plain(&healthy(), Lang::En).contains("What we found"));
}

#[test]
fn the_verdict_line_names_each_segment() {
    // (edit, English verdict line, French verdict line)
    type Case = (fn(&mut Snapshot), &'static str, &'static str);
    let cases: Vec<Case> = vec![
        (
            |s| system_disk(s).available_bytes = GIB / 2,
            "The problem comes from this computer itself.",
            "Le problème vient de l'ordinateur lui-même.",
        ),
        (
            |s| gateway(s).received = 150,
            "Your connection problem comes from your home network (your internet box or router).",
            "Votre problème de connexion vient de votre réseau domestique (votre box internet ou routeur).",
        ),
        (
            |s| clock(s).offset_ms = 120_000,
            "The problem comes from this computer's network settings.",
            "Le problème vient des réglages réseau de l'ordinateur.",
        ),
        (
            |s| path(s).probes_received = 180,
            "Your connection problem comes from your internet provider.",
            "Votre problème de connexion vient de votre fournisseur d'accès à internet.",
        ),
        (
            |s| {
                s.wifi = Probe::unknown("needs Location permission");
                path(s).probes_received = 180;
            },
            "Your connection problem probably comes from your internet provider.",
            "Votre problème de connexion vient probablement de votre fournisseur d'accès à internet.",
        ),
        (
            |s| path(s).connect_ms = Some(5000.0),
            "The problem comes from our support service, not from your side.",
            "Le problème vient de notre service d'assistance, pas de chez vous.",
        ),
        (
            |s| {
                let path = path(s);
                path.udp_ok = false;
                path.probes_sent = 0;
                s.gateway = Probe::unknown("ICMP not permitted");
                s.dns = Probe::not_applicable("relay configured by address");
            },
            "We found a problem but could not tell where it comes from.",
            "Nous avons trouvé un problème, sans pouvoir dire d'où il vient.",
        ),
    ];
    for (edit, en, fr) in cases {
        let snapshot = healthy().with(edit);
        assert_eq!(plain(&snapshot, Lang::En).lines().next(), Some(en));
        assert_eq!(plain(&snapshot, Lang::Fr).lines().next(), Some(fr));
    }
}

#[test]
fn doubted_findings_say_what_may_cause_them() {
    let snapshot = weak_wifi().with(|s| path(s).probes_received = 190);
    let text = plain(&snapshot, Lang::En);
    assert!(
        text.contains("May be caused by: The Wi‑Fi signal is weak"),
        "{text}"
    );
    let text = plain(&snapshot, Lang::Fr);
    assert!(
        text.contains("Peut venir de\u{a0}: Le signal Wi‑Fi est faible"),
        "{text}"
    );
}

#[test]
fn what_could_not_be_measured_is_listed_with_its_reason() {
    let snapshot = healthy().with(|s| {
        s.wifi = Probe::unknown("Access is denied (needs Location permission)");
        s.gateway = Probe::unknown("ICMP not permitted (net.ipv4.ping_group_range)");
    });
    let text = plain(&snapshot, Lang::En);
    assert!(text.contains("Could not measure"), "{text}");
    assert!(
        text.contains("- Wi‑Fi link [wifi]: Access is denied (needs Location permission)"),
        "{text}"
    );
    assert!(
        text.contains("- home router [gateway]: ICMP not permitted"),
        "{text}"
    );
    assert!(text.contains("Some checks could not be run"), "{text}");
    let text = plain(&snapshot, Lang::Fr);
    assert!(text.contains("Impossible à mesurer"), "{text}");
    assert!(
        text.contains(
            "- liaison Wi‑Fi [wifi]\u{a0}: Access is denied (needs Location permission) (*)"
        ),
        "{text}"
    );
    assert_eq!(
        text.matches("raison laissée en anglais").count(),
        1,
        "{text}"
    );
    assert!(text.contains("Box (routeur)"), "{text}");
}

#[test]
fn ethernet_is_shown_as_the_link() {
    let snapshot = healthy().with(on_ethernet);
    assert!(plain(&snapshot, Lang::En).contains("Ethernet, 1000 Mbit/s"));
    assert!(plain(&snapshot, Lang::Fr).contains("Liaison"));
}

#[test]
fn colour_only_when_asked() {
    let snapshot = weak_wifi();
    let verdict = judged(&snapshot);
    let coloured = render(&verdict, &snapshot, Lang::En, Style { color: true });
    assert!(
        coloured.starts_with("\x1b[1m\x1b[33mYour connection problem"),
        "{coloured}"
    );
    assert!(coloured.contains(RESET));
    let plain = render(&verdict, &snapshot, Lang::En, Style { color: false });
    assert!(!plain.contains('\x1b'));
}

#[test]
fn the_locale_picks_the_language() {
    // (LC_ALL, LC_MESSAGES, LANG, expected)
    let cases = [
        (None, None, Some("fr_FR.UTF-8"), Lang::Fr),
        (None, None, Some("fr_CA"), Lang::Fr),
        (None, None, Some("FR"), Lang::Fr),
        (None, None, Some("C"), Lang::En),
        (None, None, Some("POSIX"), Lang::En),
        (None, None, Some("en_GB.UTF-8"), Lang::En),
        (None, None, Some("de_DE.UTF-8"), Lang::En),
        (None, None, None, Lang::En),
        (Some("C"), None, Some("fr_FR.UTF-8"), Lang::En),
        (Some("fr_BE.UTF-8"), None, Some("en_US.UTF-8"), Lang::Fr),
        (None, Some("fr_FR.UTF-8"), Some("en_US.UTF-8"), Lang::Fr),
        (Some(""), None, Some("fr_FR.UTF-8"), Lang::Fr),
        (Some("en_US.UTF-8"), Some("fr_FR.UTF-8"), None, Lang::En),
        (None, None, Some("f"), Lang::En),
        (None, None, Some("français"), Lang::Fr),
    ];
    for (lc_all, lc_messages, lang, expected) in cases {
        assert_eq!(
            lang_from_locale(lc_all, lc_messages, lang),
            expected,
            "LC_ALL={lc_all:?} LC_MESSAGES={lc_messages:?} LANG={lang:?}"
        );
    }
}

#[test]
fn numbers_are_rounded_for_people() {
    let en = Renderer {
        lang: Lang::En,
        style: Style::default(),
    };
    let fr = Renderer {
        lang: Lang::Fr,
        style: Style::default(),
    };
    // (value, English, French)
    let cases = [
        (-78.0, "-78", "-78"),
        (2.14159, "2.14", "2,14"),
        (35.46, "35.5", "35,5"),
        (1234.6, "1235", "1235"),
        (0.0, "0", "0"),
        (-0.001, "0", "0"),
        (f64::NAN, "?", "?"),
    ];
    for (value, english, french) in cases {
        assert_eq!(en.num(value), english, "{value}");
        assert_eq!(fr.num(value), french, "{value}");
    }
    assert_eq!(
        fr.localise("wifi.signal_dbm < -75.5 dBm"),
        "wifi.signal_dbm < -75,5 dBm"
    );
}

#[test]
fn the_flag_wins_over_the_locale() {
    let french = |name: &str| (name == "LANG").then(|| "fr_FR.UTF-8".to_owned());
    assert_eq!(lang_for(None, french), Lang::Fr);
    assert_eq!(lang_for(Some("en"), french), Lang::En);
    assert_eq!(lang_for(Some("fr"), |_| None), Lang::Fr);
    assert_eq!(lang_for(None, |_| None), Lang::En);
}

fn summary(snapshot: &Snapshot, lang: Lang) -> String {
    render_summary(&judged(snapshot), snapshot, lang, Style { color: false })
}

/// Wi‑Fi bad in every way at once, with loss and jitter downstream: the
/// full report lists many findings, several with the same advice.
fn terrible_wifi() -> Snapshot {
    healthy().with(|s| {
        let w = wifi(s);
        w.signal_dbm = Some(-84.0);
        w.noise_dbm = Some(-80.0);
        w.snr_db = Some(4.0);
        w.tx_retries_percent = Some(40.0);
        w.channel_busy_percent = Some(85.0);
        let p = path(s);
        p.probes_received = 150;
        if let Some(rtt) = &mut p.idle_rtt {
            rtt.jitter_ms = 80.0;
            rtt.median_ms = 400.0;
        }
    })
}

#[test]
fn the_short_report_has_the_verdict_and_at_most_three_distinct_actions_in_plain_words() {
    let snapshot = terrible_wifi();
    let verdict = judged(&snapshot);
    assert!(verdict.problems().count() > 3, "{verdict:#?}");
    for lang in [Lang::En, Lang::Fr] {
        let full = plain(&snapshot, lang);
        let text = summary(&snapshot, lang);
        assert_eq!(text.lines().next(), full.lines().next(), "{text}");
        let actions: Vec<&str> = text
            .lines()
            .filter(|l| {
                l.starts_with("  ")
                    && l.trim_start()
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_digit())
            })
            .collect();
        assert!(
            !actions.is_empty() && actions.len() <= MAX_ACTIONS,
            "{text}"
        );
        let mut distinct: Vec<&str> = actions.iter().map(|a| &a[5..]).collect();
        distinct.dedup();
        assert_eq!(distinct.len(), actions.len(), "repeated advice:\n{text}");
        for technical in [
            "wifi.",
            "path.",
            "dBm",
            "seuil",
            "limit",
            "technician",
            "technicien",
            "[",
            "Could not measure",
            "Impossible à mesurer",
        ] {
            assert!(
                !text.contains(technical),
                "{technical:?} in the short report:\n{text}"
            );
        }
    }
}

#[test]
fn a_speed_test_that_was_not_run_is_said_plainly_and_the_verdict_does_not_claim_a_clean_bill() {
    use crate::snapshot::SpeedTestRefusal;
    let snapshot = healthy().with(|s| {
        let p = path(s);
        p.download = Probe::unknown("the speed test was not run");
        p.upload = Probe::unknown("the speed test was not run");
        p.speed_test_refused = Some(SpeedTestRefusal::BudgetSpent {
            retry_after_s: 1500,
        });
    });
    let text = summary(&snapshot, Lang::En);
    assert!(!text.starts_with("No problem found.\n"), "{text}");
    assert!(
        text.contains("No problem found in what could be checked."),
        "{text}"
    );
    assert!(
        text.contains("The speed test was not run: this computer has used up its speed tests for this hour. It can run again in 25 minutes."),
        "{text}"
    );
    let busy = snapshot
        .with(|s| path(s).speed_test_refused = Some(SpeedTestRefusal::Busy { retry_after_s: 15 }));
    let text = summary(&busy, Lang::Fr);
    assert!(
        text.contains("Le test de débit n'a pas été fait\u{a0}: un autre test de cet ordinateur était en cours."),
        "{text}"
    );
}

/// Every English sentence of the reports' catalogue: the English side of
/// each rule label, finding title and advice the classifier can produce
/// on the test snapshots, and the fixed report phrases.
fn english_catalogue() -> Vec<String> {
    let mut sentences: Vec<String> = Vec::new();
    for snapshot in [healthy(), weak_wifi(), terrible_wifi()] {
        let verdict = judged(&snapshot);
        for finding in &verdict.findings {
            sentences.push(finding.title.en.clone());
            sentences.push(finding.advice.en.clone());
        }
    }
    for phrase in [
        "No problem found",
        "What you can do",
        "What we found",
        "What to do",
        "What we measured",
        "comes from",
        "The speed test was not run",
        "Some checks could not be run",
    ] {
        sentences.push(phrase.to_owned());
    }
    sentences.retain(|s| !s.is_empty());
    sentences
}

#[test]
fn the_french_short_report_has_no_english_sentence_and_french_typography() {
    let catalogue = english_catalogue();
    for snapshot in [healthy(), weak_wifi(), terrible_wifi()] {
        let text = summary(&snapshot, Lang::Fr);
        for sentence in &catalogue {
            assert!(
                !text.contains(sentence.as_str()),
                "English {sentence:?} in:\n{text}"
            );
        }
        let chars: Vec<char> = text.chars().collect();
        for (i, c) in chars.iter().enumerate() {
            if matches!(c, ':' | ';' | '?' | '!') && i > 0 {
                assert!(
                    matches!(chars[i - 1], '\u{a0}' | '\u{202f}'),
                    "{c:?} without a no-break space before it in:\n{text}"
                );
            }
        }
    }
}

/// Snapshots whose reports carry technician notes and reasons the agent
/// writes.
fn detailed_snapshots() -> Vec<Snapshot> {
    vec![
        healthy(),
        weak_wifi(),
        terrible_wifi(),
        healthy().with(|s| {
            s.wifi = Probe::unknown(
                "the `iw` tool is not installed (Debian package iw), and /proc/net/wireless is not readable",
            );
            s.gateway = Probe::unknown("no default gateway");
            device(s).pressure =
                Probe::unknown("/proc/pressure is not available (kernel without PSI, or psi=0)");
            device(s).cpu.usage_percent = Some(99.0);
            let p = path(s);
            p.probes_received = 150;
            p.download = Probe::unknown("no data moved during the transfer");
            p.upload = Probe::unknown("upload interrupted: connection lost");
        }),
    ]
}

#[test]
fn the_french_detailed_report_has_no_english_note_or_reason() {
    let mut english = english_catalogue();
    for snapshot in detailed_snapshots() {
        let verdict = judged(&snapshot);
        for finding in &verdict.findings {
            // Whole clauses of the note; values (addresses, ids) are shared.
            english.extend(
                finding
                    .technician_note
                    .en
                    .split([':', ';', '.', '(', ')'])
                    .map(str::trim)
                    .filter(|clause| clause.split(' ').count() >= 4)
                    .map(str::to_owned),
            );
        }
        english.extend(verdict.unknowns.iter().map(|u| u.reason.clone()));
    }
    for snapshot in detailed_snapshots() {
        let text = plain(&snapshot, Lang::Fr);
        assert!(!text.contains("note en anglais"), "{text}");
        assert!(!text.contains("raison laissée en anglais"), "{text}");
        for sentence in &english {
            assert!(
                !text.contains(sentence.as_str()),
                "English {sentence:?} in:\n{text}"
            );
        }
        for sign in [" :", " ;", " ?", " !", "]:"] {
            assert!(!text.contains(sign), "{sign:?} in:\n{text}");
        }
    }
}
