//! The checks every backend applies to a batch before writing any of it.

use std::collections::HashSet;

use crate::document::{Operation, MAX_ID_BYTES};
use crate::error::{IndexError, Result};

/// Refuses the whole batch on an empty, too long ([`MAX_ID_BYTES`]) or repeated id, a document without chunks, or a vector
/// of the wrong dimension or with non-finite values. Shared so that every backend refuses the
/// same batches with the same messages.
pub fn validate_batch(operations: &[Operation], dim: usize) -> Result<()> {
    let mut seen = HashSet::new();
    for op in operations {
        let id = op.id();
        if id.is_empty() {
            return Err(IndexError::InvalidInput("a document id is empty".into()));
        }
        if id.len() > MAX_ID_BYTES {
            return Err(IndexError::InvalidInput(too_long_id(id)));
        }
        if !seen.insert(id) {
            return Err(IndexError::InvalidInput(format!(
                "document id {id:?} appears twice in one batch"
            )));
        }
        if let Operation::Upsert(d) = op {
            if d.chunks.is_empty() {
                return Err(IndexError::InvalidInput(format!(
                    "document {id:?} has no chunks"
                )));
            }
            for c in &d.chunks {
                if c.vector.len() != dim {
                    return Err(IndexError::InvalidInput(format!(
                        "document {id:?}: vector has {} dimensions, the collection {dim}",
                        c.vector.len()
                    )));
                }
                if c.vector.iter().any(|x| !x.is_finite()) {
                    return Err(IndexError::InvalidInput(format!(
                        "document {id:?}: vector has NaN or infinite values"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// The message for an id over [`MAX_ID_BYTES`] (its start, so the user can find it).
pub fn too_long_id(id: &str) -> String {
    let mut end = 40.min(id.len());
    while !id.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "document id {:?}… is {} bytes; ids are at most {MAX_ID_BYTES} bytes",
        &id[..end],
        id.len()
    )
}
