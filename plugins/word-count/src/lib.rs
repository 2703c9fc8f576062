//! `word-count`: counts words and the most frequent ones (task type `word-count`).
//!
//! Payload `{"text": "..."}`; output `{"words": N, "top": [[word, count], ...]}`:
//!
//! * a word is a maximal run of alphanumeric characters (Unicode
//!   [`char::is_alphanumeric`]); everything else, apostrophes included, separates words,
//!   so `don't` counts as `don` and `t`;
//! * words are lowercased (Unicode [`str::to_lowercase`]) before counting;
//! * `words` is the number of words in the text (not of distinct words);
//! * `top` holds at most 10 distinct words, most frequent first, ties in alphabetical
//!   (byte) order.
//!
//! Any other payload is a non-retryable error.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use sentinel_sdk::{Executor, Output, Task, TaskError};

/// How many words `top` holds at most.
pub const TOP: usize = 10;

#[derive(Deserialize)]
struct Input {
    text: String,
}

/// The output of a count.
#[derive(Serialize, Debug, PartialEq)]
pub struct Counted {
    /// Number of words.
    pub words: u64,
    /// The most frequent words with their counts.
    pub top: Vec<(String, u64)>,
}

/// Counts the words of `text` (see the crate docs for the rules).
pub fn count(text: &str) -> Counted {
    let mut counts: HashMap<String, u64> = HashMap::new();
    let mut words = 0u64;
    for word in text.split(|c: char| !c.is_alphanumeric()) {
        if word.is_empty() {
            continue;
        }
        words += 1;
        *counts.entry(word.to_lowercase()).or_insert(0) += 1;
    }
    let mut top: Vec<(String, u64)> = counts.into_iter().collect();
    top.sort_unstable_by(|(wa, ca), (wb, cb)| cb.cmp(ca).then_with(|| wa.cmp(wb)));
    top.truncate(TOP);
    Counted { words, top }
}

/// The `word-count` executor.
pub struct WordCount;

impl Executor for WordCount {
    fn run(task: Task) -> Result<Output, TaskError> {
        let input: Input = task.json()?;
        Output::json(&count(&input.text))
    }
}

sentinel_sdk::export_executor!(WordCount);

#[cfg(test)]
mod tests {
    use super::*;

    fn top(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
        pairs.iter().map(|(w, c)| (w.to_string(), *c)).collect()
    }

    #[test]
    fn counts_and_ranks() {
        let c = count("The cat, the DOG; the cat!  Émile émile don't");
        assert_eq!(c.words, 10);
        assert_eq!(
            c.top,
            top(&[
                ("the", 3),
                ("cat", 2),
                ("émile", 2),
                ("dog", 1),
                ("don", 1),
                ("t", 1)
            ])
        );
    }

    #[test]
    fn top_is_capped_and_ties_alphabetical() {
        let text = "l k j i h g f e d c b a a";
        let c = count(text);
        assert_eq!(c.words, 13);
        assert_eq!(c.top.len(), 10);
        assert_eq!(c.top[0], ("a".to_string(), 2));
        assert_eq!(c.top[1], ("b".to_string(), 1));
        assert_eq!(c.top[9], ("j".to_string(), 1));
    }

    #[test]
    fn empty_text_and_json_shape() {
        let out = WordCount::run(Task::new("word-count", br#"{"text":""}"#.to_vec())).unwrap();
        assert_eq!(out.as_bytes(), br#"{"words":0,"top":[]}"#);
        let out = WordCount::run(Task::new("word-count", br#"{"text":"a b a"}"#.to_vec())).unwrap();
        assert_eq!(out.as_bytes(), br#"{"words":3,"top":[["a",2],["b",1]]}"#);
    }

    #[test]
    fn invalid_payload_is_fatal() {
        let err = WordCount::run(Task::new("word-count", br#"{"text": 1}"#.to_vec())).unwrap_err();
        assert!(!err.retryable);
    }
}
