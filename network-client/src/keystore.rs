//! Where the gateway's Ethereum key comes from: an encrypted keystore file (Web3 Secret Storage v3, what geth and
//! go-livepeer's `-ethKeystorePath` use) or a raw private key.
//!
//! Passwords and keys are held in [`SecretString`]s: they never appear in `Debug` output, and no error message
//! repeats them. The keystore file is size-bounded and its parameters are checked before any key derivation, so a
//! hostile or corrupt file cannot exhaust memory (a huge scrypt `n`) or time (a huge PBKDF2 count).

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use alloy::signers::k256::elliptic_curve::zeroize::Zeroizing;
use alloy::signers::local::{LocalSignerError, PrivateKeySigner};
use serde::Deserialize;

use crate::pm::EthSigner;

/// The largest keystore file read. Real ones are about 500 bytes.
pub const MAX_KEYSTORE_BYTES: u64 = 64 * 1024;

/// The bound on a keystore's scrypt cost, `128 · n · r · p` bytes: its memory (`128 · n · r`) filled `p` times.
/// geth's standard parameters (n = 2¹⁸, r = 8, p = 1) cost 256 MiB.
const MAX_SCRYPT_BYTES: u64 = 1 << 30;

/// The most PBKDF2 rounds a keystore may ask for: 16 times the usual 262,144.
const MAX_PBKDF2_ROUNDS: u64 = 1 << 22;

/// A password or key. `Debug` prints `<redacted>`; the memory is zeroed on drop.
#[derive(Clone)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(Zeroizing::new(secret.into()))
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for SecretString {
    fn from(secret: String) -> Self {
        Self::new(secret)
    }
}

