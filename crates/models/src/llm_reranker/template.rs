//! The published scoring recipes of LLM rerankers: how a (query, document) pair becomes tokens,
//! what is cut when it is too long, and which logits at the last position make the score.
//!
//! Each follows its authors' reference code token for token (the golden tests compare with it):
//! - [`RerankTemplate::Qwen3`]: the Qwen3-Reranker model card's transformers recipe.
//! - [`RerankTemplate::BgeLlm`]: FlagEmbedding's `FlagLLMReranker` (bge-reranker-v2-gemma) and
//!   `LayerWiseLLMReranker` (bge-reranker-v2-minicpm-layerwise), which tokenize alike.
//! - [`RerankTemplate::BgeLightweight`]: FlagEmbedding's `LightweightLLMReranker`.

use std::str::FromStr;

use tokenizers::Tokenizer;

use crate::error::{ModelError, Result};

/// Which recipe scores pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RerankTemplate {
    /// Chat-formatted "Judge whether the Document meets the requirements…" with an instruction;
    /// logit = logit("yes") − logit("no") at the last token.
    Qwen3,
    /// `<bos>A: {query}\nB: {passage}\n{prompt}`; logit = logit("Yes") at the last token.
    BgeLlm,
    /// FlagEmbedding's `LightweightLLMReranker` (bge-reranker-v2.5-gemma2-lightweight): bge-llm's
    /// layout with its own default prompt and a BOS always; scored by a layerwise head.
    BgeLightweight,
}

impl RerankTemplate {
    pub const NAMES: &'static str = "qwen3-reranker, bge-llm, bge-lightweight";

    pub fn name(self) -> &'static str {
        match self {
            RerankTemplate::Qwen3 => "qwen3-reranker",
            RerankTemplate::BgeLlm => "bge-llm",
            RerankTemplate::BgeLightweight => "bge-lightweight",
        }
    }

    /// The recipe a model's family was published with: Qwen3 → Qwen3-Reranker; every other
    /// decoder → FlagEmbedding's LLM reranker (bge-reranker-v2-gemma's).
    pub fn for_model_type(model_type: &str) -> Self {
        match model_type {
            "qwen3" => RerankTemplate::Qwen3,
            "cost_wise_gemma" => RerankTemplate::BgeLightweight,
            _ => RerankTemplate::BgeLlm,
        }
    }

    /// The instruction (Qwen3) or prompt (bge) used when none is given.
    pub fn default_prompt(self) -> &'static str {
        match self {
            RerankTemplate::Qwen3 => QWEN3_DEFAULT_INSTRUCTION,
            RerankTemplate::BgeLlm => BGE_DEFAULT_PROMPT,
            RerankTemplate::BgeLightweight => BGE_LIGHTWEIGHT_DEFAULT_PROMPT,
        }
    }

    /// Tokens per pair when no max length is asked for: the reference code's defaults (Qwen3's
    /// card: 8,192 in all; FlagEmbedding: 512 for the query and passage, plus separator and
    /// prompt).
    pub fn default_max_length(self) -> usize {
        match self {
            RerankTemplate::Qwen3 => 8192,
            RerankTemplate::BgeLlm | RerankTemplate::BgeLightweight => 512,
        }
    }
}

impl FromStr for RerankTemplate {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "qwen3-reranker" | "qwen3" => Ok(RerankTemplate::Qwen3),
            "bge-llm" | "bge-reranker-v2-gemma" | "bge" => Ok(RerankTemplate::BgeLlm),
            "bge-lightweight" => Ok(RerankTemplate::BgeLightweight),
            other => Err(ModelError::InvalidInput(format!(
                "unknown rerank template {other:?}; known: {}",
                Self::NAMES
            ))),
        }
    }
}

const QWEN3_PREFIX: &str = "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct provided. Note that the answer can only be \"yes\" or \"no\".<|im_end|>\n<|im_start|>user\n";
const QWEN3_SUFFIX: &str = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n";
const QWEN3_DEFAULT_INSTRUCTION: &str =
    "Given a web search query, retrieve relevant passages that answer the query";
const BGE_LIGHTWEIGHT_DEFAULT_PROMPT: &str =
    "Predict whether passage B contains an answer to query A.";
const BGE_DEFAULT_PROMPT: &str = "Given a query A and a passage B, determine whether the passage contains an answer to the query by providing a prediction of either 'Yes' or 'No'.";

