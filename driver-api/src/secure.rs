//! Trove's secure RPC codec (`trove/common/crypto_utils.py`,
//! `trove/common/rpc/secure_serializer.py`, `conductor_guest_serializer.py`).
//!
//! Each entity is JSON text, padded PKCS#7-style to 16 bytes, encrypted with
//! AES-256-CBC under a key made of the 32 ASCII bytes of the hex MD5 of the
//! instance key, with a random 16-byte IV prepended, then base64-encoded.

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::Engine as _;
use md5::{Digest, Md5};
use serde_json::{Map, Value};

type Encryptor = cbc::Encryptor<aes::Aes256>;
type Decryptor = cbc::Decryptor<aes::Aes256>;

const IV_LEN: usize = 16;

/// Why an entity could not be decrypted. Never carries key material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecureError {
    /// The value is not base64 text.
    #[error("not base64 text")]
    NotBase64,
    /// Too short, not a whole number of blocks, or bad padding: almost
    /// always a different key on the other side.
    #[error("ciphertext does not decrypt with this instance key")]
    BadCiphertext,
    /// Decrypted, but the plaintext is not JSON.
    #[error("decrypted text is not JSON (wrong instance key?)")]
    NotJson,
}

/// The AES key derived from `instance_rpc_encr_key`. Its `Debug` output
/// never shows the key.
#[derive(Clone)]
pub struct RpcKey {
    aes_key: [u8; 32],
}

impl std::fmt::Debug for RpcKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RpcKey(***)")
    }
}

impl RpcKey {
    /// Derives the AES key from the instance key text, as Trove does.
    pub fn new(instance_key: &str) -> Self {
        let digest = Md5::digest(instance_key.as_bytes());
        let mut aes_key = [0u8; 32];
        for (i, byte) in digest.iter().enumerate() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            aes_key[2 * i] = HEX[usize::from(byte >> 4)];
            aes_key[2 * i + 1] = HEX[usize::from(byte & 0x0f)];
        }
        Self { aes_key }
    }

    /// Encrypts raw bytes with a fresh random IV; returns base64 text.
    pub fn encrypt_bytes(&self, plain: &[u8]) -> String {
        let mut iv = [0u8; IV_LEN];
        // getrandom only fails when the OS has no entropy source at all;
        // a guest without one cannot do secure RPC anyway.
        getrandom::getrandom(&mut iv).expect("OS random source");
        self.encrypt_with_iv(plain, iv)
    }

    fn encrypt_with_iv(&self, plain: &[u8], iv: [u8; IV_LEN]) -> String {
        let cipher =
            Encryptor::new(&self.aes_key.into(), &iv.into()).encrypt_padded_vec_mut::<Pkcs7>(plain);
        let mut out = Vec::with_capacity(IV_LEN + cipher.len());
        out.extend_from_slice(&iv);
        out.extend_from_slice(&cipher);
        base64::engine::general_purpose::STANDARD.encode(out)
    }

    /// Decrypts base64 text produced by [`RpcKey::encrypt_bytes`] or by Trove.
    pub fn decrypt_bytes(&self, text: &str) -> Result<Vec<u8>, SecureError> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| SecureError::NotBase64)?;
        if raw.len() < 2 * IV_LEN || raw.len() % IV_LEN != 0 {
            return Err(SecureError::BadCiphertext);
        }
        let (iv, body) = raw.split_at(IV_LEN);
        let iv: [u8; IV_LEN] = iv.try_into().map_err(|_| SecureError::BadCiphertext)?;
        Decryptor::new(&self.aes_key.into(), &iv.into())
            .decrypt_padded_vec_mut::<Pkcs7>(body)
            .map_err(|_| SecureError::BadCiphertext)
    }

    /// Serializes an entity the way `SecureSerializer._serialize_entity` does.
    pub fn encrypt_json(&self, value: &Value) -> String {
        self.encrypt_bytes(value.to_string().as_bytes())
    }

    /// Reverses [`RpcKey::encrypt_json`].
    pub fn decrypt_json(&self, text: &str) -> Result<Value, SecureError> {
        let plain = self.decrypt_bytes(text)?;
        serde_json::from_slice(&plain).map_err(|_| SecureError::NotJson)
    }
}

/// How the guest serializes and deserializes RPC entities: encrypted with
/// the instance key when one is configured, plain otherwise (exactly as
/// Trove's `SecureSerializer` does with `key=None`).
#[derive(Clone, Debug, Default)]
pub struct SecureCodec {
    key: Option<RpcKey>,
}

impl SecureCodec {
    /// A codec for `instance_rpc_encr_key`; `None` (or an empty key) means
    /// plain messages.
    pub fn new(instance_key: Option<&str>) -> Self {
        Self {
            key: instance_key.filter(|k| !k.is_empty()).map(RpcKey::new),
        }
    }

    /// Whether messages are encrypted.
    pub fn is_secure(&self) -> bool {
        self.key.is_some()
    }

    /// One incoming argument value. Upstream decrypts string values and
    /// leaves non-strings as they are; a string that does not decrypt is an
    /// error here (upstream would silently hand the ciphertext to the
    /// method, which then fails in a confusing way).
    pub fn decode_entity(&self, value: Value) -> Result<Value, SecureError> {
        match (&self.key, value) {
            (Some(key), Value::String(text)) => key.decrypt_json(&text),
            (_, other) => Ok(other),
        }
    }

