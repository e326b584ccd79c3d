//! The model's tokenizer: a local HF `tokenizer.json`, or the server's `/tokenize` and
//! `/detokenize` endpoints (vLLM, SGLang and `benchctl sim` have them).
//!
//! Used to build prompts of an exact token length before the run and to count output tokens
//! after it — never inside the read loop.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error(
        "--tokenizer {path}: no tokenizer.json there (give a tokenizer.json file or a directory holding one)"
    )]
    NotFound { path: PathBuf },
    #[error("--tokenizer {path}: cannot load it as a Hugging Face tokenizer: {reason}")]
    Load { path: PathBuf, reason: String },
    #[error(
        "no tokenizer: the server at {base_url} has no usable /tokenize endpoint ({reason}); pass --model-path DIR (with tokenizer.json) or --tokenizer PATH"
    )]
    NoRemote { base_url: String, reason: String },
    #[error("tokenizer failed: {0}")]
    Encode(String),
    #[error("the server's /{endpoint} failed: {reason}")]
    Remote {
        endpoint: &'static str,
        reason: String,
    },
}

/// Where tokens are counted.
#[derive(Clone)]
pub enum Tokenizer {
    Local {
        tokenizer: Arc<tokenizers::Tokenizer>,
        id: String,
    },
    Remote {
        client: reqwest::Client,
        base_url: String,
        model: String,
    },
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.id())
    }
}

impl Tokenizer {
    /// Loads `tokenizer.json` from a file or a directory (a model directory).
    pub fn from_path(path: &Path) -> Result<Tokenizer, TokenizerError> {
        let file = if path.is_dir() {
            path.join("tokenizer.json")
        } else {
            path.to_path_buf()
        };
        if !file.is_file() {
            return Err(TokenizerError::NotFound {
                path: path.to_path_buf(),
            });
        }
        let tokenizer =
            tokenizers::Tokenizer::from_file(&file).map_err(|e| TokenizerError::Load {
                path: file.clone(),
                reason: e.to_string(),
            })?;
        Ok(Tokenizer::Local {
            tokenizer: Arc::new(tokenizer),
            id: path.display().to_string(),
        })
    }

    /// A tokenizer parsed from JSON text (an embedded one).
    pub fn from_json(json: &str, id: &str) -> Result<Tokenizer, TokenizerError> {
        let tokenizer =
            json.parse::<tokenizers::Tokenizer>()
                .map_err(|e| TokenizerError::Load {
                    path: id.into(),
                    reason: e.to_string(),
                })?;
        Ok(Tokenizer::Local {
            tokenizer: Arc::new(tokenizer),
            id: id.to_string(),
        })
    }

    /// The server's tokenizer, after checking that `/tokenize` answers.
    pub async fn remote(
        client: reqwest::Client,
        base_url: &str,
        model: &str,
    ) -> Result<Tokenizer, TokenizerError> {
        let t = Tokenizer::Remote {
            client,
            base_url: base_url.trim_end_matches('/').to_string(),
            model: model.to_string(),
        };
        match t.encode("hello world").await {
            Ok(ids) if !ids.is_empty() => Ok(t),
            Ok(_) => Err(TokenizerError::NoRemote {
                base_url: base_url.into(),
                reason: "it returned no tokens".into(),
            }),
            Err(e) => Err(TokenizerError::NoRemote {
                base_url: base_url.into(),
                reason: e.to_string(),
            }),
        }
    }

    pub fn id(&self) -> String {
        match self {
            Tokenizer::Local { id, .. } => id.clone(),
            Tokenizer::Remote { base_url, .. } => format!("{base_url}/tokenize"),
        }
    }

    pub fn local(&self) -> Option<&tokenizers::Tokenizer> {
        match self {
            Tokenizer::Local { tokenizer, .. } => Some(tokenizer),
            Tokenizer::Remote { .. } => None,
        }
    }

