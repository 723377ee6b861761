//! Base64 (RFC 4648) for the texts this crate hands out: list cursors and generated
//! passwords. One place pins the engine, so a cursor made by one release still reads in the
//! next.
//!
//! The engine is the `base64` crate's URL-safe one without padding, because a cursor travels
//! in a query string and a password is typed or pasted. Decoding parses client-supplied
//! cursors, so it refuses (never panics on) anything that is not exactly what [`base64url`]
//! produces: other alphabets, padding, impossible lengths and stray trailing bits (so that
//! each byte string has one encoding).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// URL-safe base64 without padding: goes into a query string or a terminal as it is.
pub(crate) fn base64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes what [`base64url`] made; `None` (never a panic) on any other character, on
/// padding, on a length that no encoding produces or on non-zero trailing bits, because the
/// text comes from clients.
pub(crate) fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::STANDARD;

    use super::*;

    /// Standard base64 with padding, the form RFC 4648's vectors are written in.
    fn base64(bytes: &[u8]) -> String {
        STANDARD.encode(bytes)
    }

    #[test]
    fn rfc_4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
            let url = encoded.trim_end_matches('=');
            assert_eq!(base64url(plain.as_bytes()), url);
            assert_eq!(base64url_decode(url).unwrap(), plain.as_bytes());
        }
    }

    #[test]
    fn url_safe_round_trips_and_refuses_garbage() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(base64url_decode(&base64url(&bytes)).unwrap(), bytes);
        assert!(base64url(&[0xfb, 0xff]).contains('-') || base64url(&[0xfb, 0xff]).contains('_'));
        assert_eq!(base64url_decode("Zg=="), None);
        assert_eq!(base64url_decode("Z"), None);
        assert_eq!(base64url_decode("Zh"), None);
        assert_eq!(base64url_decode("a+b/"), None);
    }
}
