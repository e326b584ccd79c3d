//! Prefix-cache hygiene of one test: the cached prompt tokens the server reported
//! (`usage.prompt_tokens_details.cached_tokens`, [`loadgen::report::CacheUsage`]) against those
//! the workload asks for (shared prefixes, a trace's shared blocks), and a warning when the
//! server served clearly more from its cache than the workload shares: measured prompts found
//! in a cache that the warm-up or an earlier test filled, so TTFT reads low (vLLM issue 54227:
//! repeated prompts made a published TTFT 49× too low).

use serde::Serialize;

use loadgen::report::Summary;

/// Cached fraction above the expected one, in fraction points, that flags a warm cache. A chat
/// template's fixed head (one 16-token block in a 1024-token prompt is 1.6 %) stays below.
pub const WARM_MARGIN: f64 = 0.05;

/// The reuse a test's workload asks for, known before it runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExpectedCache {
    /// Prompt tokens a prefix cache should serve (client tokens).
    pub cached_tokens: u64,
    /// Prompt tokens of the measured prompts (client tokens).
    pub prompt_tokens: u64,
}

/// What a test's result says about the prefix cache, beside `cached_token_fraction`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CacheCheck {
    /// Prompt tokens of the measured prompts that the workload shares (0: no reuse asked).
    pub expected_cached_tokens: u64,
    /// `expected_cached_tokens` over the measured prompts' tokens.
    pub expected_cached_token_fraction: Option<f64>,
    /// The server reported more cached tokens than the workload shares, by over
    /// [`WARM_MARGIN`]; `None` when it reported none (nothing to judge).
    pub warm_cache: Option<bool>,
    /// Why `warm_cache` is set, for people.
    pub warm_cache_note: Option<String>,
    /// What `--reset-prefix-cache` did before the test (`None` without it).
    pub prefix_cache_reset: Option<String>,
}

impl CacheCheck {
    /// Judges the test's `summary` against what its workload `expected`.
    pub fn of(summary: &Summary, expected: ExpectedCache, reset: Option<String>) -> CacheCheck {
        let expected_fraction = (expected.prompt_tokens > 0)
            .then(|| expected.cached_tokens as f64 / expected.prompt_tokens as f64);
        let measured = summary.cache.fraction();
        // no expectation (a conversation: its reuse is its own history, unknown beforehand):
        // nothing to judge
        let warm = expected_fraction.and_then(|e| measured.map(|m| m - e > WARM_MARGIN));
        let note = (warm == Some(true)).then(|| {
            format!(
                "{:.1} % of the measured prompt tokens came from the server's prefix cache where the workload shares {:.1} %: prompts served from a cache that the warm-up or an earlier test filled (repeated prompts?), so TTFT reads low; --reset-prefix-cache, or prompts of their own per test",
                measured.unwrap_or(0.0) * 100.0,
                expected_fraction.unwrap_or(0.0) * 100.0
            )
        });
        CacheCheck {
            expected_cached_tokens: expected.cached_tokens,
            expected_cached_token_fraction: expected_fraction,
            warm_cache: warm,
            warm_cache_note: note,
            prefix_cache_reset: reset,
        }
    }

    /// Lines for the printed summary: the expectation beside the measured fraction, the reset,
    /// and the warning.
    pub fn text(&self, summary: &Summary) -> String {
        let mut t = String::new();
        if let (Some(e), Some(m)) = (
            self.expected_cached_token_fraction,
            summary.cache.fraction(),
        ) && (self.expected_cached_tokens > 0 || m > 0.0)
        {
            t.push_str(&format!(
                "{:<40} {:.1} % (measured {:.1} %)\n",
                "Cached prompt tokens expected:",
                e * 100.0,
                m * 100.0
            ));
        }
        if let Some(r) = &self.prefix_cache_reset {
            t.push_str(&format!("prefix cache reset: {r}\n"));
        }
        if let Some(n) = &self.warm_cache_note {
            t.push_str(&format!("WARNING: warm prefix cache: {n}\n"));
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loadgen::RequestRecord;

    fn summary(prompt: u32, cached: u32, n: usize) -> Summary {
        let r = RequestRecord {
            prompt_tokens_server: Some(prompt),
            cached_tokens_server: Some(cached),
            ..Default::default()
        };
        loadgen::report::summarize(&vec![r; n], &[50.0], &[])
    }

    #[test]
    fn a_cache_beyond_the_workloads_reuse_is_flagged() {
        let none = ExpectedCache {
            cached_tokens: 0,
            prompt_tokens: 1000,
        };
        // one 16-token template block per 100-token prompt would be 16 %: flagged
        let c = CacheCheck::of(&summary(100, 96, 10), none, None);
        assert_eq!(c.warm_cache, Some(true));
        assert!(c.warm_cache_note.unwrap().contains("96.0 %"));
        // a shared prefix the workload asked for is not
        let shared = ExpectedCache {
            cached_tokens: 900,
            prompt_tokens: 1000,
        };
        let c = CacheCheck::of(&summary(100, 90, 10), shared, Some("done".into()));
        assert_eq!(c.warm_cache, Some(false));
        assert_eq!(c.expected_cached_token_fraction, Some(0.9));
        // nothing reported: nothing judged
        let s = loadgen::report::summarize(&[RequestRecord::default()], &[50.0], &[]);
        assert_eq!(CacheCheck::of(&s, none, None).warm_cache, None);
        // no expectation (conversations): nothing judged either
        let c = CacheCheck::of(&summary(100, 90, 10), ExpectedCache::default(), None);
        assert_eq!(c.warm_cache, None);
    }
}
