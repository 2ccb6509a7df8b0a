//! How text becomes BM25 terms: one analyzer per collection, chosen when it is created and
//! recorded in its manifest, so documents and queries are always cut the same way.
//!
//! Why three and not tantivy's `default`/`en_stem`: those split on every non-alphanumeric
//! character, so a run of Chinese characters (no spaces) is one "word" and BM25 finds nothing
//! inside it; and `en_stem` keeps English function words and the `s` of possessives, noise that
//! the references (Lucene's EnglishAnalyzer, bm25s) drop.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, Stemmer, StopWordFilter, TextAnalyzer, Token,
    TokenStream, Tokenizer,
};

/// Terms longer than this many bytes are dropped (base64, hashes, minified code): they match
/// nothing a person types and would bloat the term dictionary.
const MAX_TERM_BYTES: usize = 40;

/// A collection's keyword analyzer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Analyzer {
    /// English prose: Unicode words of two or more characters (a lone letter or digit — an
    /// initial, a list marker, the `s` of a possessive — is dropped, as bm25s and scikit-learn
    /// do: on SciFact keeping them cost 0.003 nDCG@10 on each query set, keeping only digits
    /// as much), lowercased, Lucene's 33 English stop words removed, Snowball English stemmer. The analyzer of the references BM25 is compared
    /// with (docs/quality.md). The default of collections made before analyzers were recorded
    /// (their terms were English-stemmed).
    #[default]
    English,
    /// Chinese (and Chinese mixed with Latin-script words): runs of CJK characters are cut into
    /// character bigrams, plus the words of other lengths that jieba's dictionary segments
    /// them into (search mode: long words also yield their shorter dictionary words); other
    /// words as in `Neutral`.
    Chinese,
    /// Any language, no language-specific rules: Unicode words lowercased, runs of CJK
    /// characters cut into overlapping character bigrams. No stemming and no stop words.
    Neutral,
}

impl Analyzer {
    pub const ALL: [Analyzer; 3] = [Analyzer::English, Analyzer::Chinese, Analyzer::Neutral];

    pub fn name(self) -> &'static str {
        match self {
            Analyzer::English => "english",
            Analyzer::Chinese => "chinese",
            Analyzer::Neutral => "neutral",
        }
    }

    /// The tokenizer name stored in the BM25 index's schema. Versioned: changing what an
    /// analyzer does changes its name, so an index built by the old rules no longer matches
    /// the schema and is rebuilt from the collection's log instead of being queried with terms
    /// it does not contain.
    pub(crate) fn tokenizer_name(self) -> &'static str {
        match self {
            Analyzer::English => "sift-english-1",
            Analyzer::Chinese => "sift-chinese-2",
            Analyzer::Neutral => "sift-neutral-1",
        }
    }

    /// The tantivy analyzer for this setting: its word tokenizer, long terms dropped,
    /// lowercased, and for English stop words and the stemmer.
    pub fn text_analyzer(self) -> TextAnalyzer {
        let words = TextAnalyzer::builder(self.word_tokenizer())
            .filter(RemoveLongFilter::limit(MAX_TERM_BYTES))
            .filter(LowerCaser);
        match self {
            Analyzer::English => words
                .filter(
                    StopWordFilter::new(Language::English).expect("tantivy's stopwords feature"),
                )
                .filter(Stemmer::new(Language::English))
                .build(),
            Analyzer::Chinese | Analyzer::Neutral => words.build(),
        }
    }

    fn word_tokenizer(self) -> WordTokenizer {
        match self {
            Analyzer::English => WordTokenizer {
                cjk: CjkWords::Bigrams,
                min_chars: 2,
            },
            Analyzer::Chinese => WordTokenizer {
                cjk: CjkWords::DictionaryAndBigrams,
                min_chars: 1,
            },
            Analyzer::Neutral => WordTokenizer {
                cjk: CjkWords::Bigrams,
                min_chars: 1,
            },
        }
    }

    /// The terms `text` is indexed (and queried) as.
    pub fn terms(self, text: &str) -> Vec<String> {
        let mut analyzer = self.text_analyzer();
        let mut stream = analyzer.token_stream(text);
        let mut terms = Vec::new();
        while let Some(t) = stream.next() {
            terms.push(t.text.clone());
        }
        terms
    }

    /// The analyzer that suits `texts` (a sample of a new collection's documents): `Chinese`
    /// when at least a fifth of their letters are CJK characters, `English` when Lucene's
    /// English stop words are at least a tenth of their words (English prose runs 20–30 %,
    /// other Latin-script languages near 0–3 %: their function words differ), else `Neutral`.
    /// No text at all gives `Neutral`, the analyzer that is never badly wrong.
    pub fn detect<'a>(texts: impl IntoIterator<Item = &'a str>) -> Analyzer {
        const ENGLISH_STOP_WORDS: [&str; 33] = [
            "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into",
            "is", "it", "no", "not", "of", "on", "or", "such", "that", "the", "their", "then",
            "there", "these", "they", "this", "to", "was", "will", "with",
        ];
        // Bounded so detection stays cheap on a large first batch.
        const SAMPLE_CHARS: usize = 1 << 20;
        let (mut letters, mut cjk, mut words, mut stop) = (0usize, 0usize, 0usize, 0usize);
        let mut seen = 0;
        for text in texts {
            if seen > SAMPLE_CHARS {
                break;
            }
            seen += text.len();
            for c in text.chars() {
                if c.is_alphabetic() {
                    letters += 1;
                    cjk += usize::from(is_cjk(c));
                }
            }
            for word in text.split(|c: char| !c.is_alphanumeric()) {
                if word.is_empty() || word.chars().any(is_cjk) {
                    continue;
                }
                words += 1;
                let lower = word.to_lowercase();
                stop += usize::from(ENGLISH_STOP_WORDS.contains(&lower.as_str()));
            }
        }
        if letters == 0 {
            Analyzer::Neutral
        } else if cjk * 5 >= letters {
            Analyzer::Chinese
        } else if words > 0 && stop * 10 >= words {
            Analyzer::English
        } else {
            Analyzer::Neutral
        }
    }
}

