//! A study in a database that many workers share: SQLite (one file, workers on one machine, or
//! a file system with working locks) or PostgreSQL (workers on many machines).
//!
//! Two tables, made when missing: `ferkit_study` (name, the [`StudySpec`] as JSON) and
//! `ferkit_trial` (one row per trial: values as JSON, status, result, holder, lease end,
//! attempts). Every step runs in one transaction that first takes the study's lock: SQLite's
//! `BEGIN IMMEDIATE` (the database's write lock), PostgreSQL's `SELECT ... FOR UPDATE` on the
//! study's row. Handing out a trial reads all trials and lets the strategy propose inside that
//! lock, so two workers never get the same trial or point. Lease ends come from the database's
//! clock, so the machines' clocks need not agree.

use std::path::Path;
use std::time::Duration;

use crate::error::{Context, Result, bail, err};
use crate::tuning::oracle::{Trial, TrialStatus};
use crate::tuning::study::{Claim, Decision, StoredTrial, StudySpec, StudyStorage, TrialOutcome, WorkerId, decide};

/// A study in SQLite or PostgreSQL.
pub struct SqlStudy {
    db: Db,
    study: String,
    /// Where, for messages: the SQLite path, or the PostgreSQL URL without its password.
    place: String,
}

enum Db {
    Sqlite(rusqlite::Connection),
    Postgres(postgres::Client),
}

/// A query parameter, typed (PostgreSQL checks a NULL's type too).
#[derive(Clone, Debug)]
enum Param {
    Int(Option<i64>),
    Real(Option<f64>),
    Text(Option<String>),
}

/// A result cell.
#[derive(Clone, Debug, PartialEq)]
enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS ferkit_study (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS ferkit_trial (
    study TEXT NOT NULL,
    id BIGINT NOT NULL,
    vals TEXT NOT NULL,
    status TEXT NOT NULL,
    objective DOUBLE PRECISION,
    best_epoch BIGINT,
    seconds DOUBLE PRECISION,
    worker TEXT,
    lease_until DOUBLE PRECISION,
    attempts BIGINT NOT NULL,
    PRIMARY KEY (study, id)
);";

/// Waits for another worker's lock this long before giving up (SQLite's busy timeout).
const LOCK_WAIT: Duration = Duration::from_secs(60);

impl SqlStudy {
    /// Study `study` in the SQLite file `path` (made, with its folder and tables, when missing).
    ///
    /// Errors: the file cannot be opened or is not a SQLite database.
    pub fn sqlite(path: &Path, study: &str) -> Result<SqlStudy> {
        if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(folder).with_context(|| format!("{}: cannot create", folder.display()))?;
        }
        let place = path.display().to_string();
        let connection = rusqlite::Connection::open(path).map_err(|e| err!(Io, "{place}: cannot open: {e}"))?;
        connection.busy_timeout(LOCK_WAIT).map_err(|e| err!(Io, "{place}: {e}"))?;
        let mut s = SqlStudy { db: Db::Sqlite(connection), study: study.to_string(), place };
        s.in_lock(false, |db| db.batch(SCHEMA))?;
        Ok(s)
    }

    /// Study `study` in the PostgreSQL database at `url` (tables made when missing).
    ///
    /// Errors: the server cannot be reached or refuses the login (the message gives the URL
    /// without its password).
    pub fn postgres(url: &str, study: &str) -> Result<SqlStudy> {
        let place = without_password(url);
        let mut config: postgres::Config =
            url.parse().map_err(|e| err!(Config @ "storage", "{place}: not a PostgreSQL URL: {e}"))?;
        config.connect_timeout(Duration::from_secs(10));
        let client = config.connect(postgres::NoTls).map_err(|e| err!(Io, "{place}: cannot connect: {e}"))?;
        let mut s = SqlStudy { db: Db::Postgres(client), study: study.to_string(), place };
        // Two workers creating the tables at once would collide in PostgreSQL's catalogue: a
        // transaction-wide advisory lock (any fixed number) puts them one after the other.
        s.in_lock(false, |db| {
            if let Db::Postgres(_) = db {
                db.batch("SELECT pg_advisory_xact_lock(7242013)")?;
            }
            db.batch(SCHEMA)
        })?;
        Ok(s)
    }

    /// Runs `step` in one transaction; with `study_lock`, first takes the study's lock (see
    /// the module). Rolls back when `step` fails.
    fn in_lock<T>(&mut self, study_lock: bool, step: impl FnOnce(&mut Db) -> Result<T>) -> Result<T> {
        let begin = match self.db {
            Db::Sqlite(_) => "BEGIN IMMEDIATE",
            Db::Postgres(_) => "BEGIN",
        };
        let place = self.place.clone();
        self.db.batch(begin).with_context(|| format!("{place}: cannot start a transaction"))?;
        let study = self.study.clone();
        let result = (|| {
            if study_lock && matches!(self.db, Db::Postgres(_)) {
                self.db.query("SELECT name FROM ferkit_study WHERE name = ? FOR UPDATE", &[text(&study)])?;
            }
            step(&mut self.db)
        })();
        match result {
            Ok(value) => {
                if let Err(e) = self.db.batch("COMMIT") {
                    // SQLite keeps a transaction whose COMMIT failed (busy, disk full) open, with
                    // its write lock: end it, or every later step of this worker fails.
                    let _ = self.db.batch("ROLLBACK");
                    return Err(e).with_context(|| format!("{place}: cannot commit"));
                }
                Ok(value)
            }
            Err(e) => {
                let _ = self.db.batch("ROLLBACK");
                Err(e).with_context(|| format!("{place}, study {study}"))
            }
        }
    }
}

