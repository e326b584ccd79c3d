//! The inference server's own metrics over a sweep, for the charts: each test's
//! `server_metrics_c<C>_in<I>_out<O>[_r<k>]/samples.csv` (header
//! `unix_s,replica,metric,labels,value,quantity`, a row per series per scrape, `quantity` the
//! common vocabulary's name or empty) read into one series per quantity, the replicas merged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::sweep::results::TestKey;

/// The quantities charted, by their vocabulary names.
const RUNNING: &str = "running";
const WAITING: &str = "waiting";
const KV_CACHE_USAGE: &str = "kv_cache_usage";
const HIT_RATE: &str = "prefix_cache_hit_rate";
const HITS: &str = "prefix_cache_hits";
const QUERIES: &str = "prefix_cache_queries";

/// One test's server metrics over time, a point per scrape round (`(unix_s, value)`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServerSeries {
    /// Requests being processed, summed over replicas.
    pub running: Vec<(f64, f64)>,
    /// Requests waiting for a slot, summed over replicas.
    pub waiting: Vec<(f64, f64)>,
    /// KV-cache usage, a fraction (0..1), the mean over replicas.
    pub kv_cache_usage: Vec<(f64, f64)>,
    /// Prefix-cache hit rate (0..1): the server's own gauge where it has one, else the hits
    /// over the queries counted between consecutive scrapes (replicas pooled).
    pub prefix_cache_hit_rate: Vec<(f64, f64)>,
}

/// How one quantity's values combine: several series of one scrape (label sets), and the
/// replicas of one round.
#[derive(Clone, Copy)]
enum Agg {
    Sum,
    Mean,
}

fn agg_of(quantity: &str) -> Agg {
    match quantity {
        KV_CACHE_USAGE | HIT_RATE => Agg::Mean,
        _ => Agg::Sum,
    }
}

fn combine(values: &[f64], agg: Agg) -> f64 {
    let sum: f64 = values.iter().sum();
    match agg {
        Agg::Sum => sum,
        Agg::Mean => sum / values.len().max(1) as f64,
    }
}

/// `(unix_s, value)` per quantity and replica, in time order, one point per scrape.
type Samples = BTreeMap<(String, String), Vec<(f64, f64)>>;

impl ServerSeries {
    /// One test's `samples.csv`. Rows without a vocabulary name, or that do not parse, are
    /// left out (the raw series stay in the file).
    pub fn parse(csv: &str) -> ServerSeries {
        let mut samples: Samples = BTreeMap::new();
        for line in csv.lines() {
            // a series can feed several quantities (`prefix_cache_queries;prompt_tokens`)
            if let Some((t, replica, value, quantities)) = row(line) {
                for quantity in quantities.split(';') {
                    samples
                        .entry((quantity.to_string(), replica.to_string()))
                        .or_default()
                        .push((t, value));
                }
            }
        }
        for ((quantity, _), points) in &mut samples {
            *points = per_scrape(std::mem::take(points), agg_of(quantity));
        }
        let gauge = |q: &str| {
            let agg = agg_of(q);
            rounds(&replicas(&samples, q))
                .into_iter()
                .map(|(t, v)| (t, combine(&v, agg)))
                .collect::<Vec<_>>()
        };
        let mut prefix_cache_hit_rate = gauge(HIT_RATE);
        if prefix_cache_hit_rate.is_empty() {
            prefix_cache_hit_rate = hit_rate(&samples);
        }
        ServerSeries {
            running: gauge(RUNNING),
            waiting: gauge(WAITING),
            kv_cache_usage: gauge(KV_CACHE_USAGE),
            prefix_cache_hit_rate,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
            && self.waiting.is_empty()
            && self.kv_cache_usage.is_empty()
            && self.prefix_cache_hit_rate.is_empty()
    }

    /// Every point's time.
    pub fn times(&self) -> impl Iterator<Item = f64> + '_ {
        [
            &self.running,
            &self.waiting,
            &self.kv_cache_usage,
            &self.prefix_cache_hit_rate,
        ]
        .into_iter()
        .flat_map(|s| s.iter().map(|p| p.0))
    }
}

fn unquote(s: &str) -> &str {
    s.trim().trim_matches('"')
}

/// `(unix_s, replica, value, quantity)` of a row; `None` for the header, a raw series (no
/// quantity) and anything unreadable. The labels (`k=v;k=v`) are not needed here, so a comma
/// inside them does no harm: the other columns are counted from both ends.
fn row(line: &str) -> Option<(f64, &str, f64, &str)> {
    let c: Vec<&str> = line.split(',').collect();
    let n = c.len();
    if n < 6 {
        return None;
    }
    let quantity = unquote(c[n - 1]);
    let t = unquote(c[0]).parse::<f64>().ok()?;
    let value = unquote(c[n - 2]).parse::<f64>().ok()?;
    (!quantity.is_empty() && t.is_finite() && value.is_finite()).then_some((
        t,
        unquote(c[1]),
        value,
        quantity,
    ))
}

