//! Shared prefixes (`--prefix-len P --prefix-groups G`): G distinct system prompts of exactly P
//! tokens; each prompt starts with one of them, drawn with the run's seed. The draw is a
//! function of the seed alone, so the reuse the workload asks for — hence the cached prompt
//! tokens a prefix-caching server should report — is known before a request is sent
//! ([`expected_cached_tokens`]).

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::{DatasetError, exact_text};
use crate::tokenizer::Tokenizer;

/// Mixed into the seed for the group draw (independent of the prompts' own draws).
const GROUP_SALT: u64 = 0x5eed_9a0f_9e37_79b9;

/// The `groups` prefixes of `len` tokens each (none when `len` is 0), drawn from `rng`.
pub(super) async fn prefixes(
    tok: &Tokenizer,
    len: u32,
    groups: u32,
    pool: &[u32],
    rng: &mut StdRng,
) -> Result<Vec<String>, DatasetError> {
    if groups == 0 {
        return Err(DatasetError::Invalid {
            flag: "--prefix-groups",
            rule: "at least 1",
            value: "0".into(),
        });
    }
    if len == 0 && groups > 1 {
        return Err(DatasetError::Invalid {
            flag: "--prefix-groups",
            rule: "1 without --prefix-len (groups of what?)",
            value: groups.to_string(),
        });
    }
    let count = if len > 0 { groups } else { 0 };
    let mut out = Vec::new();
    for _ in 0..count {
        let ids: Vec<u32> = (0..len)
            .map(|_| pool[rng.random_range(0..pool.len())])
            .collect();
        out.push(exact_text(tok, "", ids, len, pool, rng).await?.0);
    }
    Ok(out)
}

/// The prefix group of each of `n` prompts (all 0 with one group).
pub fn groups(seed: u64, n: usize, groups: u32) -> Vec<u32> {
    if groups <= 1 {
        return vec![0; n];
    }
    let mut rng = StdRng::seed_from_u64(seed ^ GROUP_SALT);
    (0..n).map(|_| rng.random_range(0..groups)).collect()
}

/// The prompt tokens a prefix cache should serve for the `measured` prompts: `len` for each one
/// whose group was sent before it — by the warm-up (its `warmup` distinct prompts, built after
/// the measured ones and sent first) or by an earlier measured prompt.
pub fn expected_cached_tokens(
    seed: u64,
    len: u32,
    n_groups: u32,
    measured: usize,
    warmup: usize,
) -> u64 {
    if len == 0 {
        return 0;
    }
    let g = groups(seed, measured + warmup, n_groups);
    let mut warm = vec![false; n_groups.max(1) as usize];
    for &x in &g[measured..] {
        warm[x as usize] = true;
    }
    let mut hits = 0u64;
    for &x in &g[..measured] {
        if std::mem::replace(&mut warm[x as usize], true) {
            hits += u64::from(len);
        }
    }
    hits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_seeded_and_the_expectation_counts_first_uses() {
        assert_eq!(groups(7, 50, 4), groups(7, 50, 4));
        assert_ne!(groups(7, 50, 4), groups(8, 50, 4));
        assert!(groups(7, 50, 4).iter().all(|&g| g < 4));
        // one group, no warm-up: every prompt but the first hits
        assert_eq!(expected_cached_tokens(1, 100, 1, 10, 0), 900);
        // a warm-up prompt warms the group: all ten hit
        assert_eq!(expected_cached_tokens(1, 100, 1, 10, 1), 1000);
        // four groups, no warm-up: the first use of each group used misses
        let g = groups(3, 40, 4);
        let used = (0..4).filter(|x| g.contains(x)).count() as u64;
        assert_eq!(expected_cached_tokens(3, 10, 4, 40, 0), (40 - used) * 10);
        assert_eq!(expected_cached_tokens(3, 0, 4, 40, 0), 0);
    }
}