    /// Token ids of `text`, without special tokens.
    pub async fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        match self {
            Tokenizer::Local { tokenizer, .. } => tokenizer
                .encode_fast(text, false)
                .map(|e| e.get_ids().to_vec())
                .map_err(|e| TokenizerError::Encode(e.to_string())),
            Tokenizer::Remote { .. } => {
                let v = self
                    .post(
                        "tokenize",
                        json!({"model": self.model(), "prompt": text, "add_special_tokens": false}),
                    )
                    .await?;
                let ids = v.get("tokens").and_then(|t| t.as_array()).ok_or_else(|| {
                    TokenizerError::Remote {
                        endpoint: "tokenize",
                        reason: format!("no `tokens` array in {v}"),
                    }
                })?;
                Ok(ids
                    .iter()
                    .filter_map(|x| x.as_u64())
                    .map(|x| x as u32)
                    .collect())
            }
        }
    }

    /// Text of token ids.
    pub async fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        match self {
            Tokenizer::Local { tokenizer, .. } => tokenizer
                .decode(ids, false)
                .map_err(|e| TokenizerError::Encode(e.to_string())),
            Tokenizer::Remote { .. } => {
                let v = self
                    .post("detokenize", json!({"model": self.model(), "tokens": ids}))
                    .await?;
                v.get("prompt")
                    .and_then(|p| p.as_str())
                    .map(str::to_owned)
                    .ok_or_else(|| TokenizerError::Remote {
                        endpoint: "detokenize",
                        reason: format!("no `prompt` string in {v}"),
                    })
            }
        }
    }

    /// Ids a random prompt may draw from: the vocabulary minus special/added tokens (local), or
    /// the ids of a built-in text (remote, where the vocabulary is unknown).
    pub async fn id_pool(&self) -> Result<Vec<u32>, TokenizerError> {
        match self {
            Tokenizer::Local { tokenizer, .. } => {
                let added: std::collections::HashSet<u32> = tokenizer
                    .get_added_tokens_decoder()
                    .keys()
                    .copied()
                    .collect();
                let n = tokenizer.get_vocab_size(false) as u32;
                Ok((0..n).filter(|i| !added.contains(i)).collect())
            }
            Tokenizer::Remote { .. } => {
                let mut ids = self.encode(POOL_TEXT).await?;
                ids.sort_unstable();
                ids.dedup();
                Ok(ids)
            }
        }
    }

    /// Output tokens of `text` and, for each token, the byte offset where it ends (local only).
    pub fn token_ends(&self, text: &str) -> Option<Vec<usize>> {
        let t = self.local()?;
        let enc = t.encode(text, false).ok()?;
        Some(enc.get_offsets().iter().map(|&(_, end)| end).collect())
    }

    fn model(&self) -> &str {
        match self {
            Tokenizer::Remote { model, .. } => model,
            Tokenizer::Local { .. } => "",
        }
    }

    async fn post(
        &self,
        endpoint: &'static str,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, TokenizerError> {
        let Tokenizer::Remote {
            client, base_url, ..
        } = self
        else {
            unreachable!("post is only called for a remote tokenizer")
        };
        let err = |reason: String| TokenizerError::Remote { endpoint, reason };
        let resp = client
            .post(format!("{base_url}/{endpoint}"))
            .json(&body)
            .timeout(std::time::Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| err(crate::client::error_chain(&e)))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| err(crate::client::error_chain(&e)))?;
        if !status.is_success() {
            return Err(err(format!(
                "HTTP {status}: {}",
                crate::error::server_message(&bytes)
            )));
        }
        serde_json::from_slice(&bytes).map_err(|e| err(format!("not JSON: {e}")))
    }
}

/// Text whose tokens seed random prompts when only the server's tokenizer is available.
const POOL_TEXT: &str = "The quick brown fox jumps over the lazy dog while seven wizards quietly \
    judge boxing matches. Benchmarks measure latency, throughput and the tail of the distribution; \
    a server that batches requests trades one for the other. Numbers such as 0 1 2 3 4 5 6 7 8 9 10 \
    42 128 1024 and 2026 appear, together with punctuation: commas, periods; colons! questions? \
    (parentheses) [brackets] {braces} \"quotes\" 'apostrophes' - dashes / slashes & ampersands. \
    Mountains rivers forests cities oceans deserts islands valleys bridges towers gardens markets \
    engines circuits signals memory caches kernels threads sockets packets streams tokens models.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tokenizer_names_the_path() {
        let e = Tokenizer::from_path(Path::new("/nonexistent/model")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/model"), "{e}");
        assert!(e.to_string().contains("--tokenizer"), "{e}");
    }
}