impl From<&str> for SecretString {
    fn from(secret: &str) -> Self {
        Self::new(secret)
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where the gateway's signing key comes from.
#[derive(Clone, Debug)]
pub enum KeySource {
    /// A Web3 Secret Storage v3 JSON file (scrypt or PBKDF2, AES-128-CTR) and its password.
    KeystoreFile {
        /// The keystore file.
        path: PathBuf,
        /// Its password (may be empty).
        password: SecretString,
    },
    /// A 32-byte private key as 64 hex digits, `0x` optional, surrounding whitespace ignored.
    PrivateKey(SecretString),
}

/// Why the key could not be loaded. No variant carries or prints the password or the key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The keystore file could not be opened or read.
    #[error("cannot read the keystore file {}: {source}", path.display())]
    Read {
        /// The keystore file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The path is a directory, device or pipe.
    #[error("the keystore path {} is not a regular file", path.display())]
    NotAFile {
        /// The keystore path.
        path: PathBuf,
    },
    /// The file is larger than [`MAX_KEYSTORE_BYTES`].
    #[error("the keystore file {} is larger than {limit} bytes, so it is not a keystore", path.display())]
    TooLarge {
        /// The keystore file.
        path: PathBuf,
        /// [`MAX_KEYSTORE_BYTES`].
        limit: u64,
    },
    /// The file is not a Web3 Secret Storage v3 keystore this gateway can use.
    #[error("the keystore file {} is not usable: {reason}", path.display())]
    InvalidKeystore {
        /// The keystore file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The password does not open the keystore (the MAC does not match).
    #[error("wrong password for the keystore file {}", path.display())]
    WrongPassword {
        /// The keystore file.
        path: PathBuf,
    },
    /// The raw private key is not 64 hex digits, or not a valid secp256k1 key.
    #[error("the private key must be 64 hex digits (0x optional) of a valid secp256k1 key")]
    InvalidPrivateKey,
}

impl KeySource {
    /// Loads the key. Opening a keystore runs its key derivation (256 MiB of scrypt with geth's standard
    /// parameters), so async callers should call this through `spawn_blocking`.
    pub fn load(&self) -> Result<EthSigner, KeyError> {
        match self {
            Self::KeystoreFile { path, password } => load_keystore(path, password),
            Self::PrivateKey(hex) => load_private_key(hex),
        }
    }
}

fn load_private_key(hex: &SecretString) -> Result<EthSigner, KeyError> {
    let digits = hex.expose().trim();
    let digits = digits.strip_prefix("0x").unwrap_or(digits);
    let mut key = Zeroizing::new([0u8; 32]);
    alloy::hex::decode_to_slice(digits, key.as_mut_slice())
        .map_err(|_| KeyError::InvalidPrivateKey)?;
    EthSigner::from_private_key_bytes(key.as_slice()).map_err(|_| KeyError::InvalidPrivateKey)
}

fn load_keystore(path: &Path, password: &SecretString) -> Result<EthSigner, KeyError> {
    let read_error = |source| KeyError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    if !file.metadata().map_err(read_error)?.is_file() {
        return Err(KeyError::NotAFile {
            path: path.to_owned(),
        });
    }
    // Bounded by the read itself, not by the size reported before it.
    let mut contents = Vec::new();
    file.take(MAX_KEYSTORE_BYTES + 1)
        .read_to_end(&mut contents)
        .map_err(read_error)?;
    if contents.len() as u64 > MAX_KEYSTORE_BYTES {
        return Err(KeyError::TooLarge {
            path: path.to_owned(),
            limit: MAX_KEYSTORE_BYTES,
        });
    }
    let invalid = |reason: String| KeyError::InvalidKeystore {
        path: path.to_owned(),
        reason,
    };
    check_keystore(&contents).map_err(invalid)?;

    // alloy decrypts from a path only, so the file is read a second time; what it reads is the gateway
    // operator's own file, which was just checked.

    let signer = PrivateKeySigner::decrypt_keystore(path, password.expose().as_bytes()).map_err(
        |e| match e {
            // eth-keystore is not re-exported, so its MAC mismatch is recognised by its message.
            LocalSignerError::EthKeystoreError(e) if e.to_string() == "Mac Mismatch" => {
                KeyError::WrongPassword {
                    path: path.to_owned(),
                }
            }
            // The remaining errors (I/O, scrypt or AES parameters, an invalid decrypted scalar) name no secret.
            e => invalid(e.to_string()),
        },
    )?;
    Ok(EthSigner::from_local_signer(signer))
}

/// The parts of a v3 keystore that decide whether decrypting it is safe and meaningful.
#[derive(Deserialize)]
struct KeystoreJson {
    version: u64,
    crypto: CryptoJson,
}

#[derive(Deserialize)]
struct CryptoJson {
    cipher: String,
    cipherparams: CipherParams,
    ciphertext: String,
    kdf: String,
    kdfparams: KdfParams,
    mac: String,
}

#[derive(Deserialize)]
struct CipherParams {
    iv: String,
}

/// scrypt has `n`, `r`, `p`; PBKDF2 has `c` and `prf`.
#[derive(Deserialize)]
struct KdfParams {
    dklen: u64,
    salt: String,
    n: Option<u64>,
    r: Option<u64>,
    p: Option<u64>,
    c: Option<u64>,
    prf: Option<String>,
}

/// Checks a keystore's structure and bounds its key derivation cost. The reasons never quote the file: a
/// misplaced raw key file must not end up in a log.
fn check_keystore(contents: &[u8]) -> Result<(), String> {
    let keystore: KeystoreJson = serde_json::from_slice(contents).map_err(|e| {
        format!(
            "not a Web3 Secret Storage JSON document (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    if keystore.version != 3 {
        return Err(format!(
            "version {} (only version 3 is supported)",
            keystore.version
        ));
    }
    let crypto = &keystore.crypto;
    if crypto.cipher != "aes-128-ctr" {
        return Err("unsupported cipher (only aes-128-ctr)".to_owned());
    }
    hex_len("crypto.cipherparams.iv", &crypto.cipherparams.iv, Some(16))?;
    hex_len("crypto.ciphertext", &crypto.ciphertext, Some(32))?;
    hex_len("crypto.mac", &crypto.mac, Some(32))?;
    let params = &crypto.kdfparams;
    hex_len("crypto.kdfparams.salt", &params.salt, None)?;
    if params.dklen != 32 {
        return Err(format!("kdfparams.dklen is {}, expected 32", params.dklen));
    }
    match crypto.kdf.as_str() {
        "scrypt" => {
            let (Some(n), Some(r), Some(p)) = (params.n, params.r, params.p) else {
                return Err("scrypt needs kdfparams n, r and p".to_owned());
            };
            if n < 2 || !n.is_power_of_two() || n > u64::from(u32::MAX) || r == 0 || p == 0 {
                return Err(format!("invalid scrypt parameters n={n}, r={r}, p={p}"));
            }
            let cost = 128u64.saturating_mul(n).saturating_mul(r).saturating_mul(p);
            if cost > MAX_SCRYPT_BYTES {
                return Err(format!(
                    "scrypt parameters n={n}, r={r}, p={p} cost more than {MAX_SCRYPT_BYTES} bytes"
                ));
            }
        }
        "pbkdf2" => {
            if params.prf.as_deref() != Some("hmac-sha256") {
                return Err("unsupported PBKDF2 prf (only hmac-sha256)".to_owned());
            }
            match params.c {
                Some(c) if (1..=MAX_PBKDF2_ROUNDS).contains(&c) => {}
                Some(c) => {
                    return Err(format!(
                        "PBKDF2 count {c} is outside 1..={MAX_PBKDF2_ROUNDS}"
                    ));
                }
                None => return Err("PBKDF2 needs kdfparams c".to_owned()),
            }
        }
        _ => return Err("unsupported kdf (only scrypt and pbkdf2)".to_owned()),
    }
    Ok(())
}

/// Checks that `value` is hex, of `expected` bytes if given.
fn hex_len(field: &str, value: &str, expected: Option<usize>) -> Result<(), String> {
    let bytes = alloy::hex::decode(value).map_err(|_| format!("{field} is not hex"))?;
    match expected {
        Some(len) if bytes.len() != len => {
            Err(format!("{field} is {} bytes, expected {len}", bytes.len()))
        }
        _ => Ok(()),
    }
}
