//! Session tokens (what the client holds) and session ids (what the store sees).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::TryRng as _;
use sha2::{Digest as _, Sha256};

use crate::error::TokenError;

/// Number of random bytes in a token: 256 bits.
const TOKEN_BYTES: usize = 32;

/// Length of a token in its cookie form: 32 bytes in unpadded base64url.
pub const TOKEN_ENCODED_LEN: usize = 43;

/// The secret a client presents to identify its session.
///
/// A token is 256 bits from the operating system's CSPRNG, carried in the cookie as
/// 43 characters of unpadded base64url. It never reaches a store: stores are keyed
/// by its [`SessionId`], the SHA-256 of the token, so a leaked store does not yield
/// usable cookies. `Debug` output is redacted so tokens cannot leak into logs.
///
/// # Examples
///
/// ```
/// use latchkey_core::SessionToken;
///
/// let token = SessionToken::generate()?;
/// let encoded = token.encode();
/// assert_eq!(encoded.len(), 43);
/// assert_eq!(SessionToken::decode(&encoded)?.id(), token.id());
/// # Ok::<(), latchkey_core::TokenError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken([u8; TOKEN_BYTES]);

impl SessionToken {
    /// Draws a fresh token from a cryptographically secure generator (ChaCha12,
    /// one per thread) that the operating system's generator seeds and
    /// periodically reseeds: no system call per token.
    ///
    /// # Errors
    ///
    /// [`TokenError::Entropy`] when the operating system cannot supply randomness.
    ///
    /// # Examples
    ///
    /// ```
    /// let a = latchkey_core::SessionToken::generate()?;
    /// let b = latchkey_core::SessionToken::generate()?;
    /// assert_ne!(a, b);
    /// # Ok::<(), latchkey_core::TokenError>(())
    /// ```
    pub fn generate() -> Result<Self, TokenError> {
        let mut bytes = [0u8; TOKEN_BYTES];
        rand::rng()
            .try_fill_bytes(&mut bytes)
            .map_err(|source| TokenError::Entropy(std::io::Error::other(source)))?;
        Ok(Self(bytes))
    }

    /// Parses a token from its cookie form.
    ///
    /// Only exactly 43 characters of the base64url alphabet are accepted, so length
    /// and alphabet are checked before any decoding work.
    ///
    /// # Errors
    ///
    /// [`TokenError::Malformed`] for any other input.
    ///
    /// # Examples
    ///
    /// ```
    /// use latchkey_core::SessionToken;
    ///
    /// assert!(SessionToken::decode("too-short").is_err());
    /// assert!(SessionToken::decode(&"!".repeat(43)).is_err());
    /// ```
    pub fn decode(encoded: &str) -> Result<Self, TokenError> {
        if encoded.len() != TOKEN_ENCODED_LEN
            || !encoded
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(TokenError::Malformed);
        }
        let mut bytes = [0u8; TOKEN_BYTES];
        match URL_SAFE_NO_PAD.decode_slice(encoded, &mut bytes) {
            Ok(TOKEN_BYTES) => Ok(Self(bytes)),
            _ => Err(TokenError::Malformed),
        }
    }

    /// The token's cookie form: 43 characters of unpadded base64url.
    ///
    /// # Examples
    ///
    /// ```
    /// let token = latchkey_core::SessionToken::generate()?;
    /// assert!(token.encode().chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    /// # Ok::<(), latchkey_core::TokenError>(())
    /// ```
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// The id stores know this session by: the SHA-256 of the token.
    ///
    /// # Examples
    ///
    /// ```
    /// let token = latchkey_core::SessionToken::generate()?;
    /// assert_eq!(token.id(), token.clone().id());
    /// # Ok::<(), latchkey_core::TokenError>(())
    /// ```
    pub fn id(&self) -> SessionId {
        SessionId(Sha256::digest(self.0).into())
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(<redacted>)")
    }
}

