//! Reading the session token from a request's cookies, and writing it back.

use actix_web::cookie::time::Duration as CookieDuration;
use actix_web::cookie::{Cookie, CookieJar, Key, SameSite};
use latchkey_core::SessionToken;

use crate::config::CookieContentSecurity;

/// Longest cookie value worth verifying: a token (43 characters) plus the largest
/// signature or encryption overhead is under 128; anything longer is not ours.
const MAX_COOKIE_VALUE_LEN: usize = 256;

/// What the request's cookies said about the session.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// No cookie of our name.
    Absent,
    /// Cookies of our name, none valid: too long, forged, tampered or malformed.
    Invalid,
    /// A valid token; `stale_key` when it was made with a previous key.
    Token {
        token: SessionToken,
        stale_key: bool,
    },
}

/// The signing or encryption keys, first one first; `Debug` shows only how many.
pub(crate) struct CookieKeys(pub(crate) Vec<Key>);

impl std::fmt::Debug for CookieKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CookieKeys({} keys, redacted)", self.0.len())
    }
}

/// The cookie settings and keys.
#[derive(Debug)]
pub(crate) struct CookieCodec {
    pub(crate) keys: CookieKeys,
    pub(crate) security: CookieContentSecurity,
    pub(crate) name: String,
    pub(crate) path: String,
    pub(crate) domain: Option<String>,
    pub(crate) secure: bool,
    pub(crate) http_only: bool,
    pub(crate) same_site: SameSite,
}

