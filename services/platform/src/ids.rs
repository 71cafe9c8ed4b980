//! Prefixed, sortable ids: `pay_01J…`. The 26 characters after the prefix are a 48-bit
//! millisecond timestamp and 80 random bits in Crockford base32, so ids sort by creation
//! time as plain strings (in SQL too) and never collide in practice.

/// Crockford's base32 alphabet: no I, L, O, U; sorts in ASCII order.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Characters after the prefix and underscore.
pub const ID_BODY_LEN: usize = 26;

/// A new id `<prefix>_<26 chars>` for an object created at `now_ms`.
pub fn new_id(prefix: &str, now_ms: i64) -> String {
    let mut random = [0u8; 10];
    getrandom::fill(&mut random).expect("the operating system's random source");
    let mut value: u128 = (u128::from(now_ms.max(0) as u64) & ((1 << 48) - 1)) << 80;
    for (i, byte) in random.iter().enumerate() {
        value |= u128::from(*byte) << (8 * (9 - i));
    }
    let mut body = [0u8; ID_BODY_LEN];
    for (i, slot) in body.iter_mut().enumerate() {
        let shift = 5 * (ID_BODY_LEN - 1 - i);
        *slot = ALPHABET[((value >> shift) & 31) as usize];
    }
    let mut id = String::with_capacity(prefix.len() + 1 + ID_BODY_LEN);
    id.push_str(prefix);
    id.push('_');
    id.push_str(std::str::from_utf8(&body).expect("alphabet is ASCII"));
    id
}

/// Whether `id` looks like an id with `prefix` (shape only; existence is the caller's job).
pub fn has_shape(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|body| {
            body.len() == ID_BODY_LEN && body.bytes().all(|b| ALPHABET.contains(&b))
        })
}

/// Random bytes from the operating system, for keys and salts.
pub fn random_bytes(len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    getrandom::fill(&mut buf).expect("the operating system's random source");
    buf
}

/// Random bytes as lowercase hex, for secrets and nonces.
pub fn random_hex(len: usize) -> String {
    hex::encode(random_bytes(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_and_keep_their_shape() {
        let a = new_id("pay", 1_700_000_000_000);
        let b = new_id("pay", 1_700_000_000_001);
        assert!(a < b, "{a} < {b}");
        assert!(has_shape(&a, "pay"));
        assert!(!has_shape(&a, "re"));
        assert!(!has_shape("pay_short", "pay"));
        assert_ne!(new_id("pay", 5), new_id("pay", 5));
    }
}
