//! The installed pgvector's version: what it can do and what it gets wrong.

/// The installed pgvector's version, for what it can do and what it gets wrong.
pub(super) struct PgvectorVersion {
    pub(super) text: String,
    number: (u32, u32, u32),
}

impl PgvectorVersion {
    pub(super) fn parse(text: &str) -> Self {
        let mut parts = text.split('.').map(|p| {
            p.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .unwrap_or(0)
        });
        let number = (
            parts.next().unwrap_or(0),
            parts.next().unwrap_or(0),
            parts.next().unwrap_or(0),
        );
        PgvectorVersion {
            text: text.to_owned(),
            number,
        }
    }

    /// HNSW indexes arrived in 0.5.0.
    pub(super) fn has_hnsw(&self) -> bool {
        self.number >= (0, 5, 0)
    }

    /// `hnsw.iterative_scan` arrived in 0.8.0.
    pub(super) fn has_iterative_scan(&self) -> bool {
        self.number >= (0, 8, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::PgvectorVersion;

    #[test]
    fn pgvector_versions_say_what_they_can_do() {
        let v = |t: &str| PgvectorVersion::parse(t);
        assert!(!v("0.4.4").has_hnsw());
        assert!(v("0.5.0").has_hnsw() && !v("0.7.4").has_iterative_scan());
        assert!(v("0.8.0").has_iterative_scan() && v("0.10.0").has_iterative_scan());
        assert!(v("1.0.0-beta").has_hnsw());
    }
}
