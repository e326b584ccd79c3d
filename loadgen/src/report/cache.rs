//! Prefix-cache accounting from the records: the prompt tokens the server said it served from
//! its prefix cache (`usage.prompt_tokens_details.cached_tokens`), over the prompt tokens of the
//! requests that said so.

use crate::record::RequestRecord;

/// The cached prompt tokens of a run's completed requests.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CacheUsage {
    /// Completed requests whose usage carried `cached_tokens`.
    pub reported: usize,
    /// Sum of their `cached_tokens`.
    pub cached_tokens: u64,
    /// Sum of their prompt tokens.
    pub prompt_tokens: u64,
}

impl CacheUsage {
    /// Counts the completed requests of `records`.
    pub fn of<'a>(records: impl IntoIterator<Item = &'a RequestRecord>) -> CacheUsage {
        let mut c = CacheUsage::default();
        records.into_iter().for_each(|r| c.add(r));
        c
    }

    /// Counts `r` if it completed.
    pub fn add(&mut self, r: &RequestRecord) {
        if !r.ok() {
            return;
        }
        if let Some(n) = r.cached_tokens_server {
            self.reported += 1;
            self.cached_tokens += u64::from(n);
            self.prompt_tokens += u64::from(r.prompt_tokens());
        }
    }

    /// Cached prompt tokens / prompt tokens of the requests that reported them; `None` when
    /// none did (the server does not send `cached_tokens`).
    pub fn fraction(&self) -> Option<f64> {
        (self.reported > 0 && self.prompt_tokens > 0)
            .then(|| self.cached_tokens as f64 / self.prompt_tokens as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(prompt: u32, cached: Option<u32>) -> RequestRecord {
        RequestRecord {
            prompt_tokens_server: Some(prompt),
            cached_tokens_server: cached,
            ..Default::default()
        }
    }

    #[test]
    fn fraction_counts_only_the_requests_that_reported() {
        let mut failed = rec(100, Some(100));
        failed.error = Some(crate::RequestError::new(crate::ErrorKind::Timeout, "x"));
        let rs = [rec(100, Some(50)), rec(60, Some(0)), rec(40, None), failed];
        let c = CacheUsage::of(&rs);
        assert_eq!((c.reported, c.cached_tokens, c.prompt_tokens), (2, 50, 160));
        assert_eq!(c.fraction(), Some(50.0 / 160.0));
        assert_eq!(CacheUsage::of(&[rec(10, None)]).fraction(), None);
    }
}