/// `url` with the password (between `user:` and `@`) replaced by `***`.
fn without_password(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let user = &url[scheme + 3..at];
            match user.split_once(':') {
                Some((name, _)) => format!("{}{name}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

fn text(s: &str) -> Param {
    Param::Text(Some(s.to_string()))
}

fn int(v: usize) -> Param {
    Param::Int(Some(v as i64))
}

impl Db {
    fn batch(&mut self, sql: &str) -> Result<()> {
        match self {
            Db::Sqlite(c) => c.execute_batch(sql).map_err(|e| err!(Io, "SQLite: {e}").into()),
            Db::Postgres(c) => c.batch_execute(sql).map_err(|e| err!(Io, "PostgreSQL: {}", pg_message(&e)).into()),
        }
    }

    /// The database's clock, in seconds since 1970.
    fn now(&mut self) -> Result<f64> {
        let sql = match self {
            Db::Sqlite(_) => "SELECT (julianday('now') - 2440587.5) * 86400.0",
            Db::Postgres(_) => "SELECT extract(epoch from clock_timestamp())::DOUBLE PRECISION",
        };
        match self.query(sql, &[])?.first().and_then(|r| r.first()) {
            Some(Cell::Real(now)) => Ok(*now),
            other => bail!(Internal, "the database's clock gave {other:?}"),
        }
    }

    /// Runs `sql` (placeholders `?`, numbered `$1`, `$2`, ... for PostgreSQL) and returns the
    /// number of rows changed.
    fn execute(&mut self, sql: &str, params: &[Param]) -> Result<u64> {
        match self {
            Db::Sqlite(c) => {
                let values: Vec<rusqlite::types::Value> = params.iter().map(sqlite_value).collect();
                c.execute(sql, rusqlite::params_from_iter(values))
                    .map(|n| n as u64)
                    .map_err(|e| err!(Io, "SQLite: {e}").into())
            }
            Db::Postgres(c) => {
                let boxed = pg_params(params);
                let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = boxed.iter().map(|b| b.as_ref()).collect();
                c.execute(&numbered(sql), &refs).map_err(|e| err!(Io, "PostgreSQL: {}", pg_message(&e)).into())
            }
        }
    }

    /// Runs a query and returns its rows.
    fn query(&mut self, sql: &str, params: &[Param]) -> Result<Vec<Vec<Cell>>> {
        match self {
            Db::Sqlite(c) => {
                let values: Vec<rusqlite::types::Value> = params.iter().map(sqlite_value).collect();
                let mut statement = c.prepare(sql).map_err(|e| err!(Io, "SQLite: {e}"))?;
                let columns = statement.column_count();
                let rows = statement
                    .query_map(rusqlite::params_from_iter(values), |row| {
                        (0..columns)
                            .map(|i| {
                                use rusqlite::types::ValueRef;
                                Ok(match row.get_ref(i)? {
                                    ValueRef::Null => Cell::Null,
                                    ValueRef::Integer(v) => Cell::Int(v),
                                    ValueRef::Real(v) => Cell::Real(v),
                                    ValueRef::Text(t) | ValueRef::Blob(t) => {
                                        Cell::Text(String::from_utf8_lossy(t).into_owned())
                                    }
                                })
                            })
                            .collect::<rusqlite::Result<Vec<Cell>>>()
                    })
                    .map_err(|e| err!(Io, "SQLite: {e}"))?;
                rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|e| err!(Io, "SQLite: {e}").into())
            }
            Db::Postgres(c) => {
                let boxed = pg_params(params);
                let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = boxed.iter().map(|b| b.as_ref()).collect();
                let rows = c.query(&numbered(sql), &refs).map_err(|e| err!(Io, "PostgreSQL: {}", pg_message(&e)))?;
                rows.iter().map(pg_row).collect()
            }
        }
    }
}

fn sqlite_value(p: &Param) -> rusqlite::types::Value {
    use rusqlite::types::Value;
    match p {
        Param::Int(Some(v)) => Value::Integer(*v),
        Param::Real(Some(v)) => Value::Real(*v),
        Param::Text(Some(v)) => Value::Text(v.clone()),
        _ => Value::Null,
    }
}

fn pg_params(params: &[Param]) -> Vec<Box<dyn postgres::types::ToSql + Sync>> {
    params
        .iter()
        .map(|p| -> Box<dyn postgres::types::ToSql + Sync> {
            match p.clone() {
                Param::Int(v) => Box::new(v),
                Param::Real(v) => Box::new(v),
                Param::Text(v) => Box::new(v),
            }
        })
        .collect()
}

fn pg_row(row: &postgres::Row) -> Result<Vec<Cell>> {
    use postgres::types::Type;
    (0..row.len())
        .map(|i| {
            let ty = row.columns()[i].type_().clone();
            let cell = if ty == Type::INT8 {
                row.try_get::<_, Option<i64>>(i).map(|v| v.map_or(Cell::Null, Cell::Int))
            } else if ty == Type::INT4 {
                row.try_get::<_, Option<i32>>(i).map(|v| v.map_or(Cell::Null, |v| Cell::Int(v.into())))
            } else if ty == Type::FLOAT8 {
                row.try_get::<_, Option<f64>>(i).map(|v| v.map_or(Cell::Null, Cell::Real))
            } else {
                row.try_get::<_, Option<String>>(i).map(|v| v.map_or(Cell::Null, Cell::Text))
            };
            cell.map_err(|e| err!(Internal, "PostgreSQL: column {i}: {e}").into())
        })
        .collect()
}

/// The server's own message (with its detail) rather than the driver's "db error".
fn pg_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}{}", db.message(), db.detail().map(|d| format!(" ({d})")).unwrap_or_default()),
        None => e.to_string(),
    }
}

