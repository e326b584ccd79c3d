//! A finished sweep's verdict per IO combination (its largest passing concurrency), sent to
//! the client in `SweepFinished`, and the gate `benchctl sweep --require-max-passing N` applies
//! to it (a Kubernetes Job then fails when the server does not reach the concurrency asked).

use std::path::Path;

use proto::CombinationVerdict;

use super::summary::SweepSummary;

/// Each combination's outcome, in the plan's order.
pub fn combinations(summary: &SweepSummary) -> Vec<CombinationVerdict> {
    summary
        .combinations
        .iter()
        .map(|c| CombinationVerdict {
            input_len: c.input_len,
            output_len: c.output_len,
            // the gate is over concurrency: a rate sweep's boundary is not one (refused up front)
            max_passing_concurrency: c.max_passing.and_then(|l| l.concurrency()),
        })
        .collect()
}

/// The same, from a finished sweep's `summary.json` (a sweep that ended under an earlier
/// leader); empty when the file cannot be read.
pub fn from_summary_file(dir: &Path) -> Vec<CombinationVerdict> {
    let Ok(bytes) = std::fs::read(dir.join("summary.json")) else {
        return Vec::new();
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return Vec::new();
    };
    let num = |c: &serde_json::Value, k: &str| c[k].as_u64().and_then(|n| u32::try_from(n).ok());
    v["combinations"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter_map(|c| {
                    Some(CombinationVerdict {
                        input_len: num(c, "input_len")?,
                        output_len: num(c, "output_len")?,
                        max_passing_concurrency: num(c, "max_passing"),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `--require-max-passing N`: `Ok` when every combination's largest passing concurrency is at
/// least `n`; the error names each combination that falls short.
pub fn require_max_passing(n: u32, combos: &[CombinationVerdict]) -> Result<(), String> {
    if combos.is_empty() {
        return Err(format!(
            "--require-max-passing {n}: the sweep reported no combination's outcome, so the gate cannot pass"
        ));
    }
    let short: Vec<String> = combos
        .iter()
        .filter(|c| c.max_passing_concurrency.is_none_or(|m| m < n))
        .map(|c| {
            let reached = match c.max_passing_concurrency {
                Some(m) => format!("passed up to concurrency {m}"),
                None => "passed at no concurrency tested".to_string(),
            };
            format!("input {} / output {} {reached}", c.input_len, c.output_len)
        })
        .collect();
    if short.is_empty() {
        return Ok(());
    }
    Err(format!(
        "--require-max-passing {n}: {} of {} IO combinations fall short: {}",
        short.len(),
        combos.len(),
        short.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn combo(i: u32, o: u32, m: Option<u32>) -> CombinationVerdict {
        CombinationVerdict {
            input_len: i,
            output_len: o,
            max_passing_concurrency: m,
        }
    }

    #[test]
    fn the_gate_passes_only_when_every_combination_reaches_n() {
        let both = [combo(1024, 128, Some(8)), combo(2048, 128, Some(16))];
        assert_eq!(require_max_passing(8, &both), Ok(()));
        let e = require_max_passing(16, &both).unwrap_err();
        assert_eq!(
            e,
            "--require-max-passing 16: 1 of 2 IO combinations fall short: input 1024 / output 128 passed up to concurrency 8"
        );
        let none = [combo(1024, 128, None), combo(2048, 128, Some(16))];
        let e = require_max_passing(1, &none).unwrap_err();
        assert!(
            e.contains("input 1024 / output 128 passed at no concurrency tested"),
            "{e}"
        );
        assert!(!e.contains("2048"), "{e}");
        let e = require_max_passing(1, &[]).unwrap_err();
        assert!(e.contains("no combination"), "{e}");
    }

    #[test]
    fn the_verdicts_are_read_back_from_summary_json() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("summary.json"),
            r#"{"combinations":[{"input_len":1024,"output_len":128,"max_passing":4},{"input_len":64,"output_len":8,"max_passing":null}]}"#,
        )
        .unwrap();
        assert_eq!(
            from_summary_file(d.path()),
            vec![combo(1024, 128, Some(4)), combo(64, 8, None)]
        );
        assert!(from_summary_file(&d.path().join("nothing")).is_empty());
    }
}
