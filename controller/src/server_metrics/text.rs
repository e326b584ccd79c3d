//! The server part of a test's printed summary.

use std::fmt::Write as _;

use super::stats::ServerStats;

impl ServerStats {
    /// A few lines beside the GPU's: queue, KV cache, preemptions, prefix cache, and the token
    /// counts against the client's.
    pub fn text(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "{:-^50}",
            format!(" Server metrics ({}) ", self.server_kind.as_str())
        );
        let g = |mean: Option<f64>, max: Option<f64>, scale: f64| match (mean, max) {
            (Some(a), Some(b)) => format!("{:.1}/{:.1}", a * scale, b * scale),
            _ => "-".into(),
        };
        let _ = writeln!(
            t,
            "running {}  waiting {}  KV cache {} % (mean/max)",
            g(self.server_running_mean, self.server_running_max, 1.0),
            g(self.server_waiting_mean, self.server_waiting_max, 1.0),
            g(
                self.server_kv_cache_usage_mean,
                self.server_kv_cache_usage_max,
                100.0
            ),
        );
        let n = |v: Option<u64>| v.map_or("-".into(), |v| v.to_string());
        let _ = writeln!(
            t,
            "preemptions {}  prefix-cache hit rate {}  prompt tokens {}  generated {}  requests {}",
            n(self.server_preemptions),
            self.server_prefix_cache_hit_rate
                .map_or("-".into(), |r| format!("{:.1} %", r * 100.0)),
            n(self.server_prompt_tokens),
            n(self.server_generation_tokens),
            n(self.server_requests),
        );
        if let Some(m) = &self.server_tokens_mismatch {
            let _ = writeln!(
                t,
                "MISMATCH with the client's counts: {}",
                serde_json::to_string(m).unwrap_or_default()
            );
        }
        if let Some(note) = &self.server_metrics_note {
            let _ = writeln!(t, "note: {note}");
        }
        t
    }
}
