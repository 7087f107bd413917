//! A fast non-cryptographic hash for the tables that group rows (customer ids, identical
//! histories). The keys are a user's own data in a table that lives for one request, not
//! attacker-chosen keys of a long-lived table, so speed matters more than resistance to
//! flooding; folded multiplies still spread every input bit over the whole hash, which
//! hashbrown needs (its tag comes from the high bits, the bucket from the low ones).

pub(crate) const SEED_A: u64 = 0x9e37_79b9_7f4a_7c15;
pub(crate) const SEED_B: u64 = 0xd6e8_feb8_6659_fd93;

/// The 128-bit product folded to 64 bits: every input bit reaches both high and low bits.
pub(crate) fn fold_mul(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    (product as u64) ^ ((product >> 64) as u64)
}

/// The bytes of `bytes` (at most 8) as a little-endian word.
pub(crate) fn word(bytes: &[u8]) -> u64 {
    let mut buffer = [0u8; 8];
    buffer[..bytes.len()].copy_from_slice(bytes);
    u64::from_le_bytes(buffer)
}

/// A hash of a few words, two at a time.
pub(crate) fn hash_words(words: &[u64]) -> u64 {
    let mut hash = words.len() as u64;
    for pair in words.chunks(2) {
        let second = pair.get(1).copied().unwrap_or(0);
        hash = fold_mul(pair[0] ^ SEED_A ^ hash, second ^ SEED_B);
    }
    hash
}
