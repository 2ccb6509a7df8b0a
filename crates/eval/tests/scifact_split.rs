//! The default dev split on SciFact's training judgements (read from ../shared, never copied):
//! no dev query has a relevant abstract that is a training positive, and the dev set is sized
//! like the first rule's (171 queries, 111 of them "seen").

use std::path::PathBuf;

use sift_eval::{seen_queries, Dataset, DevSplit, Qrels, Split, SplitRule};

fn scifact() -> PathBuf {
    std::env::var_os("SIFT_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"))
        .join("data/scifact")
}

fn side(qrels: &Qrels, split: &DevSplit, which: Split) -> Qrels {
    let mut q = qrels.clone();
    q.judgements.retain(|id, _| split.contains(which, id));
    q
}

#[test]
fn the_default_scifact_dev_split_is_leak_free() {
    let data = Dataset::load(&scifact(), None).expect("SciFact in ../shared/data/scifact");
    let total = data.qrels.judgements.len();
    for rule in [SplitRule::Documents, SplitRule::Families, SplitRule::Ids] {
        let split = DevSplit::new(&data.qrels, rule);
        let dev = side(&data.qrels, &split, Split::Dev);
        let train = side(&data.qrels, &split, Split::Train);
        let seen = seen_queries(&dev, &train).len();
        eprintln!(
            "{rule:?}: {} dev, {} train, {} left out, {seen} dev queries seen in training",
            dev.judgements.len(),
            train.judgements.len(),
            split.left_out
        );
        if rule == SplitRule::Ids {
            assert_eq!(
                (dev.judgements.len(), seen),
                (171, 111),
                "the old rule's numbers"
            );
        } else {
            assert_eq!(seen, 0, "{rule:?} leaks");
            let share = dev.judgements.len() as f64 / total as f64;
            assert!(
                (0.15..0.25).contains(&share),
                "{rule:?}: dev share {share:.3}"
            );
        }
    }
}
