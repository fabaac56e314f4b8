//! Percent-decoding (`%XY` escapes) for the text pythond takes from URLs: query
//! parameters of the write API (docs/HTTP.md) and the userinfo and tokens of git URLs
//! (docs/RELOAD.md, "Syncing"). One decoder, so both read an escape the same way.

/// Decodes `%XY` escapes; anything else (a `%` not followed by two hex digits, a
/// multi-byte character right after `%`) is kept as it is. Works on bytes, so it
/// never cuts a character in two.
pub fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let pair = bytes
                .get(i + 1)
                .copied()
                .and_then(hex)
                .zip(bytes.get(i + 2).copied().and_then(hex));
            if let Some((high, low)) = pair {
                out.push(high << 4 | low);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn escapes_in_query_values_are_decoded() {
        assert_eq!(percent_decode("my%20input"), "my input");
        assert_eq!(percent_decode("caf%C3%A9.Caf%C3%A9"), "café.Café");
        assert_eq!(percent_decode("50%"), "50%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%41"), "A");
    }

    #[test]
    fn percent_decoding_keeps_what_is_no_escape() {
        assert_eq!(percent_decode("%aé"), "%aé");
        assert_eq!(percent_decode("%é1"), "%é1");
        assert_eq!(percent_decode("a%2Bb%2"), "a+b%2");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("%C3%A9"), "é");
    }

    proptest::proptest! {
        #[test]
        fn percent_decoding_never_panics(text in ".*", byte in proptest::prelude::any::<u8>()) {
            let _ = percent_decode(&text);
            let encoded = format!("%{byte:02x}{text}");
            let decoded = percent_decode(&encoded);
            // An ASCII byte decodes to itself, followed by the rest decoded.
            if byte.is_ascii() {
                proptest::prop_assert_eq!(decoded, format!("{}{}", byte as char, percent_decode(&text)));
            }
        }
    }
}