impl CookieCodec {
    /// Finds the first cookie of our name that verifies and holds a well-formed
    /// token. Several cookies of one name can arrive (one per path or domain), so
    /// each is tried.
    pub(crate) fn read<'c>(
        &self,
        cookies: impl IntoIterator<Item = &'c Cookie<'static>>,
    ) -> Incoming {
        let mut incoming = Incoming::Absent;
        for cookie in cookies.into_iter().filter(|c| c.name() == self.name) {
            incoming = Incoming::Invalid;
            if cookie.value().len() > MAX_COOKIE_VALUE_LEN {
                continue;
            }
            for (index, key) in self.keys.0.iter().enumerate() {
                let Some(plain) = self.open(key, cookie.clone()) else {
                    continue;
                };
                if let Ok(token) = SessionToken::decode(plain.value()) {
                    return Incoming::Token {
                        token,
                        stale_key: index > 0,
                    };
                }
            }
        }
        incoming
    }

    fn open(&self, key: &Key, cookie: Cookie<'static>) -> Option<Cookie<'static>> {
        let jar = CookieJar::new();
        match self.security {
            CookieContentSecurity::Signed => jar.signed(key).verify(cookie),
            CookieContentSecurity::Private => jar.private(key).decrypt(cookie),
        }
    }

    /// The `Set-Cookie` for `token`, signed or encrypted with the first key.
    pub(crate) fn issue(
        &self,
        token: &SessionToken,
        max_age: Option<std::time::Duration>,
    ) -> Cookie<'static> {
        let mut jar = CookieJar::new();
        let plain = Cookie::new(self.name.clone(), token.encode());
        let Some(key) = self.keys.0.first() else {
            return Cookie::new(self.name.clone(), "");
        };
        match self.security {
            CookieContentSecurity::Signed => jar.signed_mut(key).add(plain),
            CookieContentSecurity::Private => jar.private_mut(key).add(plain),
        }
        let value = jar
            .get(&self.name)
            .map(|c| c.value().to_owned())
            .unwrap_or_default();
        let mut cookie = self.with_attributes(Cookie::new(self.name.clone(), value));
        if let Some(max_age) = max_age {
            let seconds = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
            cookie.set_max_age(CookieDuration::seconds(seconds));
        }
        cookie
    }

    /// The `Set-Cookie` that makes the browser drop the session cookie.
    pub(crate) fn removal(&self) -> Cookie<'static> {
        let mut cookie = self.with_attributes(Cookie::new(self.name.clone(), ""));
        cookie.make_removal();
        cookie
    }

    fn with_attributes(&self, mut cookie: Cookie<'static>) -> Cookie<'static> {
        cookie.set_path(self.path.clone());
        if let Some(domain) = &self.domain {
            cookie.set_domain(domain.clone());
        }
        cookie.set_secure(self.secure);
        cookie.set_http_only(self.http_only);
        cookie.set_same_site(self.same_site);
        cookie
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec(security: CookieContentSecurity, keys: Vec<Key>) -> CookieCodec {
        CookieCodec {
            keys: CookieKeys(keys),
            security,
            name: "id".into(),
            path: "/".into(),
            domain: None,
            secure: true,
            http_only: true,
            same_site: SameSite::Lax,
        }
    }

    fn read_one(codec: &CookieCodec, cookie: Cookie<'static>) -> Incoming {
        codec.read([&cookie])
    }

    #[test]
    fn issued_cookies_read_back_for_both_securities() {
        for security in [
            CookieContentSecurity::Signed,
            CookieContentSecurity::Private,
        ] {
            let codec = codec(security, vec![Key::generate()]);
            let token = SessionToken::generate().unwrap();
            let cookie = codec.issue(&token, None);
            assert_ne!(
                cookie.value(),
                token.encode(),
                "the raw token is never the whole value"
            );
            match read_one(&codec, cookie) {
                Incoming::Token {
                    token: read,
                    stale_key,
                } => {
                    assert_eq!(read, token);
                    assert!(!stale_key);
                }
                other => panic!("expected a token, got {other:?}"),
            }
        }
    }

    #[test]
    fn tampered_foreign_and_oversized_cookies_are_invalid() {
        let codec = codec(CookieContentSecurity::Signed, vec![Key::generate()]);
        let token = SessionToken::generate().unwrap();
        let good = codec.issue(&token, None);

        let mut tampered = good.value().to_owned();
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        assert!(matches!(
            read_one(&codec, Cookie::new("id", tampered)),
            Incoming::Invalid
        ));

        assert!(
            matches!(
                read_one(&codec, Cookie::new("id", token.encode())),
                Incoming::Invalid
            ),
            "unsigned token"
        );
        let other_key = self::codec(CookieContentSecurity::Signed, vec![Key::generate()]);
        assert!(matches!(
            read_one(&other_key, good.clone()),
            Incoming::Invalid
        ));
        assert!(matches!(
            read_one(&codec, Cookie::new("id", "x".repeat(5000))),
            Incoming::Invalid
        ));
        assert!(matches!(
            read_one(&codec, Cookie::new("other", good.value().to_owned())),
            Incoming::Absent
        ));
    }

    #[test]
    fn previous_keys_verify_and_are_flagged_stale() {
        let (old, new) = (Key::generate(), Key::generate());
        let before = codec(CookieContentSecurity::Signed, vec![old.clone()]);
        let after = codec(CookieContentSecurity::Signed, vec![new, old]);
        let token = SessionToken::generate().unwrap();
        match read_one(&after, before.issue(&token, None)) {
            Incoming::Token {
                token: read,
                stale_key,
            } => {
                assert_eq!(read, token);
                assert!(stale_key);
            }
            other => panic!("expected a token, got {other:?}"),
        }
    }

    #[test]
    fn a_valid_cookie_among_invalid_ones_is_found() {
        let codec = codec(CookieContentSecurity::Signed, vec![Key::generate()]);
        let token = SessionToken::generate().unwrap();
        let garbage = Cookie::new("id", "garbage");
        let good = codec.issue(&token, None);
        assert!(matches!(
            codec.read([&garbage, &good]),
            Incoming::Token { .. }
        ));
    }

    #[test]
    fn issued_cookie_carries_attributes_and_max_age() {
        let codec = codec(CookieContentSecurity::Signed, vec![Key::generate()]);
        let token = SessionToken::generate().unwrap();
        let cookie = codec.issue(&token, Some(std::time::Duration::from_secs(90)));
        assert_eq!(cookie.secure(), Some(true));
        assert_eq!(cookie.http_only(), Some(true));
        assert_eq!(cookie.same_site(), Some(SameSite::Lax));
        assert_eq!(cookie.path(), Some("/"));
        assert_eq!(cookie.max_age(), Some(CookieDuration::seconds(90)));
        let removal = codec.removal();
        assert_eq!(removal.value(), "");
        assert_eq!(removal.max_age(), Some(CookieDuration::ZERO));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn codec_pair() -> (CookieCodec, Key) {
            let key = Key::generate();
            (codec(CookieContentSecurity::Signed, vec![key.clone()]), key)
        }

        proptest! {
            // Cases from PROPTEST_CASES (default 256): the long run sets it high.

            /// Arbitrary text in our cookie never panics and never yields a token.
            #[test]
            fn arbitrary_values_are_never_accepted(value in ".{0,300}") {
                let (codec, _) = codec_pair();
                let read = codec.read([&Cookie::new("id", value)]);
                prop_assert!(!matches!(read, Incoming::Token { .. }), "accepted an arbitrary value");
            }

            /// Arbitrary bytes, as a proxy might mangle them, likewise.
            #[test]
            fn arbitrary_bytes_are_never_accepted(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
                let (codec, _) = codec_pair();
                let value = String::from_utf8_lossy(&bytes).into_owned();
                let read = codec.read([&Cookie::new("id", value)]);
                prop_assert!(!matches!(read, Incoming::Token { .. }), "accepted an arbitrary value");
            }

            /// Changing any one character of the token part of a signed value
            /// makes it invalid.
            #[test]
            fn any_change_to_a_signed_token_is_rejected(position in 0usize..43, shift in 1usize..64) {
                const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
                let (codec, _) = codec_pair();
                let token = SessionToken::generate().unwrap();
                let issued = codec.issue(&token, None);
                let value = issued.value().to_owned();
                // The signed value is 44 characters of signature, then the token.
                let index = value.len() - 43 + position;
                let original = ALPHABET.find(&value[index..=index]).unwrap_or(0);
                let new_index = (original + shift) % 64;
                let replacement = &ALPHABET[new_index..=new_index];
                let mut tampered = value.clone();
                tampered.replace_range(index..=index, replacement);
                prop_assert!(matches!(codec.read([&Cookie::new("id", tampered)]), Incoming::Invalid), "accepted a tampered value");
            }

            /// Issued cookies always read back as the same token, under either
            /// protection.
            #[test]
            fn issued_cookies_round_trip(private in any::<bool>()) {
                let security = if private { CookieContentSecurity::Private } else { CookieContentSecurity::Signed };
                let codec = codec(security, vec![Key::generate()]);
                let token = SessionToken::generate().unwrap();
                let read = codec.read([&codec.issue(&token, None)]);
                prop_assert!(matches!(read, Incoming::Token { token: t, stale_key: false } if t == token), "did not round-trip");
            }
        }
    }
}