/// A replica's rows of one quantity, one point per scrape: the series (label sets) of one
/// scrape, which share its time, combined.
fn per_scrape(mut rows: Vec<(f64, f64)>, agg: Agg) -> Vec<(f64, f64)> {
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut out = vec![];
    let mut i = 0;
    while i < rows.len() {
        let t = rows[i].0;
        let values: Vec<f64> = rows[i..]
            .iter()
            .take_while(|r| r.0 == t)
            .map(|r| r.1)
            .collect();
        i += values.len();
        out.push((t, combine(&values, agg)));
    }
    out
}

/// A quantity's points, one list per replica that has it.
fn replicas<'a>(samples: &'a Samples, quantity: &str) -> Vec<&'a [(f64, f64)]> {
    samples
        .iter()
        .filter(|((q, _), _)| q == quantity)
        .map(|(_, points)| points.as_slice())
        .collect()
}

/// The replicas' points grouped into scrape rounds (each endpoint is scraped once a round, at
/// nearly the same time): a round ends when a replica comes again or half an interval has
/// passed. Each round: its first time and the values of the replicas that answered in it.
fn rounds<T: Copy>(replicas: &[&[(f64, T)]]) -> Vec<(f64, Vec<T>)> {
    let mut spacings: Vec<f64> = replicas
        .iter()
        .flat_map(|r| r.windows(2).map(|w| w[1].0 - w[0].0))
        .filter(|d| *d > 0.0)
        .collect();
    spacings.sort_by(f64::total_cmp);
    let interval = spacings.get(spacings.len() / 2).copied().unwrap_or(1.0);
    let mut all: Vec<(f64, usize, T)> = replicas
        .iter()
        .enumerate()
        .flat_map(|(i, r)| r.iter().map(move |&(t, v)| (t, i, v)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut out: Vec<(f64, Vec<T>)> = vec![];
    let mut round: Vec<(f64, usize, T)> = vec![];
    let close = |round: &mut Vec<(f64, usize, T)>, out: &mut Vec<(f64, Vec<T>)>| {
        if !round.is_empty() {
            out.push((round[0].0, round.drain(..).map(|p| p.2).collect()));
        }
    };
    for p in all {
        if round
            .first()
            .is_some_and(|first| p.0 - first.0 > interval / 2.0 || round.iter().any(|q| q.1 == p.1))
        {
            close(&mut round, &mut out);
        }
        round.push(p);
    }
    close(&mut round, &mut out);
    out
}

/// A counter's increase from `a` to `b`; a counter that dropped was reset, and counts from 0.
fn increase(a: f64, b: f64) -> f64 {
    if b >= a { b - a } else { b }
}

/// The hit rate between consecutive scrapes from the `prefix_cache_hits` and
/// `prefix_cache_queries` counters: per replica the two counters' increases over each interval
/// (both read from the same scrape, so at the same time), then per round the hits over the
/// queries of every replica. Intervals without a query have no rate.
fn hit_rate(samples: &Samples) -> Vec<(f64, f64)> {
    let per_replica: Vec<Vec<(f64, (f64, f64))>> = samples
        .iter()
        .filter(|((q, _), _)| q == HITS)
        .filter_map(|((_, replica), hits)| {
            let queries = samples.get(&(QUERIES.to_string(), replica.clone()))?;
            let both: Vec<(f64, f64, f64)> = hits
                .iter()
                .filter_map(|&(t, h)| {
                    let q = queries.iter().find(|p| p.0 == t)?.1;
                    Some((t, h, q))
                })
                .collect();
            Some(
                both.windows(2)
                    .map(|w| {
                        let (a, b) = (w[0], w[1]);
                        (b.0, (increase(a.1, b.1), increase(a.2, b.2)))
                    })
                    .collect(),
            )
        })
        .collect();
    let slices: Vec<&[(f64, (f64, f64))]> = per_replica.iter().map(Vec::as_slice).collect();
    rounds(&slices)
        .into_iter()
        .filter_map(|(t, deltas)| {
            let hits: f64 = deltas.iter().map(|d| d.0).sum();
            let queries: f64 = deltas.iter().map(|d| d.1).sum();
            (queries > 0.0).then(|| (t, (hits / queries).min(1.0)))
        })
        .collect()
}

/// Every test's series that has any point, in the order of the tests.
pub fn read(dir: &Path, entries: &[Value]) -> Vec<ServerSeries> {
    let mut files: Vec<PathBuf> = entries
        .iter()
        .filter_map(TestKey::of)
        .map(|k| dir.join(k.server_metrics_dir()).join("samples.csv"))
        .collect();
    files.dedup();
    files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .map(|text| ServerSeries::parse(&text))
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "unix_s,replica,metric,labels,value,quantity\n";

    #[test]
    fn replicas_are_summed_or_averaged_per_scrape_round() {
        let csv = format!(
            "{HEADER}\
             100.00,0,vllm:num_requests_running,model_name=m,3,running\n\
             100.00,0,vllm:num_requests_waiting,model_name=m,1,waiting\n\
             100.00,0,vllm:kv_cache_usage_perc,model_name=m,0.5,kv_cache_usage\n\
             100.00,0,vllm:some_raw_thing,model_name=m,7,\n\
             100.02,1,vllm:num_requests_running,model_name=m,4,running\n\
             100.02,1,vllm:num_requests_waiting,model_name=m,0,waiting\n\
             100.02,1,vllm:kv_cache_usage_perc,model_name=m,0.7,kv_cache_usage\n\
             101.00,0,vllm:num_requests_running,model_name=m,5,running\n\
             101.01,1,vllm:num_requests_running,model_name=m,6,running\n\
             not,a,row\n"
        );
        let s = ServerSeries::parse(&csv);
        assert_eq!(s.running, vec![(100.0, 7.0), (101.0, 11.0)]);
        assert_eq!(s.waiting, vec![(100.0, 1.0)]);
        let (t, kv) = s.kv_cache_usage[0];
        assert_eq!(t, 100.0);
        assert!((kv - 0.6).abs() < 1e-12, "{kv}");
        assert!(s.prefix_cache_hit_rate.is_empty());
    }

    #[test]
    fn the_series_of_one_scrape_add_up_and_labels_may_hold_commas() {
        // a server with two engines: two series of `running` in one scrape
        let csv = format!(
            "{HEADER}\
             5,0,vllm:num_requests_running,engine=0;model_name=a,b,2,running\n\
             5,0,vllm:num_requests_running,engine=1;model_name=a,b,3,running\n"
        );
        assert_eq!(ServerSeries::parse(&csv).running, vec![(5.0, 5.0)]);
    }

    #[test]
    fn the_hit_rate_comes_from_the_counters_differenced_between_scrapes() {
        // replica 0: +50 hits of +100 queries, then a reset (200 → 30 hits, 400 → 40 queries),
        // then no query at all; replica 1: +10 of +100
        let csv = format!(
            "{HEADER}\
             10,0,vllm:prefix_cache_hits_total,,100,prefix_cache_hits\n\
             10,0,vllm:prefix_cache_queries_total,,300,prefix_cache_queries\n\
             10,1,vllm:prefix_cache_hits_total,,0,prefix_cache_hits\n\
             10,1,vllm:prefix_cache_queries_total,,0,prefix_cache_queries\n\
             11,0,vllm:prefix_cache_hits_total,,150,prefix_cache_hits\n\
             11,0,vllm:prefix_cache_queries_total,,400,prefix_cache_queries\n\
             11,1,vllm:prefix_cache_hits_total,,10,prefix_cache_hits\n\
             11,1,vllm:prefix_cache_queries_total,,100,prefix_cache_queries\n\
             12,0,vllm:prefix_cache_hits_total,,30,prefix_cache_hits\n\
             12,0,vllm:prefix_cache_queries_total,,40,prefix_cache_queries\n\
             13,0,vllm:prefix_cache_hits_total,,30,prefix_cache_hits\n\
             13,0,vllm:prefix_cache_queries_total,,40,prefix_cache_queries\n"
        );
        let s = ServerSeries::parse(&csv);
        assert_eq!(s.prefix_cache_hit_rate, vec![(11.0, 0.3), (12.0, 0.75)]);
    }

    #[test]
    fn a_hit_rate_gauge_is_taken_as_it_is() {
        let csv = format!(
            "{HEADER}\
             1,0,sglang:cache_hit_rate,,0.25,prefix_cache_hit_rate\n\
             1,0,x_hits,,1,prefix_cache_hits\n\
             1,0,x_queries,,1,prefix_cache_queries\n\
             2,0,sglang:cache_hit_rate,,0.5,prefix_cache_hit_rate\n\
             2,0,x_hits,,2,prefix_cache_hits\n\
             2,0,x_queries,,100,prefix_cache_queries\n"
        );
        let s = ServerSeries::parse(&csv);
        assert_eq!(s.prefix_cache_hit_rate, vec![(1.0, 0.25), (2.0, 0.5)]);
        assert!(ServerSeries::parse(HEADER).is_empty());
    }

    /// llama.cpp's prompt counters feed two quantities each: the hit rate is read from them.
    #[test]
    fn a_series_of_several_quantities_feeds_each() {
        let csv = format!(
            "{HEADER}\
             1.0,0,llamacpp:prompt_tokens_total,,100,prefix_cache_queries;prompt_tokens\n\
             1.0,0,llamacpp:prompt_tokens_cached_total,,0,prefix_cache_hits;prefix_cache_queries;prompt_tokens\n\
             2.0,0,llamacpp:prompt_tokens_total,,150,prefix_cache_queries;prompt_tokens\n\
             2.0,0,llamacpp:prompt_tokens_cached_total,,50,prefix_cache_hits;prefix_cache_queries;prompt_tokens\n"
        );
        let s = ServerSeries::parse(&csv);
        assert!(!s.is_empty());
        // between the two scrapes: 50 hits of 100 tokens looked up (50 new + 50 cached)
        assert_eq!(s.prefix_cache_hit_rate, vec![(2.0, 0.5)]);
    }
}
