//! Two relays appending to one audit log at the same time (issue 14):
//! two real `deskside-relay` processes share one PostgreSQL database, and
//! consoles on both create and revoke technician tokens for a minute, each
//! token revoked by a console on each relay at the same moment. Then the
//! chain verifies (`deskside-relay audit verify --store`), its ids run from
//! 1 without a gap, every change a console was told succeeded is in it
//! once, and each token's revocation is recorded once although both
//! relays were asked (the store's write lock makes the second a no-op).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use deskside_console::client::Client;
use deskside_protocol::console::{ConsoleRequest, ConsoleResponse};
use deskside_protocol::{Role, TechnicianId};
use deskside_tests::cluster::Cluster;
use deskside_tests::World;

/// How long both relays take changes (`DESKSIDE_CLUSTER_AUDIT_SECS`
/// overrides; the issue asks for a minute).
fn load_time() -> Duration {
    let secs = std::env::var("DESKSIDE_CLUSTER_AUDIT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    Duration::from_secs(secs)
}

/// Console pairs (one connection on each relay) driving changes at once.
const PAIRS: usize = 3;

/// What one console was told succeeded.
#[derive(Debug, Default)]
struct Outcome {
    /// Token ids whose creation relay `.0` confirmed.
    created: Vec<(usize, u64)>,
    /// Revocations confirmed: (relay, token id).
    revoked: Vec<(usize, u64)>,
    /// Failures, in words.
    errors: Vec<String>,
}

/// One pair: creates a token alternately through relay A and relay B, then
/// revokes it through both at once, until `until`.
async fn drive_pair(
    pair: usize,
    consoles: [(String, String); 2],
    token: [String; 2],
    until: Instant,
) -> Outcome {
    let mut outcome = Outcome::default();
    let mut clients = Vec::new();
    for (index, (addr, fingerprint)) in consoles.iter().enumerate() {
        let fingerprint = fingerprint.parse().expect("fingerprint");
        match Client::connect(addr, fingerprint, &token[index]).await {
            Ok(client) => clients.push(client),
            Err(e) => {
                outcome
                    .errors
                    .push(format!("pair {pair}: cannot connect to relay {index}: {e}"));
                return outcome;
            }
        }
    }
    let mut b = clients.pop().expect("client b");
    let mut a = clients.pop().expect("client a");
    let mut n = 0_usize;
    while Instant::now() < until {
        let creator = n % 2;
        let create = ConsoleRequest::CreateTechnicianToken {
            name: format!("load-{pair}-{n}"),
            role: Role::Viewer,
            expires_in_secs: Some(3600),
        };
        let answer = if creator == 0 {
            a.request(create).await
        } else {
            b.request(create).await
        };
        let id = match answer {
            Ok(ConsoleResponse::TechnicianToken(issued)) => issued.info.id,
            other => {
                outcome.errors.push(format!(
                    "pair {pair}: create #{n} through relay {creator}: {other:?}"
                ));
                break;
            }
        };
        outcome.created.push((creator, id.0));
        let (on_a, on_b) = tokio::join!(
            a.request(ConsoleRequest::RevokeTechnicianToken { id }),
            b.request(ConsoleRequest::RevokeTechnicianToken { id })
        );
        for (relay, answer) in [(0, on_a), (1, on_b)] {
            match answer {
                Ok(ConsoleResponse::TechnicianTokenRevoked(info)) if info.id == id => {
                    outcome.revoked.push((relay, id.0));
                }
                other => outcome.errors.push(format!(
                    "pair {pair}: revoke of token {} through relay {relay}: {other:?}",
                    TechnicianId(id.0)
                )),
            }
        }
        n += 1;
    }
    a.close().await;
    b.close().await;
    outcome
}

#[test]
fn two_relays_appending_at_once_keep_one_gapless_verified_chain() {
    let test_started = Instant::now();
    let mut world = World::new();
    let Some(cluster) = Cluster::start(&mut world, "cluster_audit", 2, &[]) else {
        return;
    };
    let admin = cluster.admin_console(&world, 0, "admin");
    // One admin token per relay's consoles, so each audit row's actor says
    // which relay's consoles made the change.
    let loader = |name: &str| {
        admin.create_token(name, "admin")["token"]
            .as_str()
            .expect("token")
            .to_owned()
    };
    let tokens = [loader("loader-a"), loader("loader-b")];
    let consoles = [0, 1].map(|i| {
        let relay = cluster.relay(i);
        (relay.addr.clone(), relay.fingerprint.clone())
    });

    let load = load_time();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    let until = started + load;
    let outcomes = runtime.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for pair in 0..PAIRS {
            tasks.spawn(drive_pair(pair, consoles.clone(), tokens.clone(), until));
        }
        let mut outcomes = Vec::new();
        while let Some(outcome) = tasks.join_next().await {
            outcomes.push(outcome.expect("pair task"));
        }
        outcomes
    });
    let loaded_for = started.elapsed();
    drop(runtime);

    let errors: Vec<&String> = outcomes.iter().flat_map(|o| &o.errors).collect();
    assert!(
        errors.is_empty(),
        "{} requests failed while both relays wrote, e.g.: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    let created: Vec<(usize, u64)> = outcomes.iter().flat_map(|o| o.created.clone()).collect();
    let revoked: Vec<(usize, u64)> = outcomes.iter().flat_map(|o| o.revoked.clone()).collect();
    for relay in 0..2 {
        let made = created.iter().filter(|(r, _)| *r == relay).count();
        // Thousands in a normal run; a handful proves the test ran at all.
        assert!(
            made >= 10,
            "relay {relay} confirmed only {made} token creations in {loaded_for:?}"
        );
    }

    // The chain, checked by the relay's own command against the shared store.
    let (run, report) = cluster.audit_verify();
    let report = report.unwrap_or_else(|| {
        panic!(
            "audit verify printed no JSON (exit {}): {}{}",
            run.code, run.stdout, run.stderr
        )
    });
    assert_eq!(
        (run.code, report["ok"].as_bool()),
        (0, Some(true)),
        "the chain written by two relays does not verify: {report}"
    );

    // Every row, oldest first: ids 1..=N without a gap.
    let store = cluster.store();
    let mut rows = store.audit_entries(None, usize::MAX).expect("audit rows");
    rows.reverse();
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let expected: Vec<i64> = (1..=i64::try_from(rows.len()).expect("count")).collect();
    assert!(ids == expected, "audit ids are not 1..={}", rows.len());
    assert_eq!(
        report["rows"].as_u64(),
        Some(rows.len() as u64),
        "audit verify counted another number of rows than the table holds"
    );

    // Every confirmed creation is there once, written by the relay whose
    // console was told so; every token's revocation is there exactly once.
    let actor_of = |relay: usize| if relay == 0 { "loader-a" } else { "loader-b" };
    let mut creations: HashMap<String, Vec<&str>> = HashMap::new();
    let mut revocations: HashMap<String, usize> = HashMap::new();
    for row in &rows {
        match row.action.as_str() {
            "token.create" => creations
                .entry(row.target.clone())
                .or_default()
                .push(&row.actor),
            "token.revoke" => *revocations.entry(row.target.clone()).or_default() += 1,
            _ => {}
        }
    }
    for (relay, id) in &created {
        let target = format!("token:{id}");
        let actors = creations.get(&target).cloned().unwrap_or_default();
        assert!(
            actors.len() == 1 && actors[0].contains(actor_of(*relay)),
            "token {id}, created through relay {relay}, has {} creation rows (actors {actors:?})",
            actors.len()
        );
    }
    let not_once: Vec<(u64, usize)> = created
        .iter()
        .map(|(_, id)| {
            let count = revocations.get(&format!("token:{id}")).copied();
            (*id, count.unwrap_or(0))
        })
        .filter(|(_, count)| *count != 1)
        .collect();
    assert!(
        not_once.is_empty(),
        "{} of {} tokens, each revoked through both relays at once, do not have exactly one revocation row (token id, rows): {:?}",
        not_once.len(),
        created.len(),
        &not_once[..not_once.len().min(10)]
    );
    assert_eq!(
        revoked.len(),
        2 * created.len(),
        "each token's revocation is confirmed to both consoles"
    );

    // Which relay's console wrote each revocation (the race's winner).
    let won_by_a = rows
        .iter()
        .filter(|r| r.action == "token.revoke" && r.actor.contains("loader-a"))
        .count();
    eprintln!(
        "cluster_audit: {} tokens created ({} through relay a), {} revocations confirmed, {} audit rows, revocation races won by relay a: {won_by_a}, {:.1} s of load, {:.1} s in all",
        created.len(),
        created.iter().filter(|(r, _)| *r == 0).count(),
        revoked.len(),
        rows.len(),
        loaded_for.as_secs_f64(),
        test_started.elapsed().as_secs_f64()
    );
}
