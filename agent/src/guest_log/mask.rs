//! Secrets masked in a log line before it is published: a published log
//! is readable by everyone with access to the tenant's container, and the
//! container logs of chmpx and k2hdkc are not ours to keep clean.
//!
//! Masked with `***`: the value after a key that names a secret
//! (`password`, `token`, `secret`, `key` as the last word of a key such as
//! `auth_token` or `X-Auth-Token`, followed by `=`, `:` or `": "`), the
//! K2HR3 EXTDATA path after `/extdata/` (its last part opens the role),
//! and Keystone Fernet tokens (`gAAAAA...`) anywhere.

const MASK: &[u8] = b"***";
/// Key endings that name a secret (compared without case).
const SECRET_WORDS: [&[u8]; 5] = [b"password", b"token", b"secret", b"passwd", b"encr_key"];

/// `line` with its secrets replaced by `***`.
pub fn line(line: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        if let Some(end) = extdata_path(line, i) {
            out.extend_from_slice(b"/extdata/");
            out.extend_from_slice(MASK);
            i = end;
            continue;
        }
        if let Some(end) = fernet_token(line, i) {
            out.extend_from_slice(MASK);
            i = end;
            continue;
        }
        if let Some((value_at, end)) = secret_value(line, i) {
            out.extend_from_slice(&line[i..value_at]);
            out.extend_from_slice(MASK);
            i = end;
            continue;
        }
        out.push(line[i]);
        i += 1;
    }
    out
}

fn is_value_byte(b: u8) -> bool {
    !b.is_ascii_whitespace() && !matches!(b, b'"' | b'\'' | b',' | b'&' | b';' | b'}' | b')' | b']')
}

/// `/extdata/<anything up to a space or quote>` at `i`: its end.
fn extdata_path(line: &[u8], i: usize) -> Option<usize> {
    const P: &[u8] = b"/extdata/";
    if !line[i..].starts_with(P) {
        return None;
    }
    let start = i + P.len();
    let end = start
        + line[start..]
            .iter()
            .take_while(|b| is_value_byte(**b))
            .count();
    (end > start).then_some(end)
}

/// A Fernet token at `i` (at a word's start): its end.
fn fernet_token(line: &[u8], i: usize) -> Option<usize> {
    if !line[i..].starts_with(b"gAAAAA") || (i > 0 && line[i - 1].is_ascii_alphanumeric()) {
        return None;
    }
    let len = line[i..]
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'='))
        .count();
    (len >= 32).then_some(i + len)
}

/// A key naming a secret that ends at `i`'s word and the value after it:
/// where the value starts and ends. `i` must be the key's first byte.
fn secret_value(line: &[u8], i: usize) -> Option<(usize, usize)> {
    if i > 0 && (line[i - 1].is_ascii_alphanumeric() || matches!(line[i - 1], b'_' | b'-')) {
        return None;
    }
    let key_len = line[i..]
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
        .count();
    if key_len == 0 {
        return None;
    }
    let key = line[i..i + key_len].to_ascii_lowercase();
    if !SECRET_WORDS.iter().any(|w| key.ends_with(w)) {
        return None;
    }
    // The separator: `=`, `:`, `": "`, `" = "`, with spaces and a quote.
    let mut j = i + key_len;
    if line.get(j) == Some(&b'"') || line.get(j) == Some(&b'\'') {
        j += 1;
    }
    while line.get(j) == Some(&b' ') {
        j += 1;
    }
    if !matches!(line.get(j), Some(b'=') | Some(b':')) {
        return None;
    }
    j += 1;
    while line.get(j) == Some(&b' ') {
        j += 1;
    }
    if line.get(j) == Some(&b'"') || line.get(j) == Some(&b'\'') {
        j += 1;
    }
    let end = j + line[j..].iter().take_while(|b| is_value_byte(**b)).count();
    (end > j).then_some((j, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> String {
        String::from_utf8(line(s.as_bytes())).unwrap()
    }

    #[test]
    fn secrets_are_masked_and_the_rest_kept() {
        assert_eq!(
            m("GET https://k2hr3:18080/v1/extdata/trove/abc-DEF_123 200\n"),
            "GET https://k2hr3:18080/v1/extdata/*** 200\n"
        );
        assert_eq!(
            m("headers: X-Auth-Token: gAAAAABm1234567890abcdefghijklmnopqrstuv done"),
            "headers: X-Auth-Token: *** done"
        );
        assert_eq!(
            m(r#"{"auth_token": "s3cr3t", "user": "demo"}"#),
            r#"{"auth_token": "***", "user": "demo"}"#
        );
        assert_eq!(
            m("role_token=R=abc&x=1 password = hunter2;"),
            "role_token=***&x=1 password = ***;"
        );
        assert_eq!(
            m("a bare gAAAAABmZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ token"),
            "a bare *** token"
        );
    }

    #[test]
    fn words_that_only_look_like_secrets_stay() {
        for kept in [
            "tokens: 3 issued",
            "passwordless login",
            "no_token here",
            "the token was refused: expired or revoked?",
            "[SERVICE IN][UP][n/a][Nothing][NoSuspend] hash 0x0/0x0",
            "gAAAAA short",
        ] {
            assert_eq!(m(kept), kept);
        }
    }
}
