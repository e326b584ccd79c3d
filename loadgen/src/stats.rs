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
