//! A tiny regular-expression matcher for `[SLVNODE] NAME` and `CUK`
//! patterns (chmpx uses POSIX extended regexes there, e.g. `[.]*`).
//! Supported: literals, `.`, bracket classes with ranges and `^`
//! negation, `*`, `+`, `?`, anchors `^` `$`, `\` escapes. Groups,
//! alternation and counted repeats are taken literally.

#[derive(Clone, Debug)]
enum Atom {
    Char(char),
    Any,
    Class { negate: bool, ranges: Vec<(char, char)> },
    Start,
    End,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Rep {
    One,
    Star,
    Plus,
    Opt,
}

fn compile(pattern: &str) -> Vec<(Atom, Rep)> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out: Vec<(Atom, Rep)> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        let atom = match c {
            '.' => Atom::Any,
            '^' if out.is_empty() => Atom::Start,
            '$' if i == chars.len() => Atom::End,
            '\\' if i < chars.len() => {
                i += 1;
                Atom::Char(chars[i - 1])
            }
            '[' => {
                let mut negate = false;
                if chars.get(i) == Some(&'^') {
                    negate = true;
                    i += 1;
                }
                let mut ranges = Vec::new();
                let mut first = true;
                while i < chars.len() && (chars[i] != ']' || first) {
                    let lo = chars[i];
                    if chars.get(i + 1) == Some(&'-') && chars.get(i + 2).is_some_and(|&h| h != ']') {
                        ranges.push((lo, chars[i + 2]));
                        i += 3;
                    } else {
                        ranges.push((lo, lo));
                        i += 1;
                    }
                    first = false;
                }
                i += 1; // the closing ]
                Atom::Class { negate, ranges }
            }
            '*' | '+' | '?' if !out.is_empty() && out.last().is_some_and(|(_, r)| *r == Rep::One) => {
                out.last_mut().unwrap().1 = match c {
                    '*' => Rep::Star,
                    '+' => Rep::Plus,
                    _ => Rep::Opt,
                };
                continue;
            }
            other => Atom::Char(other),
        };
        out.push((atom, Rep::One));
    }
    out
}

fn one(atom: &Atom, text: &[char], pos: usize) -> bool {
    match atom {
        Atom::Char(c) => text.get(pos) == Some(c),
        Atom::Any => pos < text.len(),
        Atom::Class { negate, ranges } => text.get(pos).is_some_and(|c| ranges.iter().any(|(lo, hi)| lo <= c && c <= hi) != *negate),
        Atom::Start | Atom::End => false,
    }
}

fn here(prog: &[(Atom, Rep)], text: &[char], pos: usize) -> bool {
    let Some(((atom, rep), rest)) = prog.split_first() else { return true };
    match atom {
        Atom::Start => return pos == 0 && here(rest, text, pos),
        Atom::End => return pos == text.len() && here(rest, text, pos),
        _ => {}
    }
    match rep {
        Rep::One => one(atom, text, pos) && here(rest, text, pos + 1),
        Rep::Opt => (one(atom, text, pos) && here(rest, text, pos + 1)) || here(rest, text, pos),
        Rep::Star | Rep::Plus => {
            let mut n = 0;
            while one(atom, text, pos + n) {
                n += 1;
            }
            let min = usize::from(*rep == Rep::Plus);
            (min..=n).rev().any(|k| here(rest, text, pos + k))
        }
    }
}

/// Whether `pattern` matches somewhere in `text` (regexec semantics).
pub fn search(pattern: &str, text: &str) -> bool {
    let prog = compile(pattern);
    let text: Vec<char> = text.chars().collect();
    (0..=text.len()).any(|p| here(&prog, &text, p))
}

#[cfg(test)]
mod tests {
    use super::search;

    #[test]
    fn matches_like_posix() {
        assert!(search("[.]*", "anything"));
        assert!(search("[.]*", ""));
        assert!(search("^10\\.0\\.0\\.[0-9]+$", "10.0.0.42"));
        assert!(!search("^10\\.0\\.0\\.[0-9]+$", "10.0.0.x"));
        assert!(search("node", "a-node-1"));
        assert!(!search("^node$", "a-node-1"));
        assert!(search("^h[^x]st$", "host"));
        assert!(!search("^h[^o]st$", "host"));
        assert!(search("ab?c", "ac"));
        assert!(search("a.*z", "abcz"));
    }
}
