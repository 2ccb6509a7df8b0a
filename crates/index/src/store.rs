//! Where collections live, and the one way callers open them.
//!
//! `--collection` and `sift serve --collections` both take a location string parsed by
//! [`Location::parse`]: a filesystem path, or a `postgres://…` URL ([`PgAddress`]: a libpq URL
//! with `?collection=NAME` for one collection, without it for a store of them). The CLI and the
//! server open, create, list and drop collections only through this module, so adding a backend
//! changes this file and nothing that calls it.

use std::path::{Path, PathBuf};

use crate::backend::CollectionBackend;
use crate::error::{IndexError, Result};
use crate::local::{AnnParams, LocalCollection, OpenMode};
use crate::manifest::Manifest;
use crate::postgres::{self, PgAddress, PostgresCollection};

/// A parsed `--collection` / `--collections` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A directory: one collection (`--collection`) or a folder of them (`--collections`).
    Local(PathBuf),
    /// A PostgreSQL database (with pgvector): one collection in it when the address names one.
    Postgres(PgAddress),
}

const DATABASE_SCHEMES: [&str; 2] = ["postgres://", "postgresql://"];

impl Location {
    pub fn parse(s: &str) -> Result<Self> {
        if s.trim().is_empty() {
            return Err(IndexError::InvalidInput(
                "a collection location is empty".into(),
            ));
        }
        if DATABASE_SCHEMES.iter().any(|p| s.starts_with(p)) {
            return Ok(Location::Postgres(PgAddress::parse(s)?));
        }
        if let Some((scheme, _)) = s.split_once("://") {
            if !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(IndexError::Unsupported(format!(
                    "{scheme}:// collections are not supported; give a directory or a postgres:// URL"
                )));
            }
        }
        Ok(Location::Local(PathBuf::from(s)))
    }
}

impl std::str::FromStr for Location {
    type Err = IndexError;
    fn from_str(s: &str) -> Result<Self> {
        Location::parse(s)
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::Postgres(a) => write!(f, "{a}"),
        }
    }
}

/// How a collection is opened through the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The one writer (indexing, deleting, the server).
    Write,
    /// Searching: shares the collection with other readers where the backend can.
    Search,
    /// A long-lived server that writes: in a database, any number of processes open a
    /// collection this way and commit batches side by side (each batch waits for the one
    /// before it), while an exclusive writer ([`Access::Write`], e.g. `sift index`) keeps them
    /// out for its run. The local backend has one writer per directory, so there it is
    /// [`Access::Write`].
    Shared,
}

/// Whether a collection exists at `location`.
pub fn exists(location: &Location) -> Result<bool> {
    match location {
        Location::Local(dir) => Ok(dir.join("collection.json").is_file()),
        Location::Postgres(a) => postgres::exists(a),
    }
}

/// The manifest of the collection at `location`, if one exists; cheaper than opening it.
pub fn read_manifest(location: &Location) -> Result<Option<Manifest>> {
    match location {
        Location::Local(dir) => crate::local::read_manifest(dir),
        Location::Postgres(a) => postgres::read_manifest(a),
    }
}

/// Opens the existing collection at `location`.
pub fn open(location: &Location, access: Access) -> Result<Box<dyn CollectionBackend>> {
    match location {
        Location::Local(dir) => {
            let mode = match access {
                Access::Write | Access::Shared => OpenMode::Write,
                Access::Search => OpenMode::Search,
            };
            Ok(Box::new(LocalCollection::open(
                dir,
                mode,
                AnnParams::default(),
            )?))
        }
        Location::Postgres(a) => Ok(Box::new(PostgresCollection::open(a, access)?)),
    }
}

/// Opens the collection at `location` for writing, creating it with `manifest` if it does not
/// exist. Refuses ([`IndexError::ModelMismatch`]) one built with another embedding model.
pub fn open_or_create(
    location: &Location,
    manifest: Manifest,
) -> Result<Box<dyn CollectionBackend>> {
    open_or_create_with(location, manifest, Access::Write)
}

/// [`open_or_create`] with the access of a writer (`Write` or `Shared`).
pub fn open_or_create_with(
    location: &Location,
    manifest: Manifest,
    access: Access,
) -> Result<Box<dyn CollectionBackend>> {
    match location {
        Location::Local(dir) => Ok(Box::new(LocalCollection::open_or_create(
            dir,
            manifest,
            AnnParams::default(),
        )?)),
        Location::Postgres(a) => Ok(Box::new(PostgresCollection::open_or_create(
            a, manifest, access,
        )?)),
    }
}

