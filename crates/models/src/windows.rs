//! Splitting long documents into overlapping token windows that fit the models.

/// Byte ranges of `text` covering it in windows of at most `max_tokens` tokens, consecutive
/// windows sharing `overlap` tokens. `offsets` are the tokens' byte ranges (from the
/// embedder's tokenizer). A text of no tokens gives one window over the whole text.
pub fn token_windows(
    text: &str,
    offsets: &[(usize, usize)],
    max_tokens: usize,
    overlap: usize,
) -> Vec<(usize, usize)> {
    let max_tokens = max_tokens.max(1);
    let overlap = overlap.min(max_tokens - 1);
    if offsets.len() <= max_tokens {
        return vec![(0, text.len())];
    }
    let step = max_tokens - overlap;
    let mut windows = Vec::new();
    let mut start = 0;
    loop {
        let end = (start + max_tokens).min(offsets.len());
        let from = if start == 0 { 0 } else { offsets[start].0 };
        let to = if end == offsets.len() {
            text.len()
        } else {
            offsets[end - 1].1
        };
        windows.push((floor_boundary(text, from), ceil_boundary(text, to)));
        if end == offsets.len() {
            break;
        }
        start += step;
    }
    windows
}

fn floor_boundary(text: &str, mut i: usize) -> usize {
    i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_boundary(text: &str, mut i: usize) -> usize {
    i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word_offsets(text: &str) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut start = None;
        for (i, c) in text.char_indices() {
            match (c.is_whitespace(), start) {
                (false, None) => start = Some(i),
                (true, Some(s)) => {
                    out.push((s, i));
                    start = None;
                }
                _ => {}
            }
        }
        if let Some(s) = start {
            out.push((s, text.len()));
        }
        out
    }

    #[test]
    fn short_texts_are_one_window() {
        let t = "one two three";
        assert_eq!(token_windows(t, &word_offsets(t), 5, 1), vec![(0, t.len())]);
    }

    #[test]
    fn windows_overlap_and_cover_everything() {
        let t = "a b c d e f g h i j";
        let w = token_windows(t, &word_offsets(t), 4, 1);
        let parts: Vec<&str> = w.iter().map(|&(s, e)| &t[s..e]).collect();
        assert_eq!(parts, vec!["a b c d", "d e f g", "g h i j"]);
    }

    #[test]
    fn multibyte_text_is_cut_on_char_boundaries() {
        let t = "déjà vu über naïve café 北京 東京 emoji 🎉 end";
        let w = token_windows(t, &word_offsets(t), 3, 1);
        assert!(w.len() > 2);
        for (s, e) in w {
            assert!(!t[s..e].is_empty());
        }
    }
}
