//! The daemon's event log: JSON lines (the same as `observer record --events`) written to
//! `STATE_DIR/events/events-<unix ms>.jsonl`, a new file every [`Limits::file_bytes`] or
//! [`Limits::file_age`], and the oldest files removed while the total is above
//! [`Limits::total_bytes`] or a file is older than [`Limits::max_age`]. Each file is a complete
//! event log `observer report` reads: it starts with the capture's `capture_started`.

use std::{
    fs::File,
    io::{BufWriter, Write as _},
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use crate::{eventlog::Sink, pipeline::events::Observed, session::Batch};

/// Size and age limits of the event log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// A file is closed and a new one started past this size.
    pub file_bytes: u64,
    /// ... or past this age.
    pub file_age: Duration,
    /// The files' total size kept.
    pub total_bytes: u64,
    /// Files older than this are removed.
    pub max_age: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            file_bytes: 64 << 20,
            file_age: Duration::from_secs(3600),
            total_bytes: 512 << 20,
            max_age: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// The rotating event log.
pub struct EventLog {
    dir: PathBuf,
    limits: Limits,
    current: Option<(Sink<BufWriter<File>>, PathBuf, SystemTime)>,
    written: u64,
    /// `capture_started`, written first in every file.
    started: Option<(u64, Observed)>,
}

impl EventLog {
    pub fn new(dir: &Path, limits: Limits) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            limits,
            current: None,
            written: 0,
            started: None,
        })
    }

    /// Appends a batch, rotating and pruning as the limits say.
    pub fn write(&mut self, batch: &Batch, now: SystemTime) -> anyhow::Result<()> {
        for (ts, o) in batch {
            if let Observed::CaptureStarted { .. } = o {
                self.started = Some((*ts, o.clone()));
            }
        }
        let due = self.current.as_ref().is_some_and(|(_, _, opened)| {
            self.written >= self.limits.file_bytes
                || now.duration_since(*opened).unwrap_or_default() >= self.limits.file_age
        });
        if due {
            self.close()?;
        }
        if self.current.is_none() {
            self.open(now)?;
        }
        let Some((sink, ..)) = self.current.as_mut() else {
            return Ok(());
        };
        let before = sink.bytes_written();
        sink.write(batch)?;
        self.written += sink.bytes_written().saturating_sub(before);
        Ok(())
    }

    fn open(&mut self, now: SystemTime) -> anyhow::Result<()> {
        let ms = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let mut path = self.dir.join(format!("events-{ms}.jsonl"));
        let mut n = 1;
        while path.exists() {
            path = self.dir.join(format!("events-{ms}-{n}.jsonl"));
            n += 1;
        }
        let file = File::create(&path)?;
        let mut sink = Sink::new(BufWriter::new(file), true);
        if let Some(started) = &self.started {
            sink.write(std::slice::from_ref(started))?;
        }
        self.written = sink.bytes_written();
        self.current = Some((sink, path, now));
        self.prune(now);
        Ok(())
    }

    fn close(&mut self) -> anyhow::Result<()> {
        if let Some((sink, ..)) = self.current.take() {
            sink.into_inner().flush()?;
        }
        Ok(())
    }

    /// Removes the oldest files beyond the total size or the age (never the current one).
    fn prune(&self, now: SystemTime) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let current = self.current.as_ref().map(|(_, p, _)| p.clone());
        let mut files: Vec<(SystemTime, u64, PathBuf)> = entries
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with("events-") && n.ends_with(".jsonl"))
            })
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                Some((meta.modified().ok()?, meta.len(), e.path()))
            })
            .filter(|(_, _, p)| Some(p) != current.as_ref())
            .collect();
        files.sort();
        let mut total: u64 = files.iter().map(|(_, len, _)| len).sum::<u64>() + self.written;
        for (modified, len, path) in files {
            let old = now.duration_since(modified).unwrap_or_default() > self.limits.max_age;
            if (old || total > self.limits.total_bytes) && std::fs::remove_file(&path).is_ok() {
                total = total.saturating_sub(len);
            }
        }
    }

    /// Flushes what is buffered (on stop).
    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::correlate::tests::{closed, opened};

    #[test]
    fn files_rotate_by_size_and_the_oldest_go_past_the_total() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            file_bytes: 2_000,
            file_age: Duration::from_secs(3600),
            total_bytes: 6_000,
            max_age: Duration::from_secs(3600),
        };
        let mut log = EventLog::new(dir.path(), limits).unwrap();
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for i in 0..200u64 {
            let batch = vec![
                (i, opened(i, "198.18.1.10:443")),
                (i, closed(i, "198.18.1.10:443", true, 10, 20)),
            ];
            log.write(&batch, start + Duration::from_millis(i)).unwrap();
        }
        log.flush().unwrap();
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert!(files.len() >= 2, "rotated: {}", files.len());
        let total: u64 = files.iter().map(|f| f.metadata().unwrap().len()).sum();
        assert!(
            total <= 6_000 + 2_000 + 2_000,
            "pruned to the total: {total}"
        );
        // Every file is an event log on its own.
        for f in files {
            let text = std::fs::read_to_string(f.path()).unwrap();
            for line in text.lines() {
                serde_json::from_str::<serde_json::Value>(line).unwrap();
            }
        }
    }

    #[test]
    fn files_older_than_the_age_limit_go() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join("events-1.jsonl");
        std::fs::write(&stale, "{}\n").unwrap();
        let limits = Limits {
            max_age: Duration::from_secs(1),
            ..Limits::default()
        };
        let mut log = EventLog::new(dir.path(), limits).unwrap();
        let later = SystemTime::now() + Duration::from_secs(10);
        log.write(&vec![(1, opened(1, "198.18.1.10:443"))], later)
            .unwrap();
        assert!(!stale.exists());
    }
}
