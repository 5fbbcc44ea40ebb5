//! Device checks: processor, memory, disk I/O, free space, heat, battery.
//!
//! These look at the machine alone; nothing upstream can explain them.

use super::{fmt, number_in, percent, Confidence, Finding, Judge, Severity, Skip, Stage};
use crate::snapshot::{Device, Pressure, Probe};

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

fn device<'a>(j: &mut Judge<'a>) -> Result<&'a Device, Skip> {
    let snapshot = j.snapshot;
    j.probe("device", &snapshot.device)
}

/// The pressure figures, recording an unknown probe once.
fn pressure<'a>(j: &mut Judge<'a>, device: &'a Device) -> Result<&'a Pressure, Skip> {
    j.probe("device.pressure", &device.pressure)
}

/// Combines why two alternative measurements were both unavailable.
fn neither(a: Skip, b: Skip) -> Skip {
    match (a, b) {
        (Skip::NotApplicable, Skip::NotApplicable) => Skip::NotApplicable,
        (Skip::Unknown(a), Skip::Unknown(b)) => Skip::Unknown(format!("{a}; {b}")),
        (Skip::Unknown(reason), _) | (_, Skip::Unknown(reason)) => Skip::Unknown(reason),
        (Skip::Covered(what), _) | (_, Skip::Covered(what)) => Skip::Covered(what),
    }
}

/// CPU saturation: PSI `cpu some avg60`, or whole-machine usage.
pub(super) fn cpu(j: &mut Judge<'_>) -> Result<Vec<Finding>, Skip> {
    let t = j.thresholds;
    let device = device(j)?;
    let psi = pressure(j, device)
        .and_then(|p| percent(p.cpu_some_avg60, "device.pressure.cpu_some_avg60"));
    let usage = percent(device.cpu.usage_percent, "device.cpu.usage_percent");
    let psi_high = matches!(psi, Ok(v) if v > t.cpu_pressure_some_avg60_percent);
    let usage_high = matches!(usage, Ok(v) if v > t.cpu_usage_percent);
    if !psi_high && !usage_high {
        return match (psi, usage) {
            (Err(a), Err(b)) => Err(neither(a, b)),
            _ => Ok(vec![]),
        };
    }
    let mut finding = Finding::new("device.cpu_busy", Stage::Device, Severity::Warning)
        .title("The processor is overloaded", "Le processeur est surchargé")
        .advice(
            "Close programs you are not using (browser tabs, video, games), or restart the computer, then try again.",
            "Fermez les programmes dont vous ne vous servez pas (onglets du navigateur, vidéos, jeux) ou redémarrez l'ordinateur, puis réessayez.",
        );
    if let (true, Ok(v)) = (psi_high, &psi) {
        finding = finding.number(
            "device.pressure.cpu_some_avg60_percent",
            *v,
            format!("> {} %", fmt(t.cpu_pressure_some_avg60_percent)),
        );
    }
    if let (true, Ok(v)) = (usage_high, &usage) {
        finding = finding.number(
            "device.cpu.usage_percent",
            *v,
            format!("> {} %", fmt(t.cpu_usage_percent)),
        );
    }
    let (note_en, note_fr) = match (&psi, psi_high) {
        (_, true) => (
            "Runnable tasks waited for a CPU a large share of the last minute (PSI): audio, video and input are delayed on this machine, and its own network timings (jitter, RTT) are inflated. Check the top processes.".to_owned(),
            "Des tâches prêtes ont attendu le processeur une grande partie de la dernière minute (PSI) : le son, la vidéo et la saisie sont retardés sur cette machine, et ses propres mesures réseau (gigue, RTT) sont gonflées. Regardez les processus les plus gourmands.".to_owned(),
        ),
        (Ok(v), false) => (
            format!(
                "Whole-machine CPU usage was above the limit during one short sample, but CPU pressure (PSI some avg60) was {} %, within its {} % limit, so this is likely a burst; check the top processes.",
                fmt(*v),
                fmt(t.cpu_pressure_some_avg60_percent)
            ),
            format!(
                "L'utilisation du processeur de toute la machine a dépassé la limite pendant un court échantillon, mais la pression processeur (PSI some avg60) était de {} %, sous sa limite de {} % : c'est sans doute un pic passager ; regardez les processus les plus gourmands.",
                fmt(*v),
                fmt(t.cpu_pressure_some_avg60_percent)
            ),
        ),
        (Err(_), false) if matches!(device.pressure, Probe::NotApplicable { .. }) => {
            match device.cpu.usage_sample_ms.filter(|ms| *ms >= 1000) {
                // Windows: no pressure figures, so a longer sample.
                Some(ms) => (
                    format!(
                        "Whole-machine CPU usage averaged {} % over a {} s sample. This OS reports no pressure figures (Linux PSI averages a whole minute), so that sample is the only load measure: a load that lasted the whole sample is likely real, but run the check again to confirm it lasts; check the top processes (Task Manager).",
                        fmt(device.cpu.usage_percent.unwrap_or(0.0)),
                        fmt(ms as f64 / 1000.0)
                    ),
                    format!(
                        "L'utilisation du processeur de toute la machine était en moyenne de {} % sur un échantillon de {} s. Ce système ne fournit pas de mesure de pression (le PSI de Linux fait la moyenne sur une minute entière) : cet échantillon est la seule mesure de charge. Une charge qui a duré tout l'échantillon est sans doute réelle, mais relancez la vérification pour confirmer qu'elle dure ; regardez les processus les plus gourmands (Gestionnaire des tâches).",
                        fmt(device.cpu.usage_percent.unwrap_or(0.0)).replace('.', ","),
                        fmt(ms as f64 / 1000.0).replace('.', ",")
                    ),
                ),
                None => (
                    "Whole-machine CPU usage was above the limit during one short sample (this OS reports no pressure figures), so this may be a burst; check the top processes.".to_owned(),
                    "L'utilisation du processeur de toute la machine a dépassé la limite pendant un court échantillon (ce système ne fournit pas de mesure de pression) : c'est peut-être un pic passager ; regardez les processus les plus gourmands.".to_owned(),
                ),
            }
        }
        (Err(_), false) => (
            "Whole-machine CPU usage was above the limit during one short sample and the CPU pressure figure could not be read, so this may be a burst; check the top processes.".to_owned(),
            "L'utilisation du processeur de toute la machine a dépassé la limite pendant un court échantillon et la pression processeur n'a pas pu être lue : c'est peut-être un pic passager ; regardez les processus les plus gourmands.".to_owned(),
        ),
    };
    finding = finding.note(note_en, note_fr);
    if !psi_high {
        finding = finding.confidence(Confidence::Medium);
    }
    Ok(vec![finding])
}