/// One pair's tokens under a recipe.
pub struct EncodedPair {
    pub ids: Vec<u32>,
    /// Leading tokens that depend only on the query (and template), never on the document.
    pub query_len: usize,
    /// Whether the query or document was cut to fit.
    pub cut: bool,
}

/// A recipe bound to one tokenizer: the fixed token runs and output token ids, computed once.
#[derive(Clone)]
pub struct PairEncoder {
    template: RerankTemplate,
    /// Qwen3: the query+document budget is `max_length` minus prefix and suffix. bge: the
    /// passage's own cut; the query's is 3/4 of it.
    max_length: usize,
    prompt: String,
    /// Qwen3: system prefix and assistant suffix. bge: "\n" separator and prompt.
    fixed_before: Vec<u32>,
    fixed_after: Vec<u32>,
    /// bge: the tokenizer's BOS, when it has one distinct from its padding token.
    bos: Option<u32>,
    /// Vocabulary rows read at the last position: `[yes, no]` (Qwen3) or `[Yes]` (bge).
    output_tokens: Vec<u32>,
}

impl PairEncoder {
    /// `bos` and `pad` are the tokenizer's special token ids (tokenizer_config.json or GGUF
    /// metadata); `prompt` overrides the recipe's default instruction/prompt.
    pub fn new(
        template: RerankTemplate,
        tokenizer: &Tokenizer,
        max_length: usize,
        prompt: Option<&str>,
        bos: Option<u32>,
        pad: Option<u32>,
    ) -> Result<Self> {
        let encode = |text: &str| token_ids(tokenizer, text);
        let prompt = prompt.unwrap_or(template.default_prompt()).to_owned();
        let (fixed_before, fixed_after, bos, output_tokens) = match template {
            RerankTemplate::Qwen3 => {
                let id = |token: &str| {
                    tokenizer.token_to_id(token).ok_or_else(|| {
                        ModelError::Tokenizer(format!(
                            "the Qwen3-Reranker recipe reads the token {token:?}, which this tokenizer does not have"
                        ))
                    })
                };
                let outputs = vec![id("yes")?, id("no")?];
                (encode(QWEN3_PREFIX)?, encode(QWEN3_SUFFIX)?, None, outputs)
            }
            RerankTemplate::BgeLlm | RerankTemplate::BgeLightweight => {
                let yes = encode("Yes")?;
                let first = *yes
                    .first()
                    .ok_or_else(|| ModelError::Tokenizer("\"Yes\" encodes to no token".into()))?;
                // FlagLLMReranker skips a BOS equal to the padding token; the lightweight
                // reranker always prepends it.
                let bos = match template {
                    RerankTemplate::BgeLightweight => bos,
                    _ => bos.filter(|&b| Some(b) != pad),
                };
                (encode("\n")?, encode(&prompt)?, bos, vec![first])
            }
        };
        let fixed = fixed_before.len() + fixed_after.len() + usize::from(bos.is_some());
        if template == RerankTemplate::Qwen3 && max_length <= fixed {
            return Err(ModelError::InvalidInput(format!(
                "max length {max_length} leaves no room for the query and document (the template alone is {fixed} tokens)"
            )));
        }
        if max_length < 4 {
            return Err(ModelError::InvalidInput(format!(
                "max length {max_length} is too short for a query and a document"
            )));
        }
        Ok(PairEncoder {
            template,
            max_length,
            prompt,
            fixed_before,
            fixed_after,
            bos,
            output_tokens,
        })
    }

    pub fn template(&self) -> RerankTemplate {
        self.template
    }

    /// The same recipe with another instruction (Qwen3) or prompt (bge).
    pub fn with_prompt(&self, tokenizer: &Tokenizer, prompt: &str) -> Result<Self> {
        if crate::is_blank(prompt) {
            return Err(ModelError::InvalidInput("the prompt is empty".into()));
        }
        let mut out = self.clone();
        out.prompt = prompt.to_owned();
        if self.template != RerankTemplate::Qwen3 {
            out.fixed_after = token_ids(tokenizer, prompt)?;
        }
        Ok(out)
    }

    /// For FlagEmbedding's token compression: tokens that follow the query part (segment 0)
    /// but still count as query (the separator), and the tokens after the document (separator
    /// and prompt). `None` for recipes the lightweight reranker does not use.
    pub fn compression_spans(&self) -> Option<(usize, usize)> {
        match self.template {
            RerankTemplate::BgeLlm | RerankTemplate::BgeLightweight => Some((
                self.fixed_before.len(),
                self.fixed_before.len() + self.fixed_after.len(),
            )),
            RerankTemplate::Qwen3 => None,
        }
    }

