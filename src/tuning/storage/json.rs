//! A study kept as ferkit always kept a search: `oracle.json` (the oracle: spec and trials) and
//! `settings.toml` (what every trial trains with) in the search folder, each rewritten whole
//! after every change. One process owns it, so leases live in memory only: a pending trial in
//! the file has no holder, and the next `tune` in that folder runs it again first.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::now_seconds;
use crate::error::{Context, Result, bail};
use crate::tuning::oracle::{Oracle, Trial, TrialStatus};
use crate::tuning::study::TrialSettings;
use crate::tuning::study::{Claim, Decision, StoredTrial, StudySpec, StudyStorage, TrialOutcome, WorkerId, decide};
use crate::util::atomic::write_atomic;

/// `oracle.json` and `settings.toml` in one search folder.
pub struct JsonStudy {
    folder: PathBuf,
    saved: Option<(StudySpec, Vec<Trial>)>,
    /// Trial number -> (holder, lease end): this process's own workers.
    leases: HashMap<usize, (String, f64)>,
}

impl JsonStudy {
    /// The study in `folder` (read when its `oracle.json` exists).
    ///
    /// Errors: `oracle.json` or `settings.toml` unreadable or malformed (the message names it).
    pub fn open(folder: &Path) -> Result<JsonStudy> {
        Ok(JsonStudy { folder: folder.to_path_buf(), saved: Self::read(folder)?, leases: HashMap::new() })
    }

    /// The spec and trials saved in `folder` (its oracle and trial settings), when it holds a
    /// search: what a migration to a database imports.
    pub fn read(folder: &Path) -> Result<Option<(StudySpec, Vec<Trial>)>> {
        let state = folder.join("oracle.json");
        if !state.exists() {
            return Ok(None);
        }
        let oracle = Oracle::load(&state)?;
        let settings_path = folder.join("settings.toml");
        let settings: TrialSettings = toml::from_str(&std::fs::read_to_string(&settings_path).unwrap_or_default())
            .with_context(|| format!("{}: missing or unreadable", settings_path.display()))?;
        Ok(Some(split(oracle, settings)))
    }

    fn save(&self) -> Result<()> {
        let Some((spec, trials)) = &self.saved else { return Ok(()) };
        spec.oracle(trials.clone()).save(&self.folder.join("oracle.json"))
    }

    fn trials_mut(&mut self) -> Result<(&StudySpec, &mut Vec<Trial>)> {
        match &mut self.saved {
            Some((spec, trials)) => Ok((spec, trials)),
            None => bail!(Config, "{}: no search here yet (no oracle.json)", self.folder.display()),
        }
    }

    /// Whether `worker` holds trial `id`.
    fn holds(&self, id: usize, worker: &WorkerId) -> bool {
        self.leases.get(&id).is_some_and(|(holder, _)| *holder == worker.0)
    }
}

fn split(oracle: Oracle, settings: TrialSettings) -> (StudySpec, Vec<Trial>) {
    let Oracle { space, strategy, direction, max_trials, seed, trials } = oracle;
    (StudySpec { space, strategy, direction, max_trials, seed, settings }, trials)
}

impl StudyStorage for JsonStudy {
    fn spec(&mut self) -> Result<Option<StudySpec>> {
        Ok(self.saved.as_ref().map(|(spec, _)| spec.clone()))
    }

    fn create(&mut self, spec: &StudySpec, trials: &[Trial]) -> Result<()> {
        if self.saved.is_some() {
            bail!(Config, "{}: a search exists here already", self.folder.display());
        }
        write_atomic(&self.folder.join("settings.toml"), toml::to_string(&spec.settings)?)?;
        self.saved = Some((spec.clone(), trials.to_vec()));
        self.save()
    }

    fn claim(&mut self, worker: &WorkerId, lease_seconds: f64) -> Result<Claim> {
        let now = now_seconds();
        let stored = self.trials()?;
        let (spec, trials) = self.trials_mut()?;
        let claim = match decide(spec, &stored, now, worker) {
            Decision::Reclaim(id) => Claim::Trial(trials[id].clone()),
            Decision::New(trial) => {
                trials.push(trial.clone());
                Claim::Trial(trial)
            }
            Decision::Wait => Claim::Wait,
            Decision::Done => Claim::Done,
        };
        if let Claim::Trial(t) = &claim {
            self.leases.insert(t.id, (worker.0.clone(), now + lease_seconds));
            self.save()?;
        }
        Ok(claim)
    }

    fn renew(&mut self, id: usize, worker: &WorkerId, lease_seconds: f64) -> Result<bool> {
        if !self.holds(id, worker) {
            return Ok(false);
        }
        self.leases.insert(id, (worker.0.clone(), now_seconds() + lease_seconds));
        Ok(true)
    }

    fn finish(&mut self, id: usize, worker: &WorkerId, outcome: TrialOutcome) -> Result<bool> {
        if !self.holds(id, worker) {
            return Ok(false);
        }
        let (spec, trials) = self.trials_mut()?;
        let mut oracle = spec.oracle(std::mem::take(trials));
        oracle.tell(id, outcome.objective, outcome.best_epoch, Some(outcome.seconds));
        *trials = oracle.trials;
        // Finished: nobody holds it any more, so a second report is refused as in a database.
        self.leases.remove(&id);
        self.save()?;
        Ok(true)
    }

    fn trials(&mut self) -> Result<Vec<StoredTrial>> {
        let Some((_, trials)) = &self.saved else { return Ok(Vec::new()) };
        Ok(trials
            .iter()
            .map(|t| {
                let lease = (t.status == TrialStatus::Pending).then(|| self.leases.get(&t.id)).flatten();
                StoredTrial {
                    trial: t.clone(),
                    worker: lease.map(|(w, _)| w.clone()),
                    lease_until: lease.map(|(_, until)| *until),
                    attempts: 1,
                }
            })
            .collect())
    }

    fn describe(&self) -> String {
        self.folder.join("oracle.json").display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tuning::study::tests::spec;

    #[test]
    fn a_json_study_takes_each_result_once_and_a_reopened_one_hands_out_its_unfinished_trials_again() {
        let dir = tempfile::tempdir().unwrap();
        let spec = spec(2);
        let mut study = JsonStudy::open(dir.path()).unwrap();
        study.create(&spec, &[]).unwrap();
        let me = WorkerId::this_process();
        let Claim::Trial(t0) = study.claim(&me, 60.0).unwrap() else { panic!() };
        let Claim::Trial(t1) = study.claim(&me, 60.0).unwrap() else { panic!() };
        assert_eq!(study.claim(&me, 60.0).unwrap(), Claim::Wait, "both held by this process");
        let outcome = TrialOutcome { objective: Some(0.5), best_epoch: Some(2), seconds: 1.0 };
        assert!(study.finish(t0.id, &me, outcome).unwrap());
        assert!(!study.finish(t0.id, &me, outcome).unwrap(), "a trial finishes once");
        // A stopped search: the file keeps trial 1 pending, with no holder.
        let mut reopened = JsonStudy::open(dir.path()).unwrap();
        assert_eq!(reopened.spec().unwrap().as_ref(), Some(&spec));
        assert_eq!(reopened.claim(&me, 60.0).unwrap(), Claim::Trial(t1.clone()));
        assert!(reopened.finish(t1.id, &me, outcome).unwrap());
        assert_eq!(reopened.claim(&me, 60.0).unwrap(), Claim::Done);
        let saved = Oracle::load(&dir.path().join("oracle.json")).unwrap();
        assert!(saved.trials.iter().all(|t| t.status == TrialStatus::Completed && t.objective == Some(0.5)));
    }
}