/// Memory shortage: PSI `memory full avg10`, or little available with swap
/// in use.
pub(super) fn memory(j: &mut Judge<'_>) -> Result<Vec<Finding>, Skip> {
    let t = j.thresholds;
    let device = device(j)?;
    let psi = pressure(j, device)
        .and_then(|p| percent(p.memory_full_avg10, "device.pressure.memory_full_avg10"));
    let memory = &device.memory;
    let available = if memory.total_bytes == 0 {
        Err(Skip::Unknown(
            "device.memory.total_bytes is 0 (not collected)".to_owned(),
        ))
    } else if memory.available_bytes > memory.total_bytes {
        Err(Skip::Unknown(
            "device.memory.available_bytes exceeds total_bytes (inconsistent reading)".to_owned(),
        ))
    } else {
        Ok(100.0 * memory.available_bytes as f64 / memory.total_bytes as f64)
    };
    let psi_high = matches!(psi, Ok(v) if v > t.memory_pressure_full_avg10_percent);
    let short =
        matches!(available, Ok(v) if v < t.memory_available_percent) && memory.swap_used_bytes > 0;
    if !psi_high && !short {
        return match (psi, available) {
            (Err(a), Err(b)) => Err(neither(a, b)),
            _ => Ok(vec![]),
        };
    }
    let mut finding = Finding::new("device.memory_pressure", Stage::Device, Severity::Warning)
        .title("The computer is short of memory", "L'ordinateur manque de mémoire")
        .advice(
            "Close programs and browser tabs you are not using, or restart the computer.",
            "Fermez les programmes et les onglets du navigateur dont vous ne vous servez pas, ou redémarrez l'ordinateur.",
        );
    if let (true, Ok(v)) = (psi_high, &psi) {
        finding = finding.number(
            "device.pressure.memory_full_avg10_percent",
            *v,
            format!("> {} %", fmt(t.memory_pressure_full_avg10_percent)),
        );
    }
    if let (true, Ok(v)) = (short, &available) {
        finding = finding
            .number(
                "device.memory.available_percent",
                *v,
                format!("< {} %", fmt(t.memory_available_percent)),
            )
            .number(
                "device.memory.swap_used_gib",
                memory.swap_used_bytes as f64 / GIB,
                "> 0 GiB",
            );
    }
    finding = if psi_high {
        finding.note(
            "All non-idle tasks were stalled on memory a significant share of the last 10 s (PSI memory full): the machine is thrashing.",
            "Toutes les tâches actives ont été bloquées en attente de mémoire une part notable des 10 dernières secondes (PSI memory full) : la machine s'épuise à échanger avec le disque.",
        )
    } else {
        finding
            .confidence(Confidence::Medium)
            .note(
                "Little memory is available and swap is in use; the snapshot cannot tell whether swap is still growing.",
                "Il reste peu de mémoire disponible et l'espace d'échange (swap) est utilisé ; l'instantané ne permet pas de savoir si son usage augmente encore.",
            )
    };
    Ok(vec![finding])
}