/// The key a store files a session under: the SHA-256 of its [`SessionToken`].
///
/// Knowing an id does not let anyone present the session, so ids may appear in
/// logs, metrics and admin screens. `Display` shows the first 8 bytes in hex,
/// enough to correlate log lines; [`SessionId::to_hex`] gives all 32.
///
/// # Examples
///
/// ```
/// use latchkey_core::{SessionId, SessionToken};
///
/// let id = SessionToken::generate()?.id();
/// assert_eq!(SessionId::from_hex(&id.to_hex()), Some(id));
/// # Ok::<(), latchkey_core::TokenError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId([u8; 32]);

impl SessionId {
    /// Builds an id from the 32 bytes of a SHA-256 digest, as a store reads it back.
    ///
    /// # Examples
    ///
    /// ```
    /// let id = latchkey_core::SessionId::from_bytes([7; 32]);
    /// assert_eq!(id.as_bytes(), &[7; 32]);
    /// ```
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes of the digest, as a store writes them.
    ///
    /// # Examples
    ///
    /// ```
    /// let id = latchkey_core::SessionId::from_bytes([1; 32]);
    /// assert_eq!(id.as_bytes().len(), 32);
    /// ```
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex of all 32 bytes (64 characters): the form key-value stores use.
    ///
    /// # Examples
    ///
    /// ```
    /// let id = latchkey_core::SessionId::from_bytes([0xab; 32]);
    /// assert_eq!(id.to_hex(), "ab".repeat(32));
    /// ```
    pub fn to_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(64);
        for byte in self.0 {
            out.push(char::from(DIGITS[usize::from(byte >> 4)]));
            out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
        }
        out
    }

    /// Parses the 64-character hex form; `None` for anything else.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(latchkey_core::SessionId::from_hex("zz").is_none());
    /// ```
    pub fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 64 {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (slot, pair) in bytes.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
            let text = std::str::from_utf8(pair).ok()?;
            *slot = u8::from_str_radix(text, 16).ok()?;
        }
        Some(Self(bytes))
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self})")
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in &self.0[..8] {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_through_their_cookie_form() {
        let token = SessionToken::generate().unwrap();
        let decoded = SessionToken::decode(&token.encode()).unwrap();
        assert_eq!(decoded, token);
    }

    #[test]
    fn id_is_the_sha256_of_the_token_bytes() {
        let token = SessionToken([0u8; 32]);
        // SHA-256 of 32 zero bytes.
        assert_eq!(
            token.id().to_hex(),
            "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
        );
    }

    #[test]
    fn decode_rejects_wrong_length_and_alphabet() {
        let good = SessionToken::generate().unwrap().encode();
        assert!(SessionToken::decode("").is_err());
        assert!(SessionToken::decode(&good[..42]).is_err());
        assert!(SessionToken::decode(&format!("{good}A")).is_err());
        let mut padded = good[..42].to_owned();
        padded.push('=');
        assert!(SessionToken::decode(&padded).is_err());
        let mut plus = good[..42].to_owned();
        plus.push('+');
        assert!(SessionToken::decode(&plus).is_err());
        assert!(SessionToken::decode(&"é".repeat(21)).is_err());
    }

    #[test]
    fn decode_rejects_non_canonical_trailing_bits() {
        // 43 base64 characters carry 258 bits; the last two must be zero.
        let token = SessionToken([0u8; 32]).encode();
        assert!(token.ends_with('A'));
        let mut tampered = token[..42].to_owned();
        tampered.push('B');
        assert!(SessionToken::decode(&tampered).is_err());
    }

    #[test]
    fn debug_output_never_shows_the_token() {
        let token = SessionToken::generate().unwrap();
        assert!(!format!("{token:?}").contains(&token.encode()));
    }

    #[test]
    fn generated_tokens_differ() {
        let a = SessionToken::generate().unwrap();
        let b = SessionToken::generate().unwrap();
        assert_ne!(a, b);
        assert_ne!(a.id(), b.id());
    }

    #[test]
    fn hex_round_trip_and_rejects_garbage() {
        let id = SessionToken::generate().unwrap().id();
        assert_eq!(SessionId::from_hex(&id.to_hex()), Some(id));
        assert_eq!(SessionId::from_hex(&"g".repeat(64)), None);
        assert_eq!(SessionId::from_hex("00"), None);
        assert_eq!(id.to_string().len(), 16);
    }
}
