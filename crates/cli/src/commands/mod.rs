pub mod bench;
mod bench_search;
pub mod copy;
pub mod delete;
mod distill_flags;
pub mod embed;
pub mod eval;
pub mod index;
mod memory;
pub mod models;
mod peak;
pub mod rerank;
pub mod search;
pub mod serve;
pub mod train_embedder;
pub mod train_reranker;

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar on stderr (drawn only when stderr is a terminal).
pub fn progress_bar(total: usize, unit: &str) -> ProgressBar {
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{bar:40}} {{pos}}/{{len}} {unit} ({{per_sec}}, ETA {{eta}})"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}
