//! Whether the client held the load a test claims. A test is `invalid`, with the reason, when:
//! - open loop: the scheduler released arrivals late (dispatch lag p99 above
//!   [`Bounds::dispatch_lag_p99_ms`]): the rate asked for was not the rate sent;
//! - the load generator's reads fell behind the kernel: read lag median above
//!   [`Bounds::read_lag_p50_ms`] (most reads late), or read lag p99 above
//!   [`Bounds::read_lag_p99_ms`] with more than [`Bounds::events_per_read`] content chunks per
//!   read (late reads that found chunks piled up; a read's stamp is its *last* byte's, so a
//!   backlog shows as chunks per read more than as lag): the bytes waited in the socket, chunks were read together
//!   and share one stamp, so ITL and TPOT collapse towards 0 (seen at 16,000 streams on one
//!   core: ITL p50 0.00 ms, truth 20 ms);
//! - closed loop: fewer requests were in flight than the concurrency for most of the sending
//!   phase (above [`Bounds::below_concurrency_fraction`] of the time from the first send to the
//!   last): the client could not start requests as fast as they ended;
//! - the load worker's CPU was saturated (at least [`Bounds::cpu_saturated_pct`] of the cores its
//!   runtime may use, over the measured run) while its dispatch lag p99 or read lag p99 was over
//!   its bound: the worker had no time left to keep its schedule or its reads (a late tail
//!   alone, without chunks piling up per read, counts then). The reason names the CPU.
//!
//! The read lag of a read is the moment it returned minus the kernel's receive stamp of its
//! last byte (`SO_TIMESTAMPING`); reads without a kernel stamp have none.

use serde::Serialize;

use loadgen::Records;
use loadgen::stats::{Distribution, percentile_sorted};

/// The limits beyond which a test is invalid.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    pub dispatch_lag_p99_ms: f64,
    pub read_lag_p50_ms: f64,
    pub read_lag_p99_ms: f64,
    pub events_per_read: f64,
    pub below_concurrency_fraction: f64,
    pub cpu_saturated_pct: f64,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            dispatch_lag_p99_ms: 10.0,
            read_lag_p50_ms: 2.0,
            read_lag_p99_ms: 10.0,
            events_per_read: 2.0,
            below_concurrency_fraction: 0.5,
            cpu_saturated_pct: 95.0,
        }
    }
}

/// The client's own health over a test, as result keys.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ClientHealth {
    /// Read lag over every kernel-stamped read, ms (`None`: no kernel stamps).
    pub client_read_lag_p50_ms: Option<f64>,
    pub client_read_lag_p99_ms: Option<f64>,
    /// Content chunks per read of the body (> 1: chunks read together share a stamp).
    pub client_events_per_read: Option<f64>,
    /// Closed loop: the fraction of the sending phase with fewer requests in flight than the
    /// concurrency.
    pub client_below_concurrency_fraction: Option<f64>,
    /// The load worker's CPU over the measured run, in percent of the cores its runtime may use
    /// (the busiest worker's; `None`: not measured). In local mode the process also holds the
    /// controller.
    pub client_cpu_pct: Option<f64>,
    /// Why the test is invalid (absent: valid).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invalid: Option<String>,
}

/// Judges the records of one test: open loop with a finite `request_rate`, closed loop with
/// `concurrency`; `cpu_pct`: the load worker's CPU use over it, if measured.
pub fn judge(
    records: &(impl Records + ?Sized),
    open_loop: bool,
    concurrency: Option<usize>,
    cpu_pct: Option<f64>,
    b: Bounds,
) -> ClientHealth {
    judge_holding(
        records,
        open_loop,
        concurrency,
        cpu_pct,
        b,
        loadgen::report::CHUNK_SAMPLES_HELD,
    )
}

