//! The simulator's prefix cache (`--prefix-cache-tokens`, off by default): an LRU of
//! hashed blocks of [`BLOCK_TOKENS`] prompt tokens, modelled on vLLM's automatic prefix
//! caching (`vllm/v1/core/kv_cache_manager.py`, `KVCacheManager.get_computed_blocks`):
//!
//! * Only full blocks are cached; block `i`'s hash chains the hash of block `i - 1`, so a
//!   block hits only when the whole prefix before it matches too.
//! * A lookup walks the blocks in order and stops at the first miss; it never covers the
//!   sequence's last token (the step must compute at least one token to produce the next
//!   one), so a fully cached prompt of `P` tokens hits `⌊(P − 1) / 16⌋ × 16` tokens.
//! * A sequence's blocks are cached when it is admitted, so a second identical prompt
//!   admitted in the same step already hits.
//!
//! Unlike vLLM the cache sits beside the simulated KV cache with its own capacity: a hit
//! saves its tokens' prefill time, not KV space. Only prompt tokens are cached (the
//! generated tokens are random and never repeat).

use std::collections::{BTreeMap, HashMap};

use super::faults::mix;

/// Tokens per cached block (vLLM's default `--block-size`).
pub(crate) const BLOCK_TOKENS: usize = 16;

/// The chained hashes of the full blocks of `ids` (a trailing partial block has none).
pub(crate) fn block_hashes(ids: &[u32]) -> Vec<u64> {
    let mut h = 0x9E3D_C0DE_B10C_0001_u64;
    ids.chunks_exact(BLOCK_TOKENS)
        .map(|block| {
            for &t in block {
                h = mix(h, u64::from(t));
            }
            h
        })
        .collect()
}

/// An LRU of block hashes holding at most `capacity_blocks` blocks.
#[derive(Debug)]
pub(crate) struct PrefixCache {
    capacity_blocks: usize,
    tick: u64,
    /// Block hash → the tick of its last use.
    last_use: HashMap<u64, u64>,
    /// Tick → block hash, oldest first (the eviction order).
    by_age: BTreeMap<u64, u64>,
}

impl PrefixCache {
    /// A cache of `capacity_tokens` tokens (whole blocks), or `None` when 0 (off).
    pub(crate) fn new(capacity_tokens: usize) -> Option<Self> {
        (capacity_tokens > 0).then(|| Self {
            capacity_blocks: capacity_tokens / BLOCK_TOKENS,
            tick: 0,
            last_use: HashMap::new(),
            by_age: BTreeMap::new(),
        })
    }

    /// Looks up a sequence's `blocks` at its admission and then caches them all as the most
    /// recently used; returns the tokens found, the longest cached run of leading blocks
    /// within the first `max_hit_tokens` tokens.
    pub(crate) fn admit(&mut self, blocks: &[u64], max_hit_tokens: usize) -> usize {
        let usable = (max_hit_tokens / BLOCK_TOKENS).min(blocks.len());
        let hits = blocks[..usable]
            .iter()
            .take_while(|h| self.last_use.contains_key(h))
            .count();
        self.touch(blocks);
        hits * BLOCK_TOKENS
    }

    /// Forgets every block (`POST /reset_prefix_cache`).
    pub(crate) fn clear(&mut self) {
        self.last_use.clear();
        self.by_age.clear();
    }

    /// Marks `blocks` used now, the first one the most recently: a chain's tail is evicted
    /// before its head (vLLM frees a request's blocks in reverse order for the same reason).
    fn touch(&mut self, blocks: &[u64]) {
        let n = blocks.len() as u64;
        for (i, &h) in blocks.iter().enumerate() {
            let t = self.tick + (n - 1 - i as u64);
            if let Some(old) = self.last_use.insert(h, t) {
                self.by_age.remove(&old);
            }
            self.by_age.insert(t, h);
        }
        self.tick += n;
        while self.last_use.len() > self.capacity_blocks {
            let Some((_, h)) = self.by_age.pop_first() else {
                break;
            };
            self.last_use.remove(&h);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize, salt: u32) -> Vec<u32> {
        (0..n as u32).map(|i| i * 7 + salt).collect()
    }

    #[test]
    fn hashes_chain_and_skip_the_partial_block() {
        let a = block_hashes(&ids(40, 0));
        assert_eq!(a.len(), 2);
        let mut other = ids(40, 0);
        other[3] += 1;
        let b = block_hashes(&other);
        // Same second block's tokens, different first block: both hashes differ.
        assert!(a[0] != b[0] && a[1] != b[1]);
        assert_eq!(block_hashes(&ids(32, 0)), a);
        assert!(block_hashes(&ids(15, 0)).is_empty());
    }

    #[test]
    fn hits_are_leading_full_blocks_short_of_the_last_token() {
        let mut c = PrefixCache::new(1024).unwrap();
        let p = block_hashes(&ids(100, 0)); // 6 full blocks
        assert_eq!(c.admit(&p, 99), 0);
        assert_eq!(c.admit(&p, 99), 96);
        // A 96-token prompt: 6 blocks cached but the last token is computed: 5 blocks hit.
        let q = block_hashes(&ids(96, 0));
        assert_eq!(c.admit(&q, 95), 80);
        // A different first block: nothing hits although the later tokens repeat.
        let mut r = ids(100, 0);
        r[0] = 9999;
        assert_eq!(c.admit(&block_hashes(&r), 99), 0);
        assert!(PrefixCache::new(0).is_none());
    }

    #[test]
    fn lru_evicts_the_oldest_chain_tail_first() {
        // Room for 4 blocks; each prompt has 3.
        let mut c = PrefixCache::new(4 * BLOCK_TOKENS).unwrap();
        let a = block_hashes(&ids(48, 1));
        let b = block_hashes(&ids(48, 2));
        c.admit(&a, 47);
        c.admit(&b, 47); // evicts a's two tail blocks, keeps a's head
        assert_eq!(c.last_use.len(), 4);
        assert_eq!(c.admit(&a, 100), 16);
        // a was just used: b's tail went this time, b's head stays.
        assert_eq!(c.admit(&b, 100), 16);
    }
}