    /// One outgoing entity (a call result).
    pub fn encode_entity(&self, value: &Value) -> Value {
        match &self.key {
            Some(key) => Value::String(key.encrypt_json(value)),
            None => value.clone(),
        }
    }

    /// The incoming context: `{"context": <ciphertext>}` when secure.
    pub fn decode_context(
        &self,
        context: Map<String, Value>,
    ) -> Result<Map<String, Value>, SecureError> {
        let Some(key) = &self.key else {
            return Ok(context);
        };
        match context.get("context") {
            Some(Value::String(text)) => match key.decrypt_json(text)? {
                Value::Object(map) => Ok(map),
                _ => Err(SecureError::NotJson),
            },
            // A plain context (a peer with no key): upstream accepts it too.
            _ => Ok(context),
        }
    }

    /// An entity cast to the conductor (`ConductorGuestSerializer`): the JSON
    /// text `{"entity": <ciphertext>, "csz-instance-id": <guest id>}`.
    pub fn encode_conductor_entity(&self, guest_id: &str, value: &Value) -> Value {
        match &self.key {
            Some(key) => Value::String(
                serde_json::json!({"entity": key.encrypt_json(value), "csz-instance-id": guest_id})
                    .to_string(),
            ),
            None => value.clone(),
        }
    }

    /// The context of a conductor cast.
    pub fn encode_conductor_context(
        &self,
        guest_id: &str,
        context: &Map<String, Value>,
    ) -> Map<String, Value> {
        match &self.key {
            Some(key) => {
                let mut out = Map::new();
                out.insert(
                    "context".into(),
                    Value::String(key.encrypt_json(&Value::Object(context.clone()))),
                );
                out.insert("csz-instance-id".into(), Value::String(guest_id.to_owned()));
                out
            }
            None => context.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn aes_key_is_hex_md5_of_instance_key() {
        // md5("secret") = 5ebe2294ecd0e0f08eab7690d2a6ee69
        let key = RpcKey::new("secret");
        assert_eq!(&key.aes_key, b"5ebe2294ecd0e0f08eab7690d2a6ee69");
    }

    #[test]
    fn round_trip_and_random_iv() {
        let key = RpcKey::new("k");
        let value = json!({"a": [1, 2, "three"], "b": null});
        let one = key.encrypt_json(&value);
        let two = key.encrypt_json(&value);
        assert_ne!(one, two, "each encryption must use a fresh IV");
        assert_eq!(key.decrypt_json(&one).unwrap(), value);
    }

    #[test]
    fn known_vector_from_fixed_iv() {
        // Produced by trove.common.crypto_utils with os.urandom patched to
        // return 16 zero bytes: encode_data(encrypt_data('"ping"', 'key')).
        let key = RpcKey::new("key");
        let text = key.encrypt_with_iv(b"\"ping\"", [0u8; 16]);
        assert_eq!(text, "AAAAAAAAAAAAAAAAAAAAAC7XUTEPAH84yCmfOtMkwSU=");
        assert_eq!(key.decrypt_json(&text).unwrap(), json!("ping"));
    }

    #[test]
    fn wrong_key_is_an_error_not_garbage() {
        let text = RpcKey::new("right").encrypt_json(&json!({"x": 1}));
        let err = RpcKey::new("wrong").decrypt_json(&text).unwrap_err();
        assert!(matches!(
            err,
            SecureError::BadCiphertext | SecureError::NotJson
        ));
    }

    #[test]
    fn short_and_non_base64_inputs_are_rejected() {
        let key = RpcKey::new("k");
        assert_eq!(key.decrypt_bytes("%%%"), Err(SecureError::NotBase64));
        assert_eq!(key.decrypt_bytes("AAAA"), Err(SecureError::BadCiphertext));
    }

    #[test]
    fn plain_codec_passes_values_through() {
        let codec = SecureCodec::new(None);
        assert!(!codec.is_secure());
        assert_eq!(codec.decode_entity(json!("x")).unwrap(), json!("x"));
        assert_eq!(codec.encode_entity(&json!(1)), json!(1));
        assert!(!SecureCodec::new(Some("")).is_secure());
    }

    #[test]
    fn secure_codec_leaves_non_strings_alone_like_upstream() {
        let codec = SecureCodec::new(Some("k"));
        assert_eq!(codec.decode_entity(json!(5)).unwrap(), json!(5));
        assert_eq!(codec.decode_entity(json!(null)).unwrap(), json!(null));
    }

    #[test]
    fn conductor_entity_shape() {
        let codec = SecureCodec::new(Some("k"));
        let Value::String(text) =
            codec.encode_conductor_entity("g1", &json!({"service_status": "healthy"}))
        else {
            panic!("conductor entity must be JSON text");
        };
        let outer: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(outer["csz-instance-id"], "g1");
        let inner = RpcKey::new("k")
            .decrypt_json(outer["entity"].as_str().unwrap())
            .unwrap();
        assert_eq!(inner, json!({"service_status": "healthy"}));
    }

    #[test]
    fn debug_never_shows_the_key() {
        assert_eq!(format!("{:?}", RpcKey::new("topsecret")), "RpcKey(***)");
        assert!(!format!("{:?}", SecureCodec::new(Some("topsecret"))).contains("topsecret"));
    }
}