/// `?` placeholders numbered for PostgreSQL (`$1`, `$2`, ...). ferkit's statements hold no `?`
/// inside string literals.
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(c);
        }
    }
    out
}

fn read_trials(db: &mut Db, study: &str) -> Result<Vec<StoredTrial>> {
    let rows = db.query(
        "SELECT id, vals, status, objective, best_epoch, seconds, worker, lease_until, attempts
         FROM ferkit_trial WHERE study = ? ORDER BY id",
        &[text(study)],
    )?;
    rows.into_iter().map(|r| stored_trial(&r)).collect()
}

fn stored_trial(r: &[Cell]) -> Result<StoredTrial> {
    let int = |c: &Cell| match c {
        Cell::Int(v) => Some(*v),
        _ => None,
    };
    let real = |c: &Cell| match c {
        Cell::Real(v) => Some(*v),
        Cell::Int(v) => Some(*v as f64),
        _ => None,
    };
    let string = |c: &Cell| match c {
        Cell::Text(v) => Some(v.clone()),
        _ => None,
    };
    let id = int(&r[0]).ok_or_else(|| err!(BadInput @ "id", "ferkit_trial: a row without an id"))? as usize;
    let values = serde_json::from_str(&string(&r[1]).unwrap_or_default())
        .map_err(|e| err!(BadInput @ "vals", "ferkit_trial: trial {id}'s values: {e}"))?;
    let status = match string(&r[2]).as_deref() {
        Some("pending") => TrialStatus::Pending,
        Some("completed") => TrialStatus::Completed,
        Some("failed") => TrialStatus::Failed,
        other => bail!(BadInput @ "status", "ferkit_trial: trial {id} has status {other:?}"),
    };
    Ok(StoredTrial {
        trial: Trial {
            id,
            values,
            status,
            objective: real(&r[3]),
            best_epoch: int(&r[4]).map(|v| v as usize),
            seconds: real(&r[5]),
        },
        worker: string(&r[6]),
        lease_until: real(&r[7]),
        attempts: int(&r[8]).unwrap_or(1) as u32,
    })
}

