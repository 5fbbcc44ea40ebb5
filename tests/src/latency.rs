//! Timings of a session read from JSON lines: the console's (`--headless
//! --json`: `frame_counter`, `input_sent`) and the test X client's
//! (`deskside-xclient --counter-log`: `counter`, `motion`), both stamped
//! with `unix_us` on this machine's clock. Pure: no processes, no I/O.

use std::collections::HashMap;

use serde_json::Value;

/// The value at fraction `p` (0.0–1.0) of `sorted` (ascending, not empty).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// When the X client drew each counter value (`unix_us` by value), from its
/// `counter` lines.
pub fn counter_drawn(xevents: &[Value]) -> HashMap<u64, u64> {
    xevents
        .iter()
        .filter(|v| v["type"] == "counter")
        .filter_map(|v| Some((v["value"].as_u64()?, v["unix_us"].as_u64()?)))
        .collect()
}

/// How old each counter value the console decoded (`frame_counter`) was,
/// in ms from drawn to decoded, in the console's order; values the X client
/// did not log are left out.
pub fn counter_delays(console: &[Value], drawn: &HashMap<u64, u64>) -> Vec<f64> {
    console
        .iter()
        .filter(|v| v["type"] == "frame_counter")
        .filter_map(|v| {
            let at = drawn.get(&v["value"].as_u64()?)?;
            Some((v["unix_us"].as_u64()? as f64 - *at as f64) / 1000.0)
        })
        .collect()
}

/// Each pointer move's delay in ms from the console sending it (`sent`:
/// `input_sent` lines) to the X client seeing it (`received`: `motion`
/// lines), matched by spot: the latest send to that spot before it.
pub fn input_latencies(sent: &[Value], received: &[Value]) -> Vec<f64> {
    let mut by_spot: HashMap<(u64, u64), Vec<u64>> = HashMap::new();
    for v in sent {
        if let (Some(x), Some(y), Some(at)) =
            (v["x"].as_u64(), v["y"].as_u64(), v["unix_us"].as_u64())
        {
            by_spot.entry((x, y)).or_default().push(at);
        }
    }
    received
        .iter()
        .filter_map(|v| {
            let spot = (v["root_x"].as_u64()?, v["root_y"].as_u64()?);
            let at = v["unix_us"].as_u64()?;
            let sent_at = by_spot
                .get(&spot)?
                .iter()
                .copied()
                .filter(|s| *s <= at)
                .max()?;
            Some((at - sent_at) as f64 / 1000.0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_move_is_matched_with_the_latest_send_to_its_spot_before_it() {
        let sent = [
            json!({"x": 10, "y": 20, "unix_us": 1_000}),
            json!({"x": 10, "y": 20, "unix_us": 5_000}),
            json!({"x": 30, "y": 40, "unix_us": 2_000}),
        ];
        let received = [
            json!({"root_x": 10, "root_y": 20, "unix_us": 3_000}),
            json!({"root_x": 10, "root_y": 20, "unix_us": 7_500}),
            json!({"root_x": 30, "root_y": 40, "unix_us": 1_500}), // before any send
            json!({"root_x": 99, "root_y": 99, "unix_us": 9_000}), // never sent
        ];
        assert_eq!(input_latencies(&sent, &received), vec![2.0, 2.5]);
    }

    #[test]
    fn counter_delays_pair_decoded_values_with_their_drawing() {
        let xevents = [
            json!({"type": "counter", "value": 1, "unix_us": 1_000}),
            json!({"type": "counter", "value": 2, "unix_us": 2_000}),
            json!({"type": "motion", "value": 3, "unix_us": 2_500}),
        ];
        let console = [
            json!({"type": "frame_counter", "value": 2, "unix_us": 14_000}),
            json!({"type": "frame_counter", "value": 1, "unix_us": 3_000}),
            json!({"type": "frame_counter", "value": 3, "unix_us": 4_000}),
            json!({"type": "frame", "value": 1, "unix_us": 4_000}),
        ];
        let drawn = counter_drawn(&xevents);
        assert_eq!(drawn.len(), 2);
        assert_eq!(counter_delays(&console, &drawn), vec![12.0, 2.0]);
    }

    #[test]
    fn percentiles_round_to_the_nearest_rank() {
        let sorted = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(percentile(&sorted, 0.0), 1.0);
        assert_eq!(percentile(&sorted, 0.5), 3.0);
        assert_eq!(percentile(&sorted, 0.95), 5.0);
        assert_eq!(percentile(&[7.0], 0.99), 7.0);
    }
}
