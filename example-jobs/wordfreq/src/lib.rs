//! `wordfreq`: counts the words of a text and returns the most frequent ones.
use std::collections::{HashMap, HashSet};

use elihu_guest::{JobInfo, job};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Context {
    text: String,
    #[serde(default = "default_top")]
    top: usize,
    #[serde(default)]
    case_sensitive: bool,
    #[serde(default = "default_min_length")]
    min_length: usize,
    #[serde(default)]
    stopwords: Vec<String>,
}

fn default_top() -> usize {
    10
}
fn default_min_length() -> usize {
    1
}

#[derive(Serialize)]
struct Count {
    word: String,
    count: u64,
}

#[derive(Serialize)]
struct Output {
    total_words: u64,
    distinct_words: usize,
    top: Vec<Count>,
}

#[job]
fn run(ctx: Context, _job: &JobInfo) -> Result<Output, String> {
    let fold = |w: &str| if ctx.case_sensitive { w.to_string() } else { w.to_lowercase() };
    let stop: HashSet<String> = ctx.stopwords.iter().map(|w| fold(w)).collect();
    let mut counts: HashMap<String, u64> = HashMap::new();
    let mut total = 0u64;
    for raw in ctx.text.split(|c: char| !(c.is_alphanumeric() || c == '\'')) {
        let word = raw.trim_matches('\'');
        if word.chars().count() < ctx.min_length {
            continue;
        }
        let word = fold(word);
        if stop.contains(&word) {
            continue;
        }
        total += 1;
        *counts.entry(word).or_default() += 1;
    }
    elihu_guest::info!("{total} words, {} distinct", counts.len());
    let distinct_words = counts.len();
    let mut top: Vec<Count> = counts.into_iter().map(|(word, count)| Count { word, count }).collect();
    top.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.word.cmp(&b.word)));
    top.truncate(ctx.top);
    Ok(Output { total_words: total, distinct_words, top })
}
