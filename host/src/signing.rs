//! Ed25519 signatures over a component and its manifest.
//!
//! The signed message binds both files, so neither can be swapped alone:
//! `payloom-plugin-signature-v1\n<hex sha256(component)>\n<hex sha256(manifest)>\n`.
//! The signature file (`<name>.sig`) holds `<hex public key> <hex signature>`.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

/// Domain separation for the signed message.
const SIGNATURE_DOMAIN: &str = "payloom-plugin-signature-v1";

/// The message that a signature covers.
pub fn signed_message(component: &[u8], manifest: &[u8]) -> Vec<u8> {
    format!(
        "{SIGNATURE_DOMAIN}\n{}\n{}\n",
        hex::encode(Sha256::digest(component)),
        hex::encode(Sha256::digest(manifest))
    )
    .into_bytes()
}

/// SHA-256 of [`signed_message`]: names one component + manifest pair, as the binary's
/// built-in plugins are trusted (see [`crate::HostConfig::builtin_digests`]).
pub fn pair_digest(component: &[u8], manifest: &[u8]) -> [u8; 32] {
    Sha256::digest(signed_message(component, manifest)).into()
}

/// Signs a component + manifest pair; returns the signature file's text.
pub fn sign(key: &SigningKey, component: &[u8], manifest: &[u8]) -> String {
    let signature = key.sign(&signed_message(component, manifest));
    format!(
        "{} {}\n",
        hex::encode(key.verifying_key().as_bytes()),
        hex::encode(signature.to_bytes())
    )
}

/// Parses a hex-encoded ed25519 public key.
pub fn parse_public_key(hex_key: &str) -> anyhow::Result<VerifyingKey> {
    let bytes: [u8; 32] = hex::decode(hex_key.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| anyhow::anyhow!("trusted key {hex_key:?} is not 32 hex-encoded bytes"))?;
    Ok(VerifyingKey::from_bytes(&bytes)?)
}

/// Checks a signature file against the trusted keys; returns the signer's key (hex).
pub fn verify(
    trusted: &[VerifyingKey],
    component: &[u8],
    manifest: &[u8],
    signature_file: &str,
) -> anyhow::Result<String> {
    let mut parts = signature_file.split_whitespace();
    let (Some(key_hex), Some(sig_hex), None) = (parts.next(), parts.next(), parts.next()) else {
        anyhow::bail!("signature file must hold `<public key hex> <signature hex>`");
    };
    let key = parse_public_key(key_hex)?;
    anyhow::ensure!(trusted.contains(&key), "signed by untrusted key {key_hex}");
    let sig_bytes: [u8; 64] = hex::decode(sig_hex)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| anyhow::anyhow!("signature is not 64 hex-encoded bytes"))?;
    key.verify(
        &signed_message(component, manifest),
        &Signature::from_bytes(&sig_bytes),
    )
    .map_err(|_| anyhow::anyhow!("signature does not match the component and manifest"))?;
    Ok(hex::encode(key.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_binds_component_and_manifest() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let trusted = [key.verifying_key()];
        let sig = sign(&key, b"wasm", b"toml");
        verify(&trusted, b"wasm", b"toml", &sig).unwrap();
        assert!(verify(&trusted, b"wasm!", b"toml", &sig).is_err());
        assert!(verify(&trusted, b"wasm", b"toml!", &sig).is_err());
        let other = SigningKey::from_bytes(&[8; 32]);
        assert!(verify(&[other.verifying_key()], b"wasm", b"toml", &sig).is_err());
        assert!(verify(&trusted, b"wasm", b"toml", "garbage").is_err());
    }
}
