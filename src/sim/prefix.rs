//! Automatic prefix caching with vLLM V1's block semantics.
//!
//! A prompt is cut into full blocks of `block_size` tokens; block `i`'s hash chains the hash of
//! block `i - 1` with the block's tokens (the first block starts from the served model's name,
//! as vLLM mixes a LoRA adapter into its block hashes), so two prompts share block `i` only if
//! they agree on every token up to the end of it. A partial last block is never cached.
//!
//! The simulator sees text, not token ids: a token is a whitespace-separated word (as in
//! [`super::api::count_tokens`]), and a prompt given as token ids hashes the ids. A chat request
//! hashes the words of every message in order, so a conversation whose history grows shares
//! the blocks of its earlier turns.
//!
//! The cache keeps each computed full prompt block, with a reference count of the running
//! sequences that use it. A block nobody references stays cached but counts as free; when a new
//! block is needed and no uncached free block is left, the least recently released cached block
//! is evicted (vLLM's free-block queue).

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};

/// Chained hashes of the full blocks of `tokens` for `model` (see the module docs).
pub fn block_hashes<'a, T: Hash + ?Sized + 'a>(
    model: &str,
    tokens: impl IntoIterator<Item = &'a T>,
    block_size: usize,
) -> Vec<u64> {
    let mut out = Vec::new();
    let mut parent = {
        let mut h = DefaultHasher::new();
        model.hash(&mut h);
        h.finish()
    };
    let mut h = DefaultHasher::new();
    parent.hash(&mut h);
    let mut in_block = 0;
    for t in tokens {
        t.hash(&mut h);
        in_block += 1;
        if in_block == block_size {
            parent = h.finish();
            out.push(parent);
            h = DefaultHasher::new();
            parent.hash(&mut h);
            in_block = 0;
        }
    }
    out
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Running sequences holding this block.
    refs: u32,
    /// Release order while `refs == 0` (key in `evictable`).
    stamp: u64,
}

/// The cached blocks of one engine.
#[derive(Debug, Default)]
pub struct PrefixCache {
    entries: HashMap<u64, Entry>,
    /// Unreferenced cached blocks by release order (oldest first).
    evictable: BTreeMap<u64, u64>,
    tick: u64,
}

impl PrefixCache {
    /// How many leading blocks of `hashes` (at most `max_blocks`) are cached, and how many of
    /// those are unreferenced (taking them uses up free blocks).
    pub fn lookup(&self, hashes: &[u64], max_blocks: usize) -> (usize, usize) {
        let mut hits = 0;
        let mut idle = 0;
        for h in hashes.iter().take(max_blocks) {
            match self.entries.get(h) {
                Some(e) => {
                    hits += 1;
                    idle += usize::from(e.refs == 0);
                }
                None => break,
            }
        }
        (hits, idle)
    }

    /// Takes a reference on each of `hashes` (all cached, from [`PrefixCache::lookup`]).
    pub fn acquire(&mut self, hashes: &[u64]) {
        for h in hashes {
            if let Some(e) = self.entries.get_mut(h) {
                if e.refs == 0 {
                    self.evictable.remove(&e.stamp);
                }
                e.refs += 1;
            }
        }
    }

    /// Caches a block just computed by a sequence that keeps a reference on it. False when a
    /// block with this hash is already cached (the sequence keeps its own copy).
    pub fn insert(&mut self, hash: u64) -> bool {
        if self.entries.contains_key(&hash) {
            return false;
        }
        self.entries.insert(hash, Entry { refs: 1, stamp: 0 });
        true
    }

    /// Drops one reference; true when the block became unreferenced (free, still cached).
    pub fn release(&mut self, hash: u64) -> bool {
        let Some(e) = self.entries.get_mut(&hash) else {
            return false;
        };
        e.refs = e.refs.saturating_sub(1);
        if e.refs > 0 {
            return false;
        }
        self.tick += 1;
        e.stamp = self.tick;
        self.evictable.insert(self.tick, hash);
        true
    }

    /// Unreferenced cached blocks.
    pub fn idle(&self) -> usize {
        self.evictable.len()
    }

    /// Evicts the least recently released unreferenced block; false when there is none.
    pub fn evict_lru(&mut self) -> bool {
        match self.evictable.pop_first() {
            Some((_, hash)) => {
                self.entries.remove(&hash);
                true
            }
            None => false,
        }
    }

    /// Cached blocks (referenced or not).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<&str> {
        s.split_whitespace().collect()
    }

    #[test]
    fn hashes_chain_over_full_blocks() {
        let a = block_hashes("m", words("a b c d e f g"), 2);
        let b = block_hashes("m", words("a b c d x f g"), 2);
        assert_eq!(a.len(), 3, "the partial last block is not hashed");
        assert_eq!(a[..2], b[..2]);
        assert_ne!(a[2], b[2]);
        // A change in block 0 changes every later hash (chaining).
        let c = block_hashes("m", words("z b c d e f g"), 2);
        assert!(a.iter().zip(&c).all(|(x, y)| x != y));
        // Another model (a LoRA adapter) never shares blocks.
        let d = block_hashes("lora", words("a b c d e f g"), 2);
        assert_ne!(a[0], d[0]);
        let ids = block_hashes("m", &[1u64, 2, 3, 4], 2);
        assert_eq!(ids.len(), 2);
    }

    #[test]
    fn lookup_acquire_release_and_lru_eviction() {
        let mut c = PrefixCache::default();
        assert!(c.insert(1) && c.insert(2) && c.insert(3));
        assert!(!c.insert(2));
        assert_eq!(c.lookup(&[1, 2, 9, 3], 10), (2, 0));
        assert_eq!(c.lookup(&[1, 2, 3], 1), (1, 0));
        assert!(c.release(2) && c.release(1) && c.release(3));
        assert_eq!(c.idle(), 3);
        assert_eq!(c.lookup(&[1, 2, 3], 10), (3, 3));
        c.acquire(&[1]);
        assert_eq!(c.lookup(&[1, 2, 3], 10), (3, 2));
        // 2 was released first, then 3 (1 is referenced again).
        assert!(c.evict_lru());
        assert_eq!(c.lookup(&[2], 10), (0, 0));
        assert_eq!(c.lookup(&[3], 10), (1, 1));
        assert!(c.evict_lru());
        assert!(!c.evict_lru(), "a referenced block is never evicted");
        assert_eq!(c.len(), 1);
    }
}
