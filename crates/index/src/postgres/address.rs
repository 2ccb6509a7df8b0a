//! `postgres://` collection addresses: a libpq connection URL plus sift's own `collection`
//! parameter.

use crate::error::{IndexError, Result};

/// A PostgreSQL database, and optionally one collection in it.
///
/// Written as a libpq URL with one extra query parameter, `collection=NAME`:
/// `postgres://user:password@host:port/database?collection=scifact&sslmode=disable`. Every
/// other parameter is the connection's (tokio-postgres reads the libpq ones it knows:
/// `sslmode`, `connect_timeout`, `target_session_attrs`, `load_balance_hosts`, several
/// comma-separated hosts, …). `sift serve --collections` takes the URL without `collection`.
#[derive(Clone, PartialEq, Eq)]
pub struct PgAddress {
    /// The connection URL with `collection` removed.
    url: String,
    collection: Option<String>,
}

impl PgAddress {
    pub fn parse(s: &str) -> Result<Self> {
        let (base, query) = match s.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (s, None),
        };
        let mut collection = None;
        let mut kept = Vec::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("collection", name)) => {
                    if collection.replace(name.to_owned()).is_some() {
                        return Err(IndexError::InvalidInput(format!(
                            "{}: `collection` is given twice",
                            redact(s)
                        )));
                    }
                }
                _ => kept.push(pair),
            }
        }
        if let Some(name) = &collection {
            crate::store::validate_name(name)?;
        }
        let url = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        let address = PgAddress { url, collection };
        // Refuse what the client cannot read now, not at the first connection.
        address.config()?;
        Ok(address)
    }

    /// The same database, collection `name`.
    pub fn with_collection(&self, name: &str) -> PgAddress {
        PgAddress {
            url: self.url.clone(),
            collection: Some(name.to_owned()),
        }
    }

    pub fn collection(&self) -> Option<&str> {
        self.collection.as_deref()
    }

    /// The collection's name, or the refusal of an address that names none.
    pub fn require_collection(&self) -> Result<&str> {
        self.collection().ok_or_else(|| {
            IndexError::InvalidInput(format!(
                "{self}: name the collection with ?collection=NAME (a database address without one is for `sift serve --collections`)"
            ))
        })
    }

    pub fn config(&self) -> Result<postgres::Config> {
        self.url.parse::<postgres::Config>().map_err(|e| {
            IndexError::InvalidInput(format!(
                "{}: not a PostgreSQL connection URL: {e}",
                redact(&self.url)
            ))
        })
    }

    /// The address without credentials, for messages and logs.
    pub fn redacted(&self) -> String {
        self.to_string()
    }
}

impl std::fmt::Display for PgAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = redact(&self.url);
        match &self.collection {
            Some(c) if url.contains('?') => write!(f, "{url}&collection={c}"),
            Some(c) => write!(f, "{url}?collection={c}"),
            None => f.write_str(&url),
        }
    }
}

impl std::fmt::Debug for PgAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgAddress({self})")
    }
}

/// A URL with its password replaced by `***` (the userinfo's part after `:`, and a `password=`
/// parameter), for messages.
pub fn redact(url: &str) -> String {
    let mut out = match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s && !url[s + 3..at].contains('/') => {
            let userinfo = &url[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    };
    if let Some(q) = out.find('?') {
        let params: Vec<String> = out[q + 1..]
            .split('&')
            .map(|p| match p.split_once('=') {
                Some(("password", _)) => "password=***".to_owned(),
                _ => p.to_owned(),
            })
            .collect();
        out = format!("{}?{}", &out[..q], params.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_collection_parameter_is_sifts_and_the_rest_the_connections() {
        let a = PgAddress::parse(
            "postgres://me:secret@db.example:5433/search?sslmode=disable&collection=sci-fact",
        )
        .unwrap();
        assert_eq!(a.collection(), Some("sci-fact"));
        let config = a.config().unwrap();
        assert_eq!(config.get_dbname(), Some("search"));
        assert_eq!(config.get_ports(), [5433]);
        let shown = a.to_string();
        assert!(!shown.contains("secret"), "{shown}");
        assert!(
            shown.ends_with("?sslmode=disable&collection=sci-fact"),
            "{shown}"
        );
        let b = PgAddress::parse("postgresql://me@h1,h2/db").unwrap();
        assert_eq!(b.collection(), None);
        assert!(b.require_collection().is_err());
        assert_eq!(b.with_collection("x").collection(), Some("x"));
    }

    #[test]
    fn bad_addresses_are_refused_before_connecting() {
        for bad in [
            "postgres://h/db?collection=a/b",
            "postgres://h/db?collection=a&collection=b",
            "postgres://h/db?nonsense_option=1",
        ] {
            assert!(
                matches!(PgAddress::parse(bad), Err(IndexError::InvalidInput(_))),
                "{bad}"
            );
        }
        let e = PgAddress::parse("postgres://u:pw@h/db?password=pw2&bogus=1").unwrap_err();
        assert!(!e.to_string().contains("pw"), "{e}");
    }
}
