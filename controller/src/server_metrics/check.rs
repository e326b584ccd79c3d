//! The cross-check that makes the numbers trustworthy: the server's token and request counter
//! deltas over a test against the client's totals.

use super::stats::{Mismatch, Pair, ServerStats};

/// What the client counted over the same window.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ClientTotals {
    pub prompt_tokens: u64,
    pub output_tokens: u64,
    /// Completed and failed requests.
    pub requests: u64,
    /// A bound on the tokens (prompt or generated) of the requests in flight at the window's
    /// edges, which one side may count and the other not: the token tolerance. 0 when the
    /// samples bracket the run exactly.
    pub in_flight_at_edges: u64,
    /// The same bound in requests: the request tolerance.
    pub requests_in_flight_at_edges: u64,
}

/// The quantities where the server's delta and the client's total differ by more than the
/// requests in flight at the edges allow; `None` when all agree (or the server has no counter).
pub fn cross_check(stats: &ServerStats, client: &ClientTotals) -> Option<Mismatch> {
    let differs = |server: Option<u64>, client: u64, tolerance: u64| {
        server
            .filter(|s| s.abs_diff(client) > tolerance)
            .map(|server| Pair { server, client })
    };
    let m = Mismatch {
        prompt_tokens: differs(
            stats.server_prompt_tokens,
            client.prompt_tokens,
            client.in_flight_at_edges,
        ),
        generation_tokens: differs(
            stats.server_generation_tokens,
            client.output_tokens,
            client.in_flight_at_edges,
        ),
        requests: differs(
            stats.server_requests,
            client.requests,
            client.requests_in_flight_at_edges,
        ),
    };
    (m != Mismatch::default()).then_some(m)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::log::ScrapeLog;
    use super::*;

    fn stats(prompt: Option<u64>, generated: Option<u64>, requests: Option<u64>) -> ServerStats {
        let mut s = ScrapeLog::new(vec![], Duration::from_secs(1)).stats(0, 1);
        s.server_prompt_tokens = prompt;
        s.server_generation_tokens = generated;
        s.server_requests = requests;
        s
    }

    const CLIENT: ClientTotals = ClientTotals {
        prompt_tokens: 51200,
        output_tokens: 12800,
        requests: 100,
        in_flight_at_edges: 0,
        requests_in_flight_at_edges: 0,
    };

    #[test]
    fn equal_totals_agree() {
        let s = stats(Some(51200), Some(12800), Some(100));
        assert_eq!(cross_check(&s, &CLIENT), None);
        // a server without a request counter (llama.cpp) is not a mismatch
        assert_eq!(
            cross_check(&stats(Some(51200), Some(12800), None), &CLIENT),
            None
        );
    }

    #[test]
    fn a_mismatch_lists_only_what_differs_with_both_values() {
        let s = stats(Some(51200), Some(12928), Some(100));
        let m = cross_check(&s, &CLIENT).unwrap();
        assert_eq!(
            serde_json::to_value(m).unwrap(),
            serde_json::json!({"generation_tokens": {"server": 12928, "client": 12800}})
        );
        let tolerant = ClientTotals {
            in_flight_at_edges: 128,
            ..CLIENT
        };
        assert_eq!(cross_check(&s, &tolerant), None);
        let short = stats(Some(51000), Some(12800), Some(98));
        let m = cross_check(&short, &CLIENT).unwrap();
        assert_eq!(
            m.prompt_tokens,
            Some(Pair {
                server: 51000,
                client: 51200
            })
        );
        assert_eq!(
            m.requests,
            Some(Pair {
                server: 98,
                client: 100
            })
        );
        assert_eq!(m.generation_tokens, None);
    }
}
