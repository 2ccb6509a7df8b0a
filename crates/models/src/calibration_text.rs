//! The text the int8 engine calibrates on when a model loads (see `onnx::calibrate`).
//!
//! Short, varied, and written for sift: questions and passages from several fields, a title
//! line, numbers, code and a list, so that every token role a model treats specially (starts,
//! separators, punctuation, digits) shows up. Cross-encoders see each query paired with a
//! matching and a non-matching passage.

/// Search-style queries.
pub const QUERIES: &[&str] = &[
    "how does vitamin D deficiency affect bone density in older adults?",
    "statute of limitations for breach of contract",
    "python read large csv file in chunks",
    "what causes the northern lights",
    "Best budget laptop 2024 for students",
    "symptoms of iron overload",
];

/// Passages; `PASSAGES[i]` answers `QUERIES[i]` for `i < QUERIES.len()`.
pub const PASSAGES: &[&str] = &[
    "Vitamin D and bone health\nLow serum 25-hydroxyvitamin D reduces calcium absorption in the \
     gut. In a cohort of 1,204 adults over 65, deficiency (< 20 ng/mL) was associated with a 3.1% \
     lower hip bone mineral density and a higher fracture rate after adjusting for age and sex.",
    "In most U.S. states, a claim for breach of a written contract must be filed within four to \
     six years of the breach; oral contracts often have shorter periods. The clock usually starts \
     when the breach occurs, not when it is discovered.",
    "Use pandas.read_csv with the chunksize argument: `for chunk in pd.read_csv(path, \
     chunksize=100_000): process(chunk)`. Each chunk is a DataFrame, so memory stays bounded \
     regardless of the file's size.",
    "Aurorae form when charged particles from the solar wind are guided by Earth's magnetic field \
     toward the poles and collide with oxygen and nitrogen atoms in the upper atmosphere, which \
     then emit green, red and violet light.",
    "We tested 14 laptops under $700. Our pick: 16 GB RAM, a 512 GB SSD, an 8-core processor and \
     a battery that lasted 11 hours in our video test — enough for a full day of lectures.",
    "Hereditary haemochromatosis causes the body to absorb too much iron. Early symptoms include \
     fatigue, joint pain and abdominal pain; untreated, iron deposits can damage the liver, heart \
     and pancreas.",
    "The committee approved the budget on Tuesday by a vote of 7 to 2, allocating 1.2 million \
     euros to road repairs and postponing the decision on the new library until March.",
    "Mitochondria produce ATP through oxidative phosphorylation: electrons pass along the \
     transport chain in the inner membrane, pumping protons whose return through ATP synthase \
     drives the phosphorylation of ADP.",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_query_has_its_passage() {
        assert!(QUERIES.len() < PASSAGES.len());
        assert!(QUERIES.iter().chain(PASSAGES).all(|t| !t.trim().is_empty()));
    }
}
