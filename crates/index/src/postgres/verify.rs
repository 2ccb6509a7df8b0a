//! `verify`: every derived part agrees with the documents, checked in SQL.

use super::PostgresCollection;
use crate::error::{IndexError, Result};

impl PostgresCollection {
    pub(super) fn verify_parts(&self) -> Result<()> {
        let s = &self.schema;
        let checks = [
            (
                "the document count matches the documents",
                format!("SELECT (SELECT documents FROM {s}.state) = (SELECT count(*) FROM {s}.documents)"),
            ),
            (
                "the passage count and total length match the passages",
                format!(
                    "SELECT (SELECT passages FROM {s}.state) = (SELECT count(*) FROM {s}.passages)
                        AND (SELECT passage_terms FROM {s}.state) = (SELECT coalesce(sum(terms), 0) FROM {s}.passages)"
                ),
            ),
            (
                "every document has chunks numbered from 0 without gaps",
                format!(
                    "SELECT NOT EXISTS (SELECT 1 FROM {s}.documents d LEFT JOIN {s}.chunks c ON c.doc = d.key
                        GROUP BY d.key HAVING count(c.chunk) = 0 OR max(c.chunk) + 1 <> count(c.chunk))"
                ),
            ),
            (
                "every chunk, passage and posting belongs to a document",
                format!(
                    "SELECT NOT EXISTS (SELECT 1 FROM {s}.chunks c WHERE NOT EXISTS (SELECT 1 FROM {s}.documents d WHERE d.key = c.doc))
                        AND NOT EXISTS (SELECT 1 FROM {s}.passages p WHERE NOT EXISTS (SELECT 1 FROM {s}.documents d WHERE d.key = p.doc))
                        AND NOT EXISTS (SELECT 1 FROM {s}.postings t WHERE NOT EXISTS (SELECT 1 FROM {s}.documents d WHERE d.key = t.doc))"
                ),
            ),
            (
                "the document frequencies match the postings",
                format!(
                    "SELECT NOT EXISTS (SELECT 1 FROM (SELECT term, count(*) AS n FROM {s}.postings GROUP BY term) p
                        FULL JOIN (SELECT term, df FROM {s}.terms WHERE df <> 0) t USING (term)
                        WHERE p.n IS DISTINCT FROM t.df)"
                ),
            ),
            (
                "every document has passages, and each passage's postings add up to its length",
                format!(
                    "SELECT NOT EXISTS (SELECT 1 FROM {s}.documents d WHERE NOT EXISTS (SELECT 1 FROM {s}.passages p WHERE p.doc = d.key))
                        AND NOT EXISTS (SELECT 1 FROM {s}.passages p
                            LEFT JOIN (SELECT doc, passage, sum(tf) AS n, min(passage_terms) AS lo, max(passage_terms) AS hi
                                       FROM {s}.postings GROUP BY doc, passage) t
                            ON t.doc = p.doc AND t.passage = p.passage
                            WHERE coalesce(t.n, 0) <> p.terms OR t.lo <> p.terms OR t.hi <> p.terms)"
                ),
            ),
        ];
        self.read(postgres::IsolationLevel::ReadCommitted, |tx| {
            for (what, sql) in &checks {
                let ok: bool = tx.query_one(sql.as_str(), &[]).map_err(self.err())?.get(0);
                if !ok {
                    return Err(IndexError::Corrupt {
                        path: self.address.redacted().into(),
                        reason: format!("not true: {what}"),
                    });
                }
            }
            Ok(())
        })
    }
}