/// Disk I/O stalls: PSI `io full avg60`.
pub(super) fn io(j: &mut Judge<'_>) -> Result<Vec<Finding>, Skip> {
    let t = j.thresholds;
    let device = device(j)?;
    let pressure = pressure(j, device)?;
    let value = percent(pressure.io_full_avg60, "device.pressure.io_full_avg60")?;
    if value <= t.io_pressure_full_avg60_percent {
        return Ok(vec![]);
    }
    Ok(vec![Finding::new("device.io_pressure", Stage::Device, Severity::Warning)
        .title("The disk is slowing the computer down", "Le disque ralentit l'ordinateur")
        .number(
            "device.pressure.io_full_avg60_percent",
            value,
            format!("> {} %", fmt(t.io_pressure_full_avg60_percent)),
        )
        .advice(
            "Wait for large copies, updates or backups to finish, or restart the computer.",
            "Attendez la fin des copies, mises à jour ou sauvegardes en cours, ou redémarrez l'ordinateur.",
        )
        .note(
            "All non-idle tasks were stalled on I/O a significant share of the last minute (PSI io full): look for a backup, indexer, update or a failing disk.",
            "Toutes les tâches actives ont été bloquées en attente du disque une part notable de la dernière minute (PSI io full) : cherchez une sauvegarde, une indexation, une mise à jour ou un disque défaillant.",
        )])
}

/// Free space on the system volume.
pub(super) fn disk(j: &mut Judge<'_>) -> Result<Vec<Finding>, Skip> {
    let t = j.thresholds;
    let device = device(j)?;
    let system: Vec<_> = device.disks.iter().filter(|d| d.is_system).collect();
    if system.is_empty() {
        return Err(Skip::Unknown("no system volume was reported".to_owned()));
    }
    let mut findings = Vec::new();
    let mut measured = false;
    for disk in system {
        if disk.total_bytes == 0 || disk.available_bytes > disk.total_bytes {
            continue;
        }
        measured = true;
        let free_percent = 100.0 * disk.available_bytes as f64 / disk.total_bytes as f64;
        let free_gib = disk.available_bytes as f64 / GIB;
        let full = free_gib < t.disk_full_gib;
        let low = free_percent < t.disk_free_percent && free_gib < t.disk_free_gib;
        if !full && !low {
            continue;
        }
        let mount = &disk.mount_point;
        let finding = if full {
            Finding::new("device.disk_full", Stage::Device, Severity::Critical)
                .title("The system disk is full", "Le disque système est plein")
                .number(
                    format!("device.disks[{mount}].free_gib"),
                    free_gib,
                    format!("< {} GiB", fmt(t.disk_full_gib)),
                )
        } else {
            Finding::new("device.disk_low", Stage::Device, Severity::Warning)
                .title(
                    "The system disk is almost full",
                    "Le disque système est presque plein",
                )
                .number(
                    format!("device.disks[{mount}].free_percent"),
                    free_percent,
                    format!("< {} %", fmt(t.disk_free_percent)),
                )
                .number(
                    format!("device.disks[{mount}].free_gib"),
                    free_gib,
                    format!("< {} GiB", fmt(t.disk_free_gib)),
                )
        };
        findings.push(
            finding
                .advice(
                    "Empty the recycle bin and delete or move large files you no longer need (downloads, videos). Ask IT if you are not sure what to remove.",
                    "Videz la corbeille et supprimez ou déplacez les gros fichiers dont vous n'avez plus besoin (téléchargements, vidéos). Demandez au service informatique si vous ne savez pas quoi supprimer.",
                )
                .note(
                    format!(
                        "System volume {mount} ({}) has {} GiB free of {} GiB: updates, caches and logs fail to write, and applications misbehave.",
                        disk.file_system,
                        fmt(free_gib),
                        fmt(disk.total_bytes as f64 / GIB)
                    ),
                    format!(
                        "Le volume système {mount} ({}) a {} Gio libres sur {} Gio : les mises à jour, caches et journaux ne peuvent plus s'écrire, et les applications fonctionnent mal.",
                        disk.file_system,
                        fmt(free_gib).replace('.', ","),
                        fmt(disk.total_bytes as f64 / GIB).replace('.', ",")
                    ),
                ),
        );
    }
    if !measured {
        return Err(Skip::Unknown(
            "the system volume reported no size".to_owned(),
        ));
    }
    Ok(findings)
}

