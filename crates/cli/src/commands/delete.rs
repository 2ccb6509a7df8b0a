//! `sift delete`: remove documents by id.

use anyhow::Result;
use clap::Args;
use sift_index::store::{self, Access, Location};
use sift_pipeline::Pipeline;

/// Delete documents from a collection by id, in one committed batch. Unknown ids are reported
/// and ignored.
#[derive(Args)]
#[command(after_help = "Example:\n  sift delete --collection scifact 4983 5836")]
pub struct DeleteArgs {
    /// Ids to delete.
    #[arg(required = true)]
    ids: Vec<String>,

    /// Collection: a directory, or postgres://USER@HOST/DB?collection=NAME (PostgreSQL + pgvector).
    #[arg(long, short, value_parser = crate::location_arg::LocationParser)]
    collection: Location,
}

pub fn run(args: DeleteArgs) -> Result<()> {
    let backend = store::open(&args.collection, Access::Write)?;
    let mut pipeline = Pipeline::new(None, None, backend)?;
    let mut ids = args.ids;
    ids.sort();
    ids.dedup();
    let (deleted, seq) = pipeline.delete(&ids)?;
    for id in ids.iter().filter(|id| !deleted.contains(id)) {
        eprintln!("not found: {id}");
    }
    pipeline.backend_mut().compact()?;
    eprintln!(
        "deleted {} document(s) in batch {seq}; {} remain",
        deleted.len(),
        pipeline.backend().len()?
    );
    Ok(())
}
