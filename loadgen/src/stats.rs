//! Exact statistics over raw samples: mean, median, standard deviation and percentiles.
//!
//! Percentiles use linear interpolation between closest ranks — numpy's default
//! (`np.percentile(..., method="linear")`), which `vllm bench serve` uses — over *all* samples.
//! Pooling across workers or repeats means concatenating samples, never averaging percentiles.

use serde::{Deserialize, Serialize};

/// Summary of one metric, in the samples' unit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Distribution {
    pub count: usize,
    pub mean: f64,
    pub median: f64,
    /// Population standard deviation (numpy's default, ddof = 0).
    pub std: f64,
    pub min: f64,
    pub max: f64,
    /// `(p, value)` for each requested percentile.
    pub percentiles: Vec<(f64, f64)>,
}

impl Distribution {
    /// `None` when there are no samples.
    pub fn of(mut samples: Vec<f64>, percentiles: &[f64]) -> Option<Distribution> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable_by(f64::total_cmp);
        let n = samples.len() as f64;
        let mean = samples.iter().sum::<f64>() / n;
        let var = samples.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
        Some(Distribution {
            count: samples.len(),
            mean,
            median: percentile_sorted(&samples, 50.0),
            std: var.sqrt(),
            min: samples[0],
            max: samples[samples.len() - 1],
            percentiles: percentiles
                .iter()
                .map(|&p| (p, percentile_sorted(&samples, p)))
                .collect(),
        })
    }

    pub fn get(&self, p: f64) -> Option<f64> {
        self.percentiles
            .iter()
            .find(|(q, _)| *q == p)
            .map(|(_, v)| *v)
    }
}

/// Samples replayed: `pass(f)` calls `f` on every sample, in the same order each time.
pub type Replay<'a> = dyn FnMut(&mut dyn FnMut(f64)) + 'a;

impl Distribution {
    /// [`Distribution::of`] without holding the samples: exact, by radix selection over the
    /// samples' order-preserving 64-bit keys, 16 bits a pass. Five passes over `pass` (count,
    /// sum and the first digits; variance and the second; the third; the fourth); memory: one
    /// 65,536-bucket histogram per sought rank (two per percentile, plus the median's). The
    /// percentiles, median, min and max are bit-identical to [`Distribution::of`]'s; the mean and
    /// standard deviation are summed in replay order, not sorted order (a few ulps apart).
    pub fn of_replayed(pass: &mut Replay<'_>, percentiles: &[f64]) -> Option<Distribution> {
        let (mut n, mut sum) = (0u64, 0.0f64);
        pass(&mut |x| {
            n += 1;
            sum += x;
        });
        if n == 0 {
            return None;
        }
        let mean = sum / n as f64;
        // the ranks that numpy's linear method reads: floor and ceil of each, min and max
        let rank = |p: f64| (p / 100.0).clamp(0.0, 1.0) * (n - 1) as f64;
        let mut ranks: Vec<u64> = vec![0, n - 1];
        for p in percentiles.iter().copied().chain([50.0]) {
            let r = rank(p);
            ranks.push(r.floor() as u64);
            ranks.push(r.ceil() as u64);
        }
        ranks.sort_unstable();
        ranks.dedup();
        // per rank: the key's digits found so far and the rank left within them
        let mut found: Vec<(u64, u64)> = ranks.iter().map(|&r| (0, r)).collect();
        let mut var = 0.0f64;
        for level in 0..4u32 {
            let shift = 48 - 16 * level;
            let mut prefixes: Vec<u64> = found.iter().map(|f| f.0).collect();
            prefixes.dedup();
            let mut hist: Vec<Box<[u64]>> = (0..prefixes.len())
                .map(|_| vec![0u64; 1 << 16].into_boxed_slice())
                .collect();
            pass(&mut |x| {
                if level == 0 {
                    var += (x - mean) * (x - mean);
                }
                let k = order_key(x);
                let known = k.checked_shr(shift + 16).unwrap_or(0);
                if let Ok(i) = prefixes.binary_search(&known) {
                    hist[i][((k >> shift) & 0xFFFF) as usize] += 1;
                }
            });
            for f in &mut found {
                let h = &hist[prefixes
                    .binary_search(&f.0)
                    .expect("its prefix was counted")];
                let mut left = f.1;
                let digit = h
                    .iter()
                    .position(|&c| {
                        if left < c {
                            true
                        } else {
                            left -= c;
                            false
                        }
                    })
                    .expect("the rank is within the samples");
                *f = ((f.0 << 16) | digit as u64, left);
            }
        }
        let value = |r: u64| from_order_key(found[ranks.binary_search(&r).expect("sought")].0);
        let at = |p: f64| {
            let r = rank(p);
            let (lo, hi) = (value(r.floor() as u64), value(r.ceil() as u64));
            lo + (hi - lo) * (r - r.floor())
        };
        Some(Distribution {
            count: n as usize,
            mean,
            median: at(50.0),
            std: (var / n as f64).sqrt(),
            min: value(0),
            max: value(n - 1),
            percentiles: percentiles.iter().map(|&p| (p, at(p))).collect(),
        })
    }
}

/// A key whose unsigned order is `f64::total_cmp`'s.
fn order_key(x: f64) -> u64 {
    let b = x.to_bits();
    if b >> 63 == 1 { !b } else { b | 1 << 63 }
}

fn from_order_key(k: u64) -> f64 {
    f64::from_bits(if k >> 63 == 1 { k & !(1 << 63) } else { !k })
}

