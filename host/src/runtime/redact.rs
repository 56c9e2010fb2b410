//! Redaction of granted secret values from everything a run leaves behind:
//! whole strings (log messages, progress, checkpoint, output, failure
//! message, audit targets, host lines) and byte streams (stdout/stderr,
//! where a value may arrive split across any number of writes). Every exact
//! occurrence becomes `***`.

use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};

/// What replaces a secret's value.
pub(crate) const MASK: &str = "***";

/// The values to hide in one run. Cheap to share.
pub(crate) struct Redactor {
    finder: AhoCorasick,
    /// The longest value, minus one: what a stream may have to hold back.
    longest: usize,
    values: Vec<Vec<u8>>,
}

impl Redactor {
    /// A redactor for `values` (empty ones are ignored); `None` when there is
    /// nothing to hide, so runs without secrets pay nothing.
    pub(crate) fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Arc<Redactor>> {
        let mut values: Vec<Vec<u8>> = values.into_iter().filter(|v| !v.is_empty()).map(|v| v.as_bytes().to_vec()).collect();
        values.sort();
        values.dedup();
        if values.is_empty() {
            return None;
        }
        let finder = AhoCorasick::builder().match_kind(MatchKind::LeftmostLongest).build(&values).ok()?;
        let longest = values.iter().map(Vec::len).max().unwrap_or(1) - 1;
        Some(Arc::new(Redactor { finder, longest, values }))
    }

    /// `text` with every value replaced by `***`.
    pub(crate) fn text(&self, text: &str) -> String {
        if self.finder.find(text).is_none() {
            return text.to_string();
        }
        self.finder.replace_all(text, &vec![MASK; self.values.len()])
    }

    /// Replaces values in `text` in place (no copy when there is none).
    pub(crate) fn in_place(&self, text: &mut String) {
        if self.finder.find(text.as_str()).is_some() {
            *text = self.text(text);
        }
    }

    fn bytes(&self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(bytes.len());
        self.finder.replace_all_with_bytes(bytes, &mut out, |_, _, dst| {
            dst.extend_from_slice(MASK.as_bytes());
            true
        });
        out
    }

    /// How many bytes at the end of `text` could be the start of a value.
    fn unsafe_tail(&self, text: &[u8]) -> usize {
        let most = self.longest.min(text.len());
        (1..=most)
            .rev()
            .find(|&k| {
                let tail = &text[text.len() - k..];
                self.values.iter().any(|v| v.len() > k && v.starts_with(tail))
            })
            .unwrap_or(0)
    }
}

/// Redaction of one byte stream written in arbitrary pieces: holds back only
/// the shortest tail that could still grow into a value.
pub(crate) struct StreamRedactor {
    redactor: Arc<Redactor>,
    pending: Vec<u8>,
}

impl StreamRedactor {
    pub(crate) fn new(redactor: Arc<Redactor>) -> Self {
        StreamRedactor { redactor, pending: Vec::new() }
    }

    /// Feeds `chunk`; returns what is safe to pass on now.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        self.pending.extend_from_slice(chunk);
        let redacted = self.redactor.bytes(&self.pending);
        let hold = self.redactor.unsafe_tail(&redacted);
        self.pending = redacted[redacted.len() - hold..].to_vec();
        let mut release = redacted;
        release.truncate(release.len() - hold);
        release
    }

    /// The rest, at the end of the stream.
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        let rest = std::mem::take(&mut self.pending);
        self.redactor.bytes(&rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor() -> Arc<Redactor> {
        Redactor::new(["sk_live_123", "hunter2", "sk_test"]).unwrap()
    }

    #[test]
    fn nothing_to_hide_means_no_redactor() {
        assert!(Redactor::new([]).is_none());
        assert!(Redactor::new([""]).is_none());
    }

    #[test]
    fn whole_strings() {
        let r = redactor();
        assert_eq!(r.text("token=sk_live_123, pw hunter2hunter2"), "token=***, pw ******");
        let mut s = "no secret here".to_string();
        r.in_place(&mut s);
        assert_eq!(s, "no secret here");
    }

    /// However a text is cut into writes, the stream gives what redacting
    /// the whole text gives.
    #[test]
    fn any_split_of_a_stream_gives_the_whole_text_redaction() {
        let r = redactor();
        let text = "x sk_live_123 y hunter2hunter2 sk_test sk_tes sk_live_12 zz sk_live_123\nhunte";
        let want = r.text(text);
        let mut seed: u64 = 42;
        for _ in 0..2000 {
            let mut stream = StreamRedactor::new(r.clone());
            let mut out = Vec::new();
            let mut at = 0;
            while at < text.len() {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                let end = (at + 1 + (seed >> 33) as usize % 7).min(text.len());
                out.extend(stream.push(&text.as_bytes()[at..end]));
                at = end;
            }
            out.extend(stream.finish());
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }

    #[test]
    fn a_stream_holds_back_only_a_possible_start() {
        let mut s = StreamRedactor::new(redactor());
        assert_eq!(s.push(b"abc sk_l"), b"abc ");
        assert_eq!(s.push(b"ive_123 def\n"), b"*** def\n");
        assert_eq!(s.push(b"hun"), b"");
        assert_eq!(s.finish(), b"hun");
    }
}
