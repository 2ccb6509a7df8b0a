//! `sift delete`: remove documents by id.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use sift_index::{AnnParams, Collection, Operation};

/// Delete documents from a collection by id, in one committed batch. Unknown ids are reported
/// and ignored.
#[derive(Args)]
pub struct DeleteArgs {
    /// Ids to delete.
    #[arg(required = true)]
    ids: Vec<String>,

    /// Collection directory.
    #[arg(long, short)]
    collection: PathBuf,
}

pub fn run(args: DeleteArgs) -> Result<()> {
    let mut c = Collection::open(&args.collection, AnnParams::default())?;
    let mut ids = args.ids;
    ids.sort();
    ids.dedup();
    let (present, missing): (Vec<String>, Vec<String>) =
        ids.into_iter().partition(|id| c.get(id).is_some());
    for id in &missing {
        eprintln!("not found: {id}");
    }
    let n = present.len();
    c.commit(present.into_iter().map(Operation::Delete).collect())?;
    c.compact()?;
    eprintln!("deleted {n} document(s); {} remain", c.len());
    Ok(())
}
