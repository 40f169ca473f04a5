//! The pure parts: cutting a log into objects, and object names. What
//! goes through Swift is tested against a real Swift in
//! `tests/tests/guest_log.rs`.
use super::chunk::{object_name, utc_text, Chunker};

fn chunks(text: &str, limit: usize) -> Vec<(String, usize, u64)> {
    let mut c = Chunker::new(std::io::Cursor::new(text.as_bytes().to_vec()), limit);
    let mut out = Vec::new();
    while let Some(ch) = c.next_chunk().unwrap() {
        out.push((String::from_utf8(ch.text).unwrap(), ch.lines, ch.consumed));
    }
    out
}

#[test]
fn objects_are_cut_on_line_boundaries_within_the_limit() {
    let got = chunks("aaaa\nbbbb\ncccc\ndd\n", 10);
    assert_eq!(
        got,
        vec![("aaaa\nbbbb\n".into(), 2, 10), ("cccc\ndd\n".into(), 2, 8),]
    );
    assert!(got.iter().all(|(t, _, _)| t.len() <= 10));
}

#[test]
fn a_last_line_still_being_written_waits_for_the_next_publish() {
    let got = chunks("one\ntwo\nthr", 100);
    assert_eq!(got, vec![("one\ntwo\n".into(), 2, 8)]);
    assert!(chunks("partial", 100).is_empty());
}

#[test]
fn a_line_longer_than_the_limit_is_cut_at_it() {
    let got = chunks("0123456789abcdef\nxy\n", 8);
    for (text, _, _) in &got {
        assert!(text.len() <= 8, "{text:?}");
        assert!(text.ends_with('\n'));
    }
    let text: String = got.iter().map(|(t, _, _)| t.as_str()).collect();
    assert_eq!(
        text, "0123456\n789abcd\nef\nxy\n",
        "nothing lost, no blank line"
    );
    let consumed: u64 = got.iter().map(|(_, _, n)| n).sum();
    assert_eq!(
        consumed, 20,
        "every byte of the file accounted for: {got:?}"
    );
}

#[test]
fn what_is_published_is_masked_but_the_file_offsets_are_the_files() {
    let line = "GET /v1/extdata/trove/very-secret-register-path 200\n";
    let got = chunks(line, 1000);
    assert_eq!(got[0].0, "GET /v1/extdata/*** 200\n");
    assert_eq!(got[0].2, line.len() as u64);
}

#[test]
fn object_names_follow_upstreams_utc_form() {
    assert_eq!(utc_text(0, 0), "1970-01-01T00:00:00.000000");
    assert_eq!(utc_text(1_796_558_400, 123), "2026-12-06T12:00:00.000123");
    assert_eq!(utc_text(951_782_400, 5), "2000-02-29T00:00:00.000005");
    let a = object_name(0);
    assert!(a.starts_with("log-20") && a.ends_with("-0000"), "{a}");
}