/// The `p`-th percentile (0–100) of sorted samples, numpy's linear method.
pub fn percentile_sorted(sorted: &[f64], p: f64) -> f64 {
    assert!(!sorted.is_empty(), "percentile of no samples");
    let rank = (p / 100.0).clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    let frac = rank - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

/// `99` → "99", `99.9` → "99.9": the spelling vLLM uses in key names (`p99.9_ttft_ms`).
pub fn percentile_label(p: f64) -> String {
    if p.fract() == 0.0 {
        format!("{}", p as i64)
    } else {
        format!("{p}")
    }
}

/// Parses `--percentiles 50,90,99`.
pub fn parse_percentiles(s: &str) -> Result<Vec<f64>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let p: f64 = part.parse().map_err(|_| {
            format!("--percentiles: {part:?} is not a number (expected e.g. 50,90,99)")
        })?;
        if !(p > 0.0 && p < 100.0) {
            return Err(format!("--percentiles: {part} is outside (0, 100)"));
        }
        out.push(p);
    }
    if out.is_empty() {
        return Err(format!(
            "--percentiles: no percentile in {s:?} (expected e.g. 50,90,99)"
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_numpy_linear() {
        // np.percentile([1,2,3,4], [25, 50, 90, 99]) = [1.75, 2.5, 3.7, 3.97]
        let v = [1.0, 2.0, 3.0, 4.0];
        let got: Vec<f64> = [25.0, 50.0, 90.0, 99.0]
            .iter()
            .map(|&p| percentile_sorted(&v, p))
            .collect();
        for (g, e) in got.iter().zip([1.75, 2.5, 3.7, 3.97]) {
            assert!((g - e).abs() < 1e-12, "{g} vs {e}");
        }
        assert_eq!(percentile_sorted(&[5.0], 99.0), 5.0);
    }

    #[test]
    fn distribution_of_known_samples() {
        // np.std([2,4,4,4,5,5,7,9]) = 2.0
        let d =
            Distribution::of(vec![9.0, 2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0], &[50.0, 99.0]).unwrap();
        assert_eq!(d.mean, 5.0);
        assert_eq!(d.std, 2.0);
        assert_eq!(d.median, 4.5);
        assert_eq!(d.get(50.0), Some(4.5));
        assert!((d.get(99.0).unwrap() - 8.86).abs() < 1e-9);
        assert_eq!((d.min, d.max), (2.0, 9.0));
        assert!(Distribution::of(vec![], &[50.0]).is_none());
    }

    #[test]
    fn pooled_percentiles_are_not_averaged_percentiles() {
        // Two workers: one fast, one slow. The pooled p50 is not the mean of the two p50s.
        let a: Vec<f64> = (0..100).map(|i| i as f64).collect();
        let b: Vec<f64> = (0..10).map(|i| 1000.0 + i as f64).collect();
        let pa = Distribution::of(a.clone(), &[90.0])
            .unwrap()
            .get(90.0)
            .unwrap();
        let pb = Distribution::of(b.clone(), &[90.0])
            .unwrap()
            .get(90.0)
            .unwrap();
        let pooled = Distribution::of([a, b].concat(), &[90.0])
            .unwrap()
            .get(90.0)
            .unwrap();
        assert!((pooled - (pa + pb) / 2.0).abs() > 100.0);
        assert!((pooled - 98.1).abs() < 1e-9, "{pooled}"); // rank 0.9 × 109 = 98.1
    }

    /// The replayed selection against the sort, on samples with ties, zeros, a negative, and
    /// values that share their high bits (where a coarse histogram would not separate them).
    #[test]
    fn replayed_distribution_equals_the_sorted_one() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let pct = [1.0, 25.0, 50.0, 90.0, 99.0, 99.9];
        let cases: Vec<Vec<f64>> = vec![
            vec![4.0],
            vec![2.0, 2.0, 2.0],
            vec![9.0, 2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 0.0, -0.0, -3.5],
            // 20 ms ± a few ns: the same top 40 bits
            (0..5000)
                .map(|_| 20.0 + (next() % 1000) as f64 * 1e-9)
                .collect(),
            (0..20000)
                .map(|_| (next() % 1_000_000) as f64 / 997.0)
                .collect(),
        ];
        for v in cases {
            let sorted = Distribution::of(v.clone(), &pct).unwrap();
            let mut pass = |f: &mut dyn FnMut(f64)| v.iter().for_each(|&x| f(x));
            let replayed = Distribution::of_replayed(&mut pass, &pct).unwrap();
            assert_eq!(replayed.count, sorted.count);
            assert_eq!(replayed.percentiles, sorted.percentiles, "{v:?}");
            assert_eq!(
                (replayed.median, replayed.min, replayed.max),
                (sorted.median, sorted.min, sorted.max)
            );
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
            assert!(
                close(replayed.mean, sorted.mean),
                "{} {}",
                replayed.mean,
                sorted.mean
            );
            assert!(
                close(replayed.std, sorted.std),
                "{} {}",
                replayed.std,
                sorted.std
            );
        }
        let mut none = |_: &mut dyn FnMut(f64)| {};
        assert!(Distribution::of_replayed(&mut none, &pct).is_none());
    }

    #[test]
    fn labels_and_parsing() {
        assert_eq!(percentile_label(99.0), "99");
        assert_eq!(percentile_label(99.9), "99.9");
        assert_eq!(
            parse_percentiles("50, 90,99.9").unwrap(),
            vec![50.0, 90.0, 99.9]
        );
        assert!(parse_percentiles("50,abc").unwrap_err().contains("abc"));
        assert!(parse_percentiles("100").unwrap_err().contains("100"));
    }
}