/// [`judge`] holding at most `held` read lags (one per read); past them the two percentiles come
/// from replaying the records (`Distribution::of_replayed`: the same values).
pub fn judge_holding(
    records: &(impl Records + ?Sized),
    open_loop: bool,
    concurrency: Option<usize>,
    cpu_pct: Option<f64>,
    b: Bounds,
    held: usize,
) -> ClientHealth {
    let (mut lags, mut d) = (Vec::new(), Vec::new());
    let (mut reads, mut chunks) = (0usize, 0usize);
    let lag_ms = |us: &u32| f64::from(*us) / 1000.0;
    for r in records.each() {
        if reads + r.read_lags_us.len() <= held {
            lags.extend(r.read_lags_us.iter().map(lag_ms));
        } else {
            lags = Vec::new();
        }
        reads += r.read_lags_us.len();
        if !r.read_lags_us.is_empty() {
            chunks += r.chunks.len();
        }
        if open_loop {
            d.push(r.dispatch_lag_ns() as f64 / 1e6);
        }
    }
    let (p50, p99) = if reads > held {
        let mut pass = |f: &mut dyn FnMut(f64)| {
            for r in records.each() {
                r.read_lags_us.iter().for_each(|us| f(lag_ms(us)));
            }
        };
        Distribution::of_replayed(&mut pass, &[50.0, 99.0])
            .map_or((None, None), |d| (d.get(50.0), d.get(99.0)))
    } else {
        lags.sort_by(f64::total_cmp);
        (
            (!lags.is_empty()).then(|| percentile_sorted(&lags, 50.0)),
            (!lags.is_empty()).then(|| percentile_sorted(&lags, 99.0)),
        )
    };
    let mut h = ClientHealth {
        client_read_lag_p50_ms: p50,
        client_read_lag_p99_ms: p99,
        client_events_per_read: (reads > 0).then(|| chunks as f64 / reads as f64),
        client_below_concurrency_fraction: None,
        client_cpu_pct: cpu_pct,
        invalid: None,
    };
    let mut why = vec![];
    // what is over its bound, for the CPU's verdict
    let mut late = vec![];
    if open_loop {
        d.sort_by(f64::total_cmp);
        if let Some(p99) = (!d.is_empty()).then(|| percentile_sorted(&d, 99.0))
            && p99 > b.dispatch_lag_p99_ms
        {
            late.push(format!("dispatch lag p99 {p99:.1} ms"));
            why.push(format!(
                "the schedule slipped: dispatch lag p99 {p99:.1} ms > {} ms",
                b.dispatch_lag_p99_ms
            ));
        }
    } else if let Some(c) = concurrency {
        let f = below_concurrency(records, c);
        h.client_below_concurrency_fraction = f;
        if let Some(f) = f.filter(|f| *f > b.below_concurrency_fraction) {
            why.push(format!(
                "fewer than {c} requests in flight for {:.0} % of the sending phase",
                f * 100.0
            ));
        }
    }
    if let (Some(p50), Some(p99)) = (h.client_read_lag_p50_ms, h.client_read_lag_p99_ms) {
        if p99 > b.read_lag_p99_ms {
            late.push(format!("read lag p99 {p99:.1} ms"));
        }
        let per_read = h.client_events_per_read.unwrap_or(0.0);
        if p50 > b.read_lag_p50_ms || (p99 > b.read_lag_p99_ms && per_read > b.events_per_read) {
            why.push(format!(
                "reads fell behind the kernel: read lag p50 {p50:.1} ms, p99 {p99:.1} ms, {per_read:.1} chunks per read (bounds: p50 {} ms; p99 {} ms with over {} chunks per read)",
                b.read_lag_p50_ms, b.read_lag_p99_ms, b.events_per_read
            ));
        }
    }
    if let Some(cpu) = cpu_pct.filter(|&c| c >= b.cpu_saturated_pct)
        && !late.is_empty()
    {
        why.push(format!(
            "the load worker's CPU was saturated ({cpu:.0} % of the cores it may use) with {} over its bound (dispatch {} ms, read {} ms)",
            late.join(" and "),
            b.dispatch_lag_p99_ms,
            b.read_lag_p99_ms
        ));
    }
    h.invalid = (!why.is_empty()).then(|| why.join("; "));
    h
}

