//! `sift copy`: move a collection to another location — a directory into PostgreSQL when it
//! outgrows one machine, or back — without embedding anything again.

use std::time::Instant;

use anyhow::{bail, Result};
use clap::Args;
use sift_index::store::{self, Access, Location};
use sift_index::{Document, IndexedDocument, Operation};

/// Copy a collection to another location: its documents, chunks and vectors as they are (no
/// model runs), with the same embedding model, chunking and keyword analyzer. Documents go in
/// committed batches; an interrupted copy is finished by running it again (documents already
/// copied unchanged are skipped).
#[derive(Args)]
#[command(after_help = "Examples:\n  \
sift copy --from scifact --to 'postgres://sift@db.internal/search?collection=scifact'\n  \
sift copy --from 'postgres://sift@db.internal/search?collection=scifact' --to ./scifact-backup")]
pub struct CopyArgs {
    /// The collection to copy: a directory or a postgres:// address.
    #[arg(long, value_parser = crate::location_arg::LocationParser)]
    from: Location,

    /// Where to copy it: a new collection (created), or one made with the same embedding
    /// model (documents with the same id are replaced).
    #[arg(long, value_parser = crate::location_arg::LocationParser)]
    to: Location,

    /// Documents per committed batch.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    batch_size: u64,
}

pub fn run(args: CopyArgs) -> Result<()> {
    if args.from == args.to {
        bail!("--from and --to are the same collection");
    }
    let source = store::open(&args.from, Access::Search)?;
    let manifest = source.manifest().clone();
    let total = source.len()?;
    let mut target = store::open_or_create(&args.to, manifest.clone())?;
    if target.manifest().analyzer != manifest.analyzer {
        target.set_analyzer(manifest.analyzer)?;
    }
    if target.manifest().bm25 != manifest.bm25 {
        target.set_bm25(manifest.bm25)?;
    }
    let started = Instant::now();
    let bar = super::progress_bar(total, "documents");
    let batch_size = args.batch_size as usize;
    let (mut copied, mut skipped) = (0usize, 0usize);
    let mut batch: Vec<IndexedDocument> = Vec::with_capacity(batch_size);
    let mut flush = |batch: &mut Vec<IndexedDocument>| -> sift_index::Result<()> {
        let unchanged = {
            let documents: Vec<&Document> = batch.iter().map(|d| &d.document).collect();
            target.unchanged(&documents)?
        };
        let before = batch.len();
        let changed: Vec<Operation> = batch
            .drain(..)
            .zip(unchanged)
            .filter_map(|(d, same)| (!same).then_some(Operation::Upsert(d)))
            .collect();
        copied += changed.len();
        skipped += before - changed.len();
        target.commit(changed)?;
        target.compact_if_due()?;
        Ok(())
    };
    source.export(&mut |d| {
        batch.push(d);
        bar.inc(1);
        if batch.len() >= batch_size {
            flush(&mut batch)?;
        }
        Ok(())
    })?;
    flush(&mut batch)?;
    bar.finish_and_clear();
    target.compact()?;
    let stats = target.stats()?;
    eprintln!(
        "copied {copied} documents from {} to {} in {:.1}s ({skipped} already there unchanged); {} now holds {} documents, {} chunks",
        args.from,
        args.to,
        started.elapsed().as_secs_f64(),
        args.to,
        stats.documents,
        stats.chunks
    );
    Ok(())
}