fn status_name(s: TrialStatus) -> &'static str {
    match s {
        TrialStatus::Pending => "pending",
        TrialStatus::Completed => "completed",
        TrialStatus::Failed => "failed",
    }
}

fn insert_trial(db: &mut Db, study: &str, t: &Trial, worker: Option<&str>, lease_until: Option<f64>) -> Result<()> {
    db.execute(
        "INSERT INTO ferkit_trial (study, id, vals, status, objective, best_epoch, seconds, worker, lease_until, attempts)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
        &[
            text(study),
            int(t.id),
            text(&serde_json::to_string(&t.values)?),
            text(status_name(t.status)),
            Param::Real(t.objective.filter(|v| v.is_finite())),
            Param::Int(t.best_epoch.map(|v| v as i64)),
            Param::Real(t.seconds),
            Param::Text(worker.map(str::to_string)),
            Param::Real(lease_until),
        ],
    )?;
    Ok(())
}

impl StudyStorage for SqlStudy {
    fn spec(&mut self) -> Result<Option<StudySpec>> {
        let study = self.study.clone();
        let rows =
            self.in_lock(false, |db| db.query("SELECT spec FROM ferkit_study WHERE name = ?", &[text(&study)]))?;
        match rows.first().and_then(|r| r.first()) {
            Some(Cell::Text(json)) => Ok(Some(
                serde_json::from_str(json)
                    .map_err(|e| err!(BadInput @ "spec", "{}: study {study}'s spec: {e}", self.place))?,
            )),
            _ => Ok(None),
        }
    }

    fn create(&mut self, spec: &StudySpec, trials: &[Trial]) -> Result<()> {
        let study = self.study.clone();
        let place = self.place.clone();
        let json = serde_json::to_string(spec)?;
        self.in_lock(false, |db| {
            let now = db.now()?;
            if !db.query("SELECT name FROM ferkit_study WHERE name = ?", &[text(&study)])?.is_empty() {
                bail!(Config @ "study", "{place}: a study named {study} exists already");
            }
            db.execute(
                "INSERT INTO ferkit_study (name, spec, created_at) VALUES (?, ?, ?)",
                &[text(&study), text(&json), Param::Real(Some(now))],
            )?;
            for t in trials {
                insert_trial(db, &study, t, None, None)?;
            }
            Ok(())
        })
    }

    fn claim(&mut self, worker: &WorkerId, lease_seconds: f64) -> Result<Claim> {
        let study = self.study.clone();
        let Some(spec) = self.spec()? else { bail!(Config @ "study", "{}: no study named {study}", self.place) };
        self.in_lock(true, |db| {
            let now = db.now()?;
            let trials = read_trials(db, &study)?;
            let lease_until = now + lease_seconds;
            Ok(match decide(&spec, &trials, now, worker) {
                Decision::Reclaim(id) => {
                    db.execute(
                        "UPDATE ferkit_trial SET worker = ?, lease_until = ?, attempts = attempts + 1
                         WHERE study = ? AND id = ?",
                        &[text(&worker.0), Param::Real(Some(lease_until)), text(&study), int(id)],
                    )?;
                    let t = trials.into_iter().find(|t| t.trial.id == id).expect("decide picks a stored trial");
                    Claim::Trial(t.trial)
                }
                Decision::New(trial) => {
                    insert_trial(db, &study, &trial, Some(&worker.0), Some(lease_until))?;
                    Claim::Trial(trial)
                }
                Decision::Wait => Claim::Wait,
                Decision::Done => Claim::Done,
            })
        })
    }

    fn renew(&mut self, id: usize, worker: &WorkerId, lease_seconds: f64) -> Result<bool> {
        let study = self.study.clone();
        self.in_lock(true, |db| {
            let until = db.now()? + lease_seconds;
            let changed = db.execute(
                "UPDATE ferkit_trial SET lease_until = ? WHERE study = ? AND id = ? AND worker = ? AND status = 'pending'",
                &[Param::Real(Some(until)), text(&study), int(id), text(&worker.0)],
            )?;
            Ok(changed == 1)
        })
    }

