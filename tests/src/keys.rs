//! Valid OpenSSH public keys. The API parses every key (a blob must decode to a key of its
//! type), so tests need real ones; they are made with the `ssh-key` crate the API parses with.

use ssh_key::PublicKey;
use ssh_key::public::{Ed25519PublicKey, KeyData};

/// An ed25519 public key line, distinct per `seed`, with `comment`. (Any 32 bytes are an
/// ed25519 public key as far as the OpenSSH format goes; no private key is needed.)
pub fn ed25519(seed: u8, comment: &str) -> String {
    let mut bytes = [0u8; 32];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = seed.wrapping_mul(31).wrapping_add(i as u8);
    }
    PublicKey::new(KeyData::Ed25519(Ed25519PublicKey(bytes)), comment)
        .to_openssh()
        .expect("an ed25519 key encodes")
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_parse_back_and_differ() {
        let a = super::ed25519(1, "me@host");
        let b = super::ed25519(2, "me@host");
        assert_ne!(a, b);
        assert!(a.starts_with("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5") && a.ends_with(" me@host"));
        assert!(ssh_key::PublicKey::from_openssh(&a).is_ok());
    }
}
