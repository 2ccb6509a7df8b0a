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
                if let Some(problem) = vector_problem(&c.vector) {
                    return Err(IndexError::InvalidInput(format!(
                        "document {id:?}: vector {problem}"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// What makes `vector` unusable for cosine similarity, if anything: a NaN or infinite value
/// (it would poison every comparison), or no length to normalize by (an all-zero vector has no
/// direction; sift stores vectors divided by their L2 norm). Shared by every place vectors come
/// in (documents, queries, backends) so they refuse the same vectors with the same words.
pub fn vector_problem(vector: &[f32]) -> Option<String> {
    if let Some(i) = vector.iter().position(|x| !x.is_finite()) {
        return Some(format!("has a NaN or infinite value at index {i}"));
    }
    let norm: f64 = vector.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
    // Below f32's smallest normal squared, dividing by the norm overflows.
    if norm.sqrt() < f64::from(f32::MIN_POSITIVE) {
        return Some("is all zeros (it has no direction to compare)".into());
    }
    None
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