    fn finish(&mut self, id: usize, worker: &WorkerId, outcome: TrialOutcome) -> Result<bool> {
        let study = self.study.clone();
        let objective = outcome.objective.filter(|v| v.is_finite());
        let status = if objective.is_some() { TrialStatus::Completed } else { TrialStatus::Failed };
        self.in_lock(true, |db| {
            let changed = db.execute(
                "UPDATE ferkit_trial SET status = ?, objective = ?, best_epoch = ?, seconds = ?, lease_until = NULL
                 WHERE study = ? AND id = ? AND worker = ? AND status = 'pending'",
                &[
                    text(status_name(status)),
                    Param::Real(objective),
                    Param::Int(outcome.best_epoch.map(|v| v as i64)),
                    Param::Real(Some(outcome.seconds)),
                    text(&study),
                    int(id),
                    text(&worker.0),
                ],
            )?;
            Ok(changed == 1)
        })
    }

    fn trials(&mut self) -> Result<Vec<StoredTrial>> {
        let study = self.study.clone();
        self.in_lock(false, |db| read_trials(db, &study))
    }

    fn describe(&self) -> String {
        format!("{}, study {}", self.place, self.study)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tuning::study::tests::spec;

    #[test]
    fn placeholders_are_numbered_for_postgres_and_passwords_hidden() {
        assert_eq!(numbered("a = ? AND b = ?"), "a = $1 AND b = $2");
        assert_eq!(without_password("postgresql://me:secret@h:5/db"), "postgresql://me:***@h:5/db");
        assert_eq!(without_password("postgresql://me@h/db"), "postgresql://me@h/db");
    }

    #[test]
    fn sqlite_study_hands_each_trial_out_once_takes_results_only_from_the_holder_and_reclaims_expired_leases() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let spec = spec(2);
        let mut a = SqlStudy::sqlite(&path, "s").unwrap();
        assert_eq!(a.spec().unwrap(), None);
        a.create(&spec, &[]).unwrap();
        assert!(format!("{:#}", a.create(&spec, &[]).unwrap_err()).contains("exists already"));
        // A second connection, as a second worker process would have.
        let mut b = SqlStudy::sqlite(&path, "s").unwrap();
        assert_eq!(b.spec().unwrap().as_ref(), Some(&spec));
        let (wa, wb) = (WorkerId("m1/1".into()), WorkerId("m2/2".into()));
        let Claim::Trial(t0) = a.claim(&wa, 60.0).unwrap() else { panic!() };
        let Claim::Trial(t1) = b.claim(&wb, 0.0).unwrap() else { panic!() };
        assert_eq!((t0.id, t1.id), (0, 1));
        assert_ne!(t0.values, t1.values);
        // Both handed out; b's lease (0 s) has run out, so a gets trial 1 again.
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(a.claim(&wa, 60.0).unwrap(), Claim::Trial(t1.clone()));
        assert!(!b.renew(1, &wb, 60.0).unwrap(), "b lost its lease");
        let outcome = TrialOutcome { objective: Some(1.5), best_epoch: Some(1), seconds: 2.0 };
        assert!(!b.finish(1, &wb, outcome).unwrap(), "a result from a worker without the lease is not recorded");
        assert!(a.renew(1, &wa, 60.0).unwrap());
        assert!(a.finish(1, &wa, outcome).unwrap());
        assert!(!a.finish(1, &wa, outcome).unwrap(), "a trial finishes once");
        assert_eq!(b.claim(&wb, 60.0).unwrap(), Claim::Wait, "trial 0 is still held by a");
        assert!(a.finish(0, &wa, TrialOutcome { objective: None, best_epoch: None, seconds: 1.0 }).unwrap());
        assert_eq!(b.claim(&wb, 60.0).unwrap(), Claim::Done);
        let trials = b.trials().unwrap();
        assert_eq!(trials.len(), 2);
        assert_eq!(trials[0].trial.status, TrialStatus::Failed);
        assert_eq!(
            (trials[1].trial.status, trials[1].trial.objective, trials[1].attempts),
            (TrialStatus::Completed, Some(1.5), 2)
        );
        assert_eq!(trials[1].worker.as_deref(), Some("m1/1"));
    }
}