/// Sensors close to their critical temperature, or simply very hot.
pub(super) fn temperature(j: &mut Judge<'_>) -> Result<Vec<Finding>, Skip> {
    let t = j.thresholds;
    let device = device(j)?;
    let sensors = j.probe("device.temperatures", &device.temperatures)?;
    let mut hot = Vec::new();
    let mut readable = false;
    for sensor in sensors {
        let Ok(celsius) = number_in(Some(sensor.celsius), "celsius", -50.0..=200.0) else {
            continue;
        };
        readable = true;
        // Sensors that report no (or a nonsensical) critical point only get
        // the absolute limit.
        let critical = sensor
            .critical_celsius
            .filter(|c| c.is_finite() && *c > 0.0 && *c <= 200.0);
        let limit = match critical {
            Some(c) => (c - t.temperature_margin_celsius).min(t.temperature_max_celsius),
            None => t.temperature_max_celsius,
        };
        if celsius > limit {
            hot.push((sensor, celsius, critical, limit));
        }
    }
    if !readable {
        return Err(Skip::Unknown(
            "no temperature sensor gave a usable reading".to_owned(),
        ));
    }
    if hot.is_empty() {
        return Ok(vec![]);
    }
    let at_critical = hot
        .iter()
        .any(|(_, celsius, critical, _)| matches!(critical, Some(c) if celsius >= c));
    let mut finding = Finding::new(
        "device.temperature_high",
        Stage::Device,
        if at_critical { Severity::Critical } else { Severity::Warning },
    )
    .title("The computer is running very hot", "L'ordinateur chauffe beaucoup")
    .advice(
        "Make sure the air vents are not blocked (do not use the laptop on a bed or sofa), close heavy programs, and let it cool down.",
        "Vérifiez que les aérations ne sont pas bouchées (évitez de poser le portable sur un lit ou un canapé), fermez les programmes lourds et laissez-le refroidir.",
    );
    let mut details = Vec::new();
    for (sensor, celsius, critical, limit) in &hot {
        let threshold = match critical {
            Some(c) => format!("> {} °C (critical {} °C)", fmt(*limit), fmt(*c)),
            None => format!("> {} °C", fmt(*limit)),
        };
        finding = finding.number(
            format!("device.temperatures[{}].celsius", sensor.label),
            *celsius,
            threshold,
        );
        details.push(sensor.label.clone());
    }
    Ok(vec![finding.note(
        format!(
            "Sensor(s) {} near or over their critical point: the firmware throttles the CPU, which slows everything including screen capture and encoding.",
            details.join(", ")
        ),
        format!(
            "Capteur(s) {} proche(s) de leur seuil critique ou au-delà : le micrologiciel bride le processeur, ce qui ralentit tout, y compris la capture et l'encodage de l'écran.",
            details.join(", ")
        ),
    )])
}

/// Battery wear (information).
pub(super) fn battery(j: &mut Judge<'_>) -> Result<Vec<Finding>, Skip> {
    let t = j.thresholds;
    let device = device(j)?;
    let battery = j.probe("device.battery", &device.battery)?;
    let health = number_in(
        battery.health_percent,
        "device.battery.health_percent",
        0.0..=200.0,
    )?;
    if health >= t.battery_health_percent {
        return Ok(vec![]);
    }
    Ok(vec![Finding::new("device.battery_worn", Stage::Device, Severity::Info)
        .title("The battery is worn", "La batterie est usée")
        .number("device.battery.health_percent", health, format!("< {} %", fmt(t.battery_health_percent)))
        .advice(
            "The battery holds less charge than when new; keep the charger plugged in for long calls and ask IT about a replacement.",
            "La batterie tient moins la charge qu'à l'état neuf ; gardez le chargeur branché pendant les longs appels et demandez au service informatique s'il faut la remplacer.",
        )
        .note(
            format!(
                "Full-charge capacity is {} % of design capacity{}.",
                fmt(health),
                battery.cycle_count.map(|c| format!(" after {c} cycles")).unwrap_or_default()
            ),
            format!(
                "La capacité à pleine charge est de {} % de la capacité d'origine{}.",
                fmt(health).replace('.', ","),
                battery.cycle_count.map(|c| format!(" après {c} cycles")).unwrap_or_default()
            ),
        )])
}