/// Deletes the collection at `location` and everything in it. Refused while another process
/// holds it.
pub fn drop_collection(location: &Location) -> Result<()> {
    match location {
        Location::Local(dir) => {
            if !exists(location)? {
                return Err(IndexError::NotACollection(dir.clone()));
            }
            let lock = crate::local::lock_for_drop(dir)?;
            std::fs::remove_dir_all(dir).map_err(IndexError::io(dir))?;
            drop(lock);
            Ok(())
        }
        Location::Postgres(a) => postgres::drop_collection(a),
    }
}

/// A set of named collections (`sift serve --collections`).
#[derive(Debug, Clone)]
pub struct CollectionStore {
    location: Location,
}

/// Collection names: letters, digits, `-`, `_`, `.`; 1–64 of them, no leading dot — safe as a
/// directory name or a database identifier suffix.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(IndexError::InvalidInput(format!(
            "collection name {name:?}: use 1-64 letters, digits, '-', '_' or '.', not starting with '.'"
        )))
    }
}

impl CollectionStore {
    /// The store at `location`, created (an empty folder) if missing.
    pub fn open(location: Location) -> Result<Self> {
        match &location {
            Location::Local(dir) => std::fs::create_dir_all(dir).map_err(IndexError::io(dir))?,
            Location::Postgres(a) => {
                if let Some(name) = a.collection() {
                    return Err(IndexError::InvalidInput(format!(
                        "{a}: a store of collections is a database address without ?collection= (found collection={name})"
                    )));
                }
            }
        }
        Ok(CollectionStore { location })
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Where collection `name` lives; refuses names [`validate_name`] refuses.
    pub fn collection(&self, name: &str) -> Result<Location> {
        validate_name(name)?;
        match &self.location {
            Location::Local(dir) => Ok(Location::Local(dir.join(name))),
            Location::Postgres(a) => Ok(Location::Postgres(a.with_collection(name))),
        }
    }

    /// Names of the collections in the store, sorted.
    pub fn list(&self) -> Result<Vec<String>> {
        match &self.location {
            Location::Local(root) => {
                let mut names = Vec::new();
                let entries = std::fs::read_dir(root).map_err(IndexError::io(root))?;
                for entry in entries {
                    let entry = entry.map_err(IndexError::io(root))?;
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if is_collection_dir(&entry.path()) && validate_name(&name).is_ok() {
                        names.push(name);
                    }
                }
                names.sort();
                Ok(names)
            }
            Location::Postgres(a) => postgres::list(a),
        }
    }

    pub fn exists(&self, name: &str) -> Result<bool> {
        exists(&self.collection(name)?)
    }

    pub fn open_collection(
        &self,
        name: &str,
        access: Access,
    ) -> Result<Box<dyn CollectionBackend>> {
        open(&self.collection(name)?, access)
    }

    pub fn create(&self, name: &str, manifest: Manifest) -> Result<Box<dyn CollectionBackend>> {
        open_or_create(&self.collection(name)?, manifest)
    }

    /// [`CollectionStore::create`] with the access of a writer (`Write` or `Shared`).
    pub fn create_with(
        &self,
        name: &str,
        manifest: Manifest,
        access: Access,
    ) -> Result<Box<dyn CollectionBackend>> {
        open_or_create_with(&self.collection(name)?, manifest, access)
    }

    pub fn drop_collection(&self, name: &str) -> Result<()> {
        drop_collection(&self.collection(name)?)
    }
}

fn is_collection_dir(path: &Path) -> bool {
    path.join("collection.json").is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_paths_and_database_urls() {
        assert_eq!(
            Location::parse("./cols/a").unwrap(),
            Location::Local("./cols/a".into())
        );
        let pg = Location::parse("postgres://me:secret@db/x?collection=a").unwrap();
        assert!(matches!(&pg, Location::Postgres(a) if a.collection() == Some("a")));
        assert!(!pg.to_string().contains("secret"), "{pg}");
        let e = Location::parse("postgres://me:secret@db/x?collection=a/b").unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
        assert!(matches!(
            Location::parse("s3://bucket/x"),
            Err(IndexError::Unsupported(_))
        ));
        assert!(Location::parse(" ").is_err());
    }

    #[test]
    fn names_are_checked() {
        for bad in ["", ".hidden", "a/b", "..", &"x".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        validate_name("sci-fact_v1.2").unwrap();
    }
}