impl std::fmt::Display for Analyzer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Analyzer {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "english" | "en" => Ok(Analyzer::English),
            "chinese" | "zh" | "cjk" => Ok(Analyzer::Chinese),
            "neutral" | "none" => Ok(Analyzer::Neutral),
            _ => Err(format!(
                "unknown language {s:?}; expected english (en), chinese (zh) or neutral"
            )),
        }
    }
}

/// Han ideographs, kana and Hangul: scripts written without spaces between words (Hangul
/// uses spaces, but its words are long agglutinated runs that bigrams match better).
fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF       // Hiragana, Katakana
        | 0x3400..=0x4DBF     // CJK Extension A
        | 0x4E00..=0x9FFF     // CJK Unified Ideographs
        | 0xAC00..=0xD7AF     // Hangul syllables
        | 0xF900..=0xFAFF     // CJK Compatibility Ideographs
        | 0x20000..=0x2FA1F   // CJK Extensions B–F, compatibility supplement
    )
}

/// How a run of CJK characters is cut into terms.
#[derive(Debug, Clone, Copy)]
enum CjkWords {
    /// Every pair of adjacent characters (a lone character is its own term): no dictionary,
    /// any CJK language, and a query phrase matches wherever its characters occur in order.
    Bigrams,
    /// The bigrams, and besides them the words of jieba's Chinese dictionary (search mode)
    /// that are not two characters long. Measured on People's Daily known-item phrases
    /// (tests/chinese_known_item.rs, docs/quality.md): jieba words alone 0.942 MRR@10, bigrams
    /// 0.981, both 0.978 — words alone lose wherever the query's segmentation differs from the
    /// document's; bigrams do not depend on it, and the words add whole-word matches, which
    /// studies of Chinese ad hoc retrieval found help beside bigrams.
    DictionaryAndBigrams,
}

/// Splits text into words: runs of alphanumeric characters for space-separated scripts, and
/// CJK runs cut by [`CjkWords`]. Tokens are produced eagerly into a vector: analysis runs once
/// per chunk at indexing and once per query, and one allocation per call is not measurable
/// next to tantivy's own per-token work.
#[derive(Debug, Clone)]
struct WordTokenizer {
    cjk: CjkWords,
    /// Shortest word kept from space-separated scripts, in characters (CJK runs are not
    /// affected: one Chinese character is a word).
    min_chars: usize,
}

fn jieba() -> &'static jieba_rs::Jieba {
    static JIEBA: OnceLock<jieba_rs::Jieba> = OnceLock::new();
    JIEBA.get_or_init(jieba_rs::Jieba::new)
}

