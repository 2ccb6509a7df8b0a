//! Model inputs as TEI and OpenAI accept them: text, or the loaded model's own token ids.
//!
//! Token ids are taken verbatim — no special tokens are added — so ids read from `/tokenize`
//! (which includes them by default) embed exactly as the text they came from. TEI gets the same
//! result by decoding the ids and re-encoding the text without special tokens; sift skips the
//! round trip, which could not change valid ids but could merge or split invalid sequences.

use serde::Deserialize;
use sift_models::{Embedder, Encoded, TextTokenizer};
use utoipa::ToSchema;

use super::too_long;
use crate::error::ApiError;

/// One input: a text or a list of token ids.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ModelInput {
    Text(String),
    /// Token ids of the loaded model's vocabulary. Signed so that a negative id is answered
    /// with a message naming it rather than a generic shape error.
    Ids(Vec<i64>),
}

/// `inputs` (TEI) or `input` (OpenAI): one input or a list of them. A flat list of integers
/// is one tokenized input; a list of lists is a batch of them.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ModelInputs {
    One(ModelInput),
    Many(Vec<ModelInput>),
}

impl ModelInputs {
    pub fn into_vec(self) -> Vec<ModelInput> {
        match self {
            ModelInputs::One(i) => vec![i],
            ModelInputs::Many(v) => v,
        }
    }
}

/// Most ids a model can look up: the tokenizer's vocabulary (added tokens included) bounded by
/// the embedding matrix's rows (`vocab_size` in config.json), so an id the tokenizer knows but
/// the network has no row for is refused instead of indexing past the matrix.
pub fn vocabulary_size(tokenizer: &TextTokenizer, config_vocab: usize) -> usize {
    let tokenizer_vocab = tokenizer.inner().get_vocab_size(true);
    if config_vocab == 0 {
        tokenizer_vocab
    } else {
        tokenizer_vocab.min(config_vocab)
    }
}

/// Checks input `i`'s ids against the vocabulary and the length limit; `truncate` keeps the
/// first `max_length` ids of a longer list instead of refusing it (413).
pub fn encode_ids(
    i: usize,
    ids: &[i64],
    vocabulary: usize,
    max_length: usize,
    truncate: bool,
) -> Result<Encoded, ApiError> {
    if ids.is_empty() {
        return Err(ApiError::invalid(format!(
            "input {i} is an empty list of token ids"
        )));
    }
    if let Some((at, bad)) = ids
        .iter()
        .enumerate()
        .find(|(_, &id)| id < 0 || id as u64 >= vocabulary as u64)
    {
        return Err(ApiError::invalid(format!(
            "input {i}: token id {bad} (position {at}) is not in the model's vocabulary of {vocabulary} ids"
        )));
    }
    if ids.len() > max_length && !truncate {
        return Err(too_long(i, ids.len(), max_length));
    }
    let ids: Vec<u32> = ids.iter().take(max_length).map(|&id| id as u32).collect();
    Ok(Encoded {
        type_ids: vec![0; ids.len()],
        ids,
    })
}

/// Tokenizes (or checks) every input for the embedder. With `truncate` off, a text longer than
/// the model's maximum is refused with 413 naming its real token count.
pub fn encode_for_embedding(
    embedder: &Embedder,
    inputs: &[ModelInput],
    truncate: bool,
) -> Result<Vec<Encoded>, ApiError> {
    let tokenizer = embedder.tokenizer();
    let vocabulary = vocabulary_size(tokenizer, embedder.model_dir().config.vocab_size);
    inputs
        .iter()
        .enumerate()
        .map(|(i, input)| match input {
            ModelInput::Text(t) => super::encode_text(tokenizer, i, t, truncate),
            ModelInput::Ids(ids) => {
                encode_ids(i, ids, vocabulary, tokenizer.max_length(), truncate)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked_against_the_vocabulary_and_the_length_limit() {
        let ok = encode_ids(0, &[101, 7592, 102], 30_522, 8, false).unwrap();
        assert_eq!(ok.ids, vec![101, 7592, 102]);
        assert_eq!(ok.type_ids, vec![0, 0, 0]);

        let e = encode_ids(2, &[101, 30_522], 30_522, 8, false).unwrap_err();
        assert_eq!(e.status.as_u16(), 422);
        assert!(e.message.contains("token id 30522") && e.message.contains("input 2"));
        let e = encode_ids(0, &[-1], 30_522, 8, false).unwrap_err();
        assert!(e.message.contains("token id -1"), "{}", e.message);
        assert_eq!(encode_ids(0, &[], 10, 8, false).unwrap_err().status, 422);

        let long: Vec<i64> = (0..10).collect();
        let e = encode_ids(0, &long, 30_522, 8, false).unwrap_err();
        assert_eq!(e.status.as_u16(), 413);
        assert!(e.message.contains("10 tokens"), "{}", e.message);
        assert_eq!(encode_ids(0, &long, 30_522, 8, true).unwrap().ids.len(), 8);
    }

    #[test]
    fn a_flat_list_of_integers_is_one_input_and_nested_lists_are_a_batch() {
        let one: ModelInputs = serde_json::from_str("[1, 2, 3]").unwrap();
        assert!(matches!(one, ModelInputs::One(ModelInput::Ids(ref v)) if v.len() == 3));
        let many: ModelInputs = serde_json::from_str(r#"[[1, 2], "text", [3]]"#).unwrap();
        assert_eq!(many.into_vec().len(), 3);
        let texts: ModelInputs = serde_json::from_str(r#"["a", "b"]"#).unwrap();
        assert!(matches!(texts, ModelInputs::Many(ref v) if v.len() == 2));
    }
}
