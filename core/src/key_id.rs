//! The table store's name for a (bucket, key): a hash of fixed size, so a row costs the same
//! whatever the key's length, and stable across servers and restarts (the table is durable
//! and replicated), so it needs no secret. SHA-256 keeps collisions out of reach (2^64 work
//! for 128 bits) even for someone choosing keys.

use sha2::{Digest, Sha256};

/// The first 16 bytes of SHA-256 over (bucket length, bucket, key).
pub fn durable_key_id(bucket: &str, key: &str) -> [u8; 16] {
    let mut h = Sha256::new();
    // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
    h.update((bucket.len() as u64).to_le_bytes());
    h.update(bucket.as_bytes());
    h.update(key.as_bytes());
    let digest = h.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_depend_on_bucket_and_key_and_their_boundary() {
        let a = durable_key_id("default", "alice");
        assert_eq!(a, durable_key_id("default", "alice"));
        assert_ne!(a, durable_key_id("posts", "alice"));
        assert_ne!(a, durable_key_id("default", "Alice"));
        assert_ne!(durable_key_id("ab", "c"), durable_key_id("a", "bc"));
    }

    #[test]
    fn ids_are_stable_across_builds() {
        // The table store's rows outlive the library: this value must never change. Computed
        // independently (Python's hashlib).
        let hex: String = durable_key_id("default", "alice")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, "07b84359fcbab629268872d64532e63b");
    }
}