impl WordTokenizer {
    fn tokens(&self, text: &str) -> Vec<Token> {
        let mut tokens = Vec::new();
        let push = |from: usize, to: usize, tokens: &mut Vec<Token>| {
            let position = tokens.len();
            tokens.push(Token {
                offset_from: from,
                offset_to: to,
                position,
                text: text[from..to].to_owned(),
                position_length: 1,
            });
        };
        let mut chars = text.char_indices().peekable();
        while let Some((start, c)) = chars.next() {
            if !c.is_alphanumeric() {
                continue;
            }
            let cjk = is_cjk(c);
            let mut end = start + c.len_utf8();
            while let Some(&(i, next)) = chars.peek() {
                if !next.is_alphanumeric() || is_cjk(next) != cjk {
                    break;
                }
                end = i + next.len_utf8();
                chars.next();
            }
            if !cjk {
                if text[start..end].chars().nth(self.min_chars - 1).is_some() {
                    push(start, end, &mut tokens);
                }
                continue;
            }
            let run = &text[start..end];
            let bigrams = |tokens: &mut Vec<Token>| {
                let bounds: Vec<usize> = run
                    .char_indices()
                    .map(|(i, _)| start + i)
                    .chain(std::iter::once(end))
                    .collect();
                if bounds.len() == 2 {
                    push(bounds[0], bounds[1], tokens);
                }
                for w in bounds.windows(3) {
                    push(w[0], w[2], tokens);
                }
            };
            match self.cjk {
                CjkWords::Bigrams => bigrams(&mut tokens),
                CjkWords::DictionaryAndBigrams => {
                    bigrams(&mut tokens);
                    // Two-character words are bigrams already; counting them twice would
                    // double their term frequency.
                    for word in jieba().cut_for_search(run, true) {
                        if word.word.chars().count() != 2
                            && word.word.chars().any(char::is_alphanumeric)
                        {
                            push(start + word.byte_start, start + word.byte_end, &mut tokens);
                        }
                    }
                }
            }
        }
        tokens
    }
}

impl Tokenizer for WordTokenizer {
    type TokenStream<'a> = VecTokenStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> VecTokenStream {
        VecTokenStream {
            tokens: self.tokens(text),
            next: 0,
        }
    }
}

struct VecTokenStream {
    tokens: Vec<Token>,
    /// Index of the token `advance` moves to.
    next: usize,
}

impl TokenStream for VecTokenStream {
    fn advance(&mut self) -> bool {
        self.next += 1;
        self.next <= self.tokens.len()
    }
    fn token(&self) -> &Token {
        &self.tokens[self.next - 1]
    }
    fn token_mut(&mut self) -> &mut Token {
        &mut self.tokens[self.next - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn english_stems_and_drops_stop_words_and_lone_characters() {
        assert_eq!(
            Analyzer::English.terms("The patient's IL-6 levels were reduced by vitamin D"),
            ["patient", "il", "level", "were", "reduc", "vitamin"]
        );
        // Greek letters and digits are word characters.
        assert_eq!(
            Analyzer::English.terms("TNF-αβ 2.5mg 10"),
            ["tnf", "αβ", "5mg", "10"]
        );
        // Lone characters stay in the other analyzers.
        assert_eq!(Analyzer::Neutral.terms("vitamin D"), ["vitamin", "d"]);
    }

    #[test]
    fn neutral_cuts_cjk_runs_into_bigrams_and_keeps_latin_words() {
        assert_eq!(
            Analyzer::Neutral.terms("人民日报 Running 中"),
            ["人民", "民日", "日报", "running", "中"]
        );
    }

    #[test]
    fn chinese_cuts_bigrams_and_adds_the_dictionarys_longer_words() {
        let terms = Analyzer::Chinese.terms("我们在北京大学学习。BM25 works");
        for t in ["北京", "京大", "大学", "北京大学"] {
            assert!(terms.contains(&t.to_string()), "{t}: {terms:?}");
        }
        // A two-character word is one of the bigrams and counted once.
        assert_eq!(
            terms.iter().filter(|t| *t == "北京").count(),
            1,
            "{terms:?}"
        );
        assert!(terms.ends_with(&["bm25".to_string(), "works".to_string()]));
    }

    #[test]
    fn tokens_point_at_their_text() {
        let text = "a’s 北京大学, b";
        for analyzer in Analyzer::ALL {
            for t in analyzer.word_tokenizer().tokens(text) {
                assert_eq!(&text[t.offset_from..t.offset_to], t.text);
            }
        }
    }

    #[test]
    fn detection_reads_the_script_and_the_function_words() {
        assert_eq!(
            Analyzer::detect(["The vaccine is safe and it reduces the risk of infection."]),
            Analyzer::English
        );
        assert_eq!(
            Analyzer::detect(["人民日报社论：坚持改革开放", "and some English"]),
            Analyzer::Chinese
        );
        assert_eq!(
            Analyzer::detect(["Der Impfstoff ist sicher und senkt das Risiko einer Infektion."]),
            Analyzer::Neutral
        );
        assert_eq!(Analyzer::detect([]), Analyzer::Neutral);
        assert_eq!(Analyzer::detect(["12 34"]), Analyzer::Neutral);
    }

    #[test]
    fn names_parse_back() {
        for a in Analyzer::ALL {
            assert_eq!(a.name().parse::<Analyzer>().unwrap(), a);
        }
        assert_eq!("zh".parse::<Analyzer>().unwrap(), Analyzer::Chinese);
        assert!("klingon".parse::<Analyzer>().is_err());
    }
}
