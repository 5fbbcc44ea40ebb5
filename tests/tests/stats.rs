//! `deskside stats` end to end: help requests sent by a real agent
//! (`deskside-agent help`), worked by a technician, counted by the real
//! relay and printed by the real console.

use deskside_tests::World;
use serde_json::Value;

/// The `--json` records of `stats` of one type.
fn of_type<'a>(records: &'a [Value], kind: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["type"] == kind).collect()
}

#[test]
fn stats_count_the_requests_of_the_window_and_time_their_resolution() {
    let mut world = World::new();
    let setup = world.enrolled_laptop();

    // Two requests from the same device: one with the quick check's
    // verdict, one without diagnostics.
    let mut numbers = Vec::new();
    for extra in [&[][..], &["--no-diagnostics"][..]] {
        let sent = setup.agent.ask_help("video calls freeze", "blocked", extra);
        assert_eq!(sent["status"], "sent", "{sent}");
        numbers.push(sent["number"].as_u64().expect("a number").to_string());
    }
    let first = &numbers[0];
    for args in [
        &["requests", "claim", first][..],
        &["requests", "reply", first, "Restart the router, please."][..],
        &["requests", "resolve", first, "--note", "router restarted"][..],
    ] {
        setup.admin.run(args).ok();
    }
    // The category the relay must count the first request in: the
    // segment its verdict line names, or no_problem.
    let listed = setup.admin.requests();
    let line = listed
        .iter()
        .find(|r| r["number"].as_u64().map(|n| n.to_string()).as_ref() == Some(first))
        .and_then(|r| r["verdict"].as_str())
        .expect("the first request has a verdict line")
        .to_owned();
    let expected_category = match line.split_once(": ") {
        Some((segment, _)) => segment.to_owned(),
        None => "no_problem".to_owned(),
    };

    let records = setup.admin.run(&["stats", "--json"]).ok().json_lines();
    let summary = of_type(&records, "summary");
    assert_eq!(summary.len(), 1, "{records:?}");
    let summary = summary[0];
    assert_eq!(summary["requests"], 2, "{summary}");
    assert_eq!(summary["first_response_count"], 1, "{summary}");
    assert_eq!(summary["resolution_count"], 1, "{summary}");
    assert!(
        summary["resolution_median_secs"].is_u64(),
        "the resolved request has a time to resolution: {summary}"
    );
    assert!(summary["first_response_median_secs"].is_u64(), "{summary}");
    // Claimed before resolved: the first response comes no later.
    assert!(
        summary["first_response_median_secs"].as_u64()
            <= summary["resolution_median_secs"].as_u64(),
        "{summary}"
    );

    let categories = of_type(&records, "category");
    let count = |name: &str| {
        categories
            .iter()
            .find(|c| c["category"] == name)
            .map(|c| (c["requests"].as_u64(), c["resolved"].as_u64()))
    };
    assert_eq!(
        count("no_diagnostics"),
        Some((Some(1), Some(0))),
        "{records:?}"
    );
    assert_eq!(
        count(&expected_category),
        Some((Some(1), Some(1))),
        "verdict line {line:?}: {records:?}"
    );
    let all: u64 = categories
        .iter()
        .filter_map(|c| c["requests"].as_u64())
        .sum();
    assert_eq!(all, 2, "{records:?}");
    for name in ["device", "configuration", "home_network", "isp", "service"] {
        assert!(
            count(name).is_some(),
            "{name} is always listed: {records:?}"
        );
    }

    let repeats = of_type(&records, "repeat_device");
    assert_eq!(repeats.len(), 1, "{records:?}");
    assert_eq!(repeats[0]["device"], setup.device.as_str());
    assert_eq!(repeats[0]["requests"], 2);

    // A viewer reads them too; a group without devices counts nothing.
    let token = setup.admin.create_token("vera", "viewer");
    let viewer = world.console("vera");
    viewer
        .login(&setup.relay, token["token"].as_str().expect("a token"))
        .ok();
    let seen = viewer.run(&["stats", "--json"]).ok().json_lines();
    assert_eq!(of_type(&seen, "summary")[0]["requests"], 2);
    let empty = viewer
        .run(&["stats", "--json", "--group", "nobody", "--since", "1h"])
        .ok()
        .json_lines();
    assert_eq!(of_type(&empty, "summary")[0]["requests"], 0, "{empty:?}");
    assert!(of_type(&empty, "repeat_device").is_empty(), "{empty:?}");

    let csv = setup.admin.run(&["stats", "--csv"]).ok();
    let lines: Vec<&str> = csv.stdout.lines().collect();
    assert_eq!(lines[0], "type,name,detail,requests,resolved,median_secs");
    assert!(
        lines[1].starts_with("summary,requests,") && lines[1].ends_with(",2,1,"),
        "{}",
        csv.stdout
    );
    let table = setup.admin.run(&["stats"]).ok();
    assert!(
        table.stdout.contains("Median time to resolution:"),
        "{}",
        table.stdout
    );

    // Two output formats at once is a usage error: exit code 2.
    let both = setup.admin.run(&["stats", "--json", "--csv"]);
    assert_eq!(both.code, 2, "{}", both.stderr);
}
