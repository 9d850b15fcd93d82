//! Base64 (RFC 4648 §4) for SMTP AUTH (RFC 4954): small enough not to need a
//! dependency.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Encodes with padding.
pub fn encode(input: &[u8]) -> String {
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes base64 strictly (RFC 4648 §3.3 and §3.5): only alphabet
/// characters, padding only at the end and only as much as the length needs,
/// and no stray bits in the last character. Unpadded input is accepted.
/// `None` for anything else.
pub fn decode(input: &str) -> Option<Vec<u8>> {
    let data = input.trim_end_matches('=');
    let padding = input.len() - data.len();
    if padding > 2 || (padding > 0 && input.len() % 4 != 0) || data.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(data.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in data.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if acc != 0 {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        assert_eq!(encode(b"\0me\0secret"), "AG1lAHNlY3JldA==");
        assert_eq!(encode(b"ab"), "YWI=");
        assert_eq!(encode(b"abc"), "YWJj");
        for s in [&b""[..], b"a", b"ab", b"abc", b"abcd", b"\xff\xfe\x00"] {
            assert_eq!(decode(&encode(s)).unwrap(), s);
        }
        assert_eq!(decode("YWI"), Some(b"ab".to_vec()));
        assert_eq!(decode("Y*I="), None);
        assert_eq!(decode("YWI=="), None, "too much padding");
        assert_eq!(decode("YW=I"), None, "padding in the middle");
        assert_eq!(decode("YWJ"), None, "stray bits");
        assert_eq!(decode("Y"), None, "impossible length");
    }
}
