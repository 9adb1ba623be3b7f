//! Identifiers in Studio's formats.
//!
//! - Resource ids: lowercase UUIDv4.
//! - Stream keys: `xxxx-xxxx-xxxx-xxxx`, base36, the first four characters taken from the owning
//!   resource's id (Studio's "shard key"), the other twelve random.
//! - Playback ids: the same without dashes, 16 characters `[0-9a-z]`.

use rand::Rng;

const BASE36: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// A new lowercase UUIDv4.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn random_base36(len: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| BASE36[rng.gen_range(0..BASE36.len())] as char)
        .collect()
}

/// 16 characters: the first four of `resource_id`, then twelve random base36 characters.
fn key_chars(resource_id: &str) -> String {
    let shard: String = resource_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(4)
        .collect();
    let mut key = shard.to_ascii_lowercase();
    key.push_str(&random_base36(16 - key.len()));
    key
}

/// A stream key for the stream `stream_id`: `xxxx-xxxx-xxxx-xxxx`.
pub fn new_stream_key(stream_id: &str) -> String {
    let chars = key_chars(stream_id);
    format!(
        "{}-{}-{}-{}",
        &chars[0..4],
        &chars[4..8],
        &chars[8..12],
        &chars[12..16]
    )
}

/// A playback id for the resource `resource_id`: 16 characters `[0-9a-z]`.
pub fn new_playback_id(resource_id: &str) -> String {
    key_chars(resource_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_key_has_studio_shape_and_shard_prefix() {
        let id = new_id();
        let key = new_stream_key(&id);
        assert_eq!(key.len(), 19);
        assert_eq!(&key[0..4], &id[0..4]);
        let parts: Vec<&str> = key.split('-').collect();
        assert_eq!(parts.len(), 4);
        assert!(
            parts
                .iter()
                .all(|p| p.len() == 4 && p.bytes().all(|b| BASE36.contains(&b)))
        );
    }

    #[test]
    fn playback_ids_are_16_base36_chars_and_differ() {
        let id = new_id();
        let a = new_playback_id(&id);
        let b = new_playback_id(&id);
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|c| BASE36.contains(&c)));
        assert_eq!(&a[0..4], &id[0..4]);
        assert_ne!(a, b);
    }
}
