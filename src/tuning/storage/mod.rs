//! Where a study's state lives ([`super::study::StudyStorage`]): `oracle.json` in the search
//! folder for a search on one machine ([`json`], as ferkit has always kept it), or a database
//! for a study that workers on many machines share ([`sql`]: SQLite through `rusqlite` with its
//! bundled SQLite, PostgreSQL through the `postgres` crate).

pub mod json;
pub mod sql;

use std::path::{Path, PathBuf};

pub use json::JsonStudy;
pub use sql::SqlStudy;

use super::study::StudyStorage;
use crate::error::{Result, bail};

/// A `--storage` value, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageUrl {
    /// `sqlite:PATH` (or `sqlite://PATH`, or a path ending in `.db`/`.sqlite`): a SQLite file.
    Sqlite(PathBuf),
    /// `postgresql://user@host:port/db` (or `postgres://`), as libpq and the `postgres` crate read it.
    Postgres(String),
}

impl StorageUrl {
    /// Parses `--storage`'s value; `search_out` is where `sqlite` alone puts its file
    /// (`study.db` in the search's folder).
    ///
    /// Errors: a scheme other than sqlite and postgres(ql).
    pub fn parse(value: &str, search_out: &Path) -> Result<StorageUrl> {
        if value == "sqlite" {
            return Ok(StorageUrl::Sqlite(search_out.join("study.db")));
        }
        if let Some(path) = value.strip_prefix("sqlite://").or_else(|| value.strip_prefix("sqlite:")) {
            return Ok(StorageUrl::Sqlite(PathBuf::from(path)));
        }
        if value.starts_with("postgresql://") || value.starts_with("postgres://") {
            return Ok(StorageUrl::Postgres(value.to_string()));
        }
        if !value.contains("://") && (value.ends_with(".db") || value.ends_with(".sqlite")) {
            return Ok(StorageUrl::Sqlite(PathBuf::from(value)));
        }
        bail!(Config @ "storage",
            "--storage {value}: expected sqlite (a file in the search folder), sqlite:PATH, or postgresql://USER@HOST[:PORT]/DB"
        )
    }

    /// Opens study `study` there (the database and its tables are made when missing).
    pub fn open(&self, study: &str) -> Result<Box<dyn StudyStorage>> {
        Ok(Box::new(match self {
            StorageUrl::Sqlite(path) => SqlStudy::sqlite(path, study)?,
            StorageUrl::Postgres(url) => SqlStudy::postgres(url, study)?,
        }))
    }
}

/// Seconds since 1970 on this machine's clock (the JSON storage's clock; the databases use
/// their own).
pub(crate) fn now_seconds() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_values_parse_to_their_backend_and_others_are_refused() {
        let out = Path::new("runs/s");
        assert_eq!(StorageUrl::parse("sqlite", out).unwrap(), StorageUrl::Sqlite(out.join("study.db")));
        assert_eq!(StorageUrl::parse("sqlite:/tmp/a.db", out).unwrap(), StorageUrl::Sqlite("/tmp/a.db".into()));
        assert_eq!(StorageUrl::parse("x/b.db", out).unwrap(), StorageUrl::Sqlite("x/b.db".into()));
        let pg = "postgresql://me@127.0.0.1:5432/studies";
        assert_eq!(StorageUrl::parse(pg, out).unwrap(), StorageUrl::Postgres(pg.into()));
        let e = StorageUrl::parse("mysql://h/db", out).unwrap_err();
        assert!(format!("{e:#}").contains("--storage mysql://h/db"), "{e:#}");
    }
}