    pub fn output_tokens(&self) -> &[u32] {
        &self.output_tokens
    }

    /// Most tokens one encoded pair can have.
    pub fn max_total_length(&self) -> usize {
        match self.template {
            RerankTemplate::Qwen3 => self.max_length,
            // FlagEmbedding cuts query + separator + passage at max_length + separator + prompt
            // and then appends the separator and the prompt once more.
            RerankTemplate::BgeLlm | RerankTemplate::BgeLightweight => {
                self.max_length + 2 * (self.fixed_before.len() + self.fixed_after.len())
            }
        }
    }

    /// Tokens of one pair, how many of them come before the document (the same for every
    /// document of a query: what pairs of one query share), and whether anything was cut.
    pub fn encode(
        &self,
        tokenizer: &Tokenizer,
        query: &str,
        document: &str,
    ) -> Result<EncodedPair> {
        let encode = |text: &str| token_ids(tokenizer, text);
        match self.template {
            RerankTemplate::Qwen3 => {
                // The card formats one string and cuts it from the right: the document goes
                // first, the query only when it alone is longer than the budget.
                let head = format!(
                    "<Instruct>: {}\n<Query>: {query}\n<Document>: ",
                    self.prompt
                );
                let text = format!("{head}{document}");
                let encoding = tokenizer
                    .encode(text.as_str(), false)
                    .map_err(|e| ModelError::Tokenizer(e.to_string()))?;
                let mut body = encoding.get_ids().to_vec();
                // Tokens wholly before the document; one that straddles the boundary (a space
                // merged with the document's first word) belongs to the document.
                let before = encoding
                    .get_offsets()
                    .iter()
                    .take_while(|(_, end)| *end <= head.len())
                    .count();
                let budget = self.max_length - self.fixed_before.len() - self.fixed_after.len();
                let cut = body.len() > budget;
                body.truncate(budget);
                let mut ids = Vec::with_capacity(
                    self.fixed_before.len() + body.len() + self.fixed_after.len(),
                );
                ids.extend_from_slice(&self.fixed_before);
                ids.extend_from_slice(&body);
                ids.extend_from_slice(&self.fixed_after);
                let query_len = (self.fixed_before.len() + before).min(ids.len());
                Ok(EncodedPair {
                    ids,
                    query_len,
                    cut,
                })
            }
            RerankTemplate::BgeLlm | RerankTemplate::BgeLightweight => {
                let (sep, prompt) = (&self.fixed_before, &self.fixed_after);
                let mut q = encode(&format!("A: {query}"))?;
                let mut p = encode(&format!("B: {document}"))?;
                let (q_full, p_full) = (q.len(), p.len());
                q.truncate(self.max_length * 3 / 4);
                p.truncate(self.max_length);
                let mut first: Vec<u32> = self.bos.into_iter().collect();
                first.extend_from_slice(&q);
                let mut second = sep.clone();
                second.extend_from_slice(&p);
                // `prepare_for_model(first, second, truncation='only_second')`: the second part
                // is cut from the right to fit; when it cannot fit at all transformers keeps
                // both whole (and logs an error), which is reproduced.
                let limit = self.max_length + sep.len() + prompt.len();
                let mut cut = q.len() < q_full || p.len() < p_full;
                if first.len() + second.len() > limit && first.len() < limit {
                    let keep = limit - first.len();
                    if keep > 0 {
                        second.truncate(keep);
                        cut = true;
                    }
                }
                let query_len = first.len();
                let mut ids = first;
                ids.extend_from_slice(&second);
                ids.extend_from_slice(sep);
                ids.extend_from_slice(prompt);
                Ok(EncodedPair {
                    ids,
                    query_len,
                    cut,
                })
            }
        }
    }

    /// The recipe's raw score from the output rows' logits at the last position.
    pub fn logit(&self, row: &[f32]) -> f32 {
        match (self.template, row) {
            (RerankTemplate::Qwen3, [yes, no, ..]) => yes - no,
            (RerankTemplate::BgeLlm | RerankTemplate::BgeLightweight, [yes, ..]) => *yes,
            _ => f32::NAN,
        }
    }
}

/// Token ids of `text` without special tokens, as the recipes tokenize each piece.
fn token_ids(tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    Ok(tokenizer
        .encode(text, false)
        .map_err(|e| ModelError::Tokenizer(e.to_string()))?
        .get_ids()
        .to_vec())
}