/// The fraction of `[first send, last send]` during which fewer than `min(c, requests)`
/// requests were in flight (sent, not ended); `None` when that span is under a tenth of the
/// test (every request went out in the opening burst: nothing to judge).
pub fn below_concurrency(records: &(impl Records + ?Sized), c: usize) -> Option<f64> {
    // +1 at each send, −1 at each end; ends before sends at the same instant (a slot reused)
    let mut ev: Vec<(u64, i64)> = Vec::new();
    let (mut first, mut last, mut end) = (u64::MAX, 0u64, 0u64);
    for r in records.each() {
        ev.push((r.send_ns, 1));
        ev.push((r.end_ns.max(r.send_ns), -1));
        first = first.min(r.send_ns);
        last = last.max(r.send_ns);
        end = end.max(r.end_ns);
    }
    if ev.is_empty() {
        return None;
    }
    let want = c.min(ev.len() / 2) as i64;
    if want == 0 || (last - first) * 10 < end.saturating_sub(first) {
        return None;
    }
    ev.sort_unstable();
    let (mut n, mut below, mut t) = (0i64, 0u64, first);
    for (at, d) in ev {
        let at = at.clamp(first, last);
        if n < want {
            below += at - t;
        }
        t = at;
        n += d;
    }
    Some(below as f64 / (last - first) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use loadgen::RequestRecord;

    fn rec(send_ms: u64, end_ms: u64) -> RequestRecord {
        RequestRecord {
            send_ns: send_ms * 1_000_000,
            dispatch_ns: send_ms * 1_000_000,
            intended_ns: send_ms * 1_000_000,
            end_ns: end_ms * 1_000_000,
            ..Default::default()
        }
    }

    /// Past the held read lags, the percentiles come from replaying the records: the same.
    #[test]
    fn read_lags_past_the_held_ones_give_the_same_verdict() {
        let r: Vec<RequestRecord> = (0..50u64)
            .map(|i| RequestRecord {
                read_lags_us: (0..20u32)
                    .map(|k| (i as u32 * 37 + k * 101) % 3000)
                    .collect(),
                ..rec(i, i + 5)
            })
            .collect();
        let held = judge(&r, true, None, None, Bounds::default());
        let replayed = judge_holding(&r, true, None, None, Bounds::default(), 7);
        assert!(held.client_read_lag_p99_ms.is_some());
        assert_eq!(
            (held.client_read_lag_p50_ms, held.client_read_lag_p99_ms),
            (
                replayed.client_read_lag_p50_ms,
                replayed.client_read_lag_p99_ms
            )
        );
        assert_eq!(held.invalid, replayed.invalid);
    }

    #[test]
    fn a_client_that_keeps_its_slots_full_is_valid() {
        // two streams, each request 10 ms, the next sent as the previous ends
        let r: Vec<RequestRecord> = (0..10).map(|i| rec(i / 2 * 10, i / 2 * 10 + 10)).collect();
        assert_eq!(below_concurrency(&r, 2), Some(0.0));
        let h = judge(&r, false, Some(2), None, Bounds::default());
        assert_eq!(h.invalid, None);
    }

    #[test]
    fn an_opening_burst_alone_is_not_judged() {
        // four requests, all sent within 3 µs: a span too short to say anything
        let r: Vec<RequestRecord> = (0..4)
            .map(|i| RequestRecord {
                send_ns: 1_000_000 + i * 1000,
                end_ns: 50_000_000,
                ..Default::default()
            })
            .collect();
        assert_eq!(below_concurrency(&r, 4), None);
    }

    #[test]
    fn a_client_that_starts_requests_late_is_invalid() {
        // concurrency 4 asked, but requests go out one at a time
        let r: Vec<RequestRecord> = (0..10).map(|i| rec(i * 10, i * 10 + 10)).collect();
        let f = below_concurrency(&r, 4).unwrap();
        assert_eq!(f, 1.0);
        let h = judge(&r, false, Some(4), None, Bounds::default());
        assert!(
            h.invalid
                .as_deref()
                .unwrap()
                .contains("fewer than 4 requests in flight for 100 %"),
            "{h:?}"
        );
    }

    #[test]
    fn a_slipped_schedule_and_late_reads_are_invalid() {
        let mut r: Vec<RequestRecord> = (0..100).map(|i| rec(i, i + 5)).collect();
        r[99].dispatch_ns += 50_000_000;
        r[98].dispatch_ns += 50_000_000;
        let h = judge(&r, true, None, None, Bounds::default());
        assert!(h.invalid.unwrap().contains("dispatch lag p99"));
        for x in &mut r {
            x.dispatch_ns = x.intended_ns;
            x.read_lags_us = vec![20_000, 30_000];
            x.chunks = vec![
                loadgen::record::ContentChunk {
                    t_ns: 0,
                    text_end: 0,
                    tokens: 1,
                };
                8
            ];
        }
        let h = judge(&r, true, None, None, Bounds::default());
        assert_eq!(h.client_read_lag_p50_ms, Some(25.0));
        assert_eq!(h.client_events_per_read, Some(4.0));
        assert!(
            h.invalid
                .unwrap()
                .contains("read lag p50 25.0 ms, p99 30.0 ms, 4.0 chunks per read")
        );
        // a fresh median, a late tail: invalid only with chunks piled up per read
        for x in &mut r {
            x.read_lags_us = vec![100; 20];
            x.read_lags_us[0] = 30_000;
            x.chunks = vec![x.chunks[0]; 60];
        }
        let piled = judge(&r, true, None, None, Bounds::default());
        assert!(
            piled
                .invalid
                .unwrap()
                .contains("p99 30.0 ms, 3.0 chunks per read"),
            "3 chunks per read"
        );
        for x in &mut r {
            x.chunks.truncate(20);
        }
        assert_eq!(judge(&r, true, None, None, Bounds::default()).invalid, None);
        // the same late tail from a worker whose CPU was saturated: invalid, naming the CPU
        let h = judge(&r, true, None, Some(98.6), Bounds::default());
        assert_eq!(h.client_cpu_pct, Some(98.6));
        let why = h.invalid.unwrap();
        assert!(
            why.contains("CPU was saturated (99 % of the cores it may use) with read lag p99 30.0 ms over its bound"),
            "{why}"
        );
        // a busy CPU that kept up is valid, as is a late tail on an idle one
        for x in &mut r {
            x.read_lags_us = vec![100; 20];
        }
        assert_eq!(
            judge(&r, true, None, Some(99.0), Bounds::default()).invalid,
            None
        );
        // a slipped schedule on a saturated CPU names both
        r[99].dispatch_ns += 50_000_000;
        r[98].dispatch_ns += 50_000_000;
        let why = judge(&r, true, None, Some(97.0), Bounds::default())
            .invalid
            .unwrap();
        assert!(
            why.contains("the schedule slipped")
                && why.contains("CPU was saturated (97 %")
                && why.contains("with dispatch lag p99"),
            "{why}"
        );
    }
}
