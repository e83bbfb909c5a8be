//! Reading a report back: one reader for every command that takes a report file
//! (`observer suggest --report`, `observer report merge`), so that the `schema_version` check
//! and the tolerance for reports of older builds (see [`super::schema`]) are written once.
//!
//! The text is first read as JSON and its `schema_version` checked, then deserialised: a file
//! that is not a report says so before any field is complained about. Errors name the file and
//! say what to give instead; callers with a context of their own (merge) match on the variants.

use std::{
    fs::File,
    io::{self, Read as _},
    path::Path,
};

use serde_json::Value;

use super::{Report, SCHEMA_VERSION};

/// The largest report file read (a report of 200,000 flows is about 300 MB).
const MAX_REPORT_BYTES: u64 = 1 << 30;

/// Why a report could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read the report from stdin")]
    Stdin(#[source] io::Error),
    #[error("cannot open the report {file}")]
    Open {
        file: String,
        #[source]
        error: io::Error,
    },
    #[error("cannot read the report {file} (is it a JSON file?)")]
    Read {
        file: String,
        #[source]
        error: io::Error,
    },
    #[error("{file}: an event log, not a report: give it with --events {file}")]
    EventLog { file: String },
    #[error(
        "{file}: not JSON ({error}); give the report written by `observer record --out` or \
         `observer report`, or the event log with --events"
    )]
    NotJson {
        file: String,
        error: serde_json::Error,
    },
    #[error("{file}: not an observer report (a JSON object is expected)")]
    NotObject { file: String },
    #[error("{file}: not an observer report (schema_version missing)")]
    NoSchemaVersion { file: String },
    #[error(
        "{file}: report schema_version {found} is not one this observer reads \
         ({SCHEMA_VERSION}); use the observer that wrote it, or rebuild the report from its \
         event log with --events"
    )]
    OtherSchemaVersion { file: String, found: Value },
    #[error("{file}: not a valid observer report: {error}")]
    Invalid {
        file: String,
        error: serde_json::Error,
    },
}

/// Reads and checks a report file (`-` for stdin).
pub fn read(path: &Path) -> Result<Report, ReadError> {
    let (source, text) = read_text(path)?;
    parse(&source, &text)
}

/// Parses and checks the text of a report; `source` names it in errors.
pub fn parse(source: &str, text: &str) -> Result<Report, ReadError> {
    from_value(source, checked_value(source, text)?)
}

/// The text of a report file (`-` for stdin), with the name errors give it.
pub fn read_text(path: &Path) -> Result<(String, String), ReadError> {
    let mut text = String::new();
    if path == Path::new("-") {
        io::stdin()
            .lock()
            .take(MAX_REPORT_BYTES)
            .read_to_string(&mut text)
            .map_err(ReadError::Stdin)?;
        return Ok(("stdin".to_owned(), text));
    }
    let file = path.display().to_string();
    let f = match File::open(path) {
        Ok(f) => f,
        Err(error) => return Err(ReadError::Open { file, error }),
    };
    if let Err(error) = f.take(MAX_REPORT_BYTES).read_to_string(&mut text) {
        return Err(ReadError::Read { file, error });
    }
    Ok((file, text))
}

/// The report as JSON, once it is known to be an object of this observer's `schema_version`.
pub fn checked_value(source: &str, text: &str) -> Result<Value, ReadError> {
    let file = || source.to_owned();
    let value: Value = serde_json::from_str(text).map_err(|error| {
        if is_event_log(text) {
            ReadError::EventLog { file: file() }
        } else {
            ReadError::NotJson {
                file: file(),
                error,
            }
        }
    })?;
    let Some(object) = value.as_object() else {
        return Err(ReadError::NotObject { file: file() });
    };
    match object.get("schema_version") {
        None => return Err(ReadError::NoSchemaVersion { file: file() }),
        Some(v) if v.as_u64() == Some(u64::from(SCHEMA_VERSION)) => {}
        Some(v) => {
            return Err(ReadError::OtherSchemaVersion {
                file: file(),
                found: v.clone(),
            })
        }
    }
    Ok(value)
}

/// The report of a checked value (see [`checked_value`]).
pub fn from_value(source: &str, value: Value) -> Result<Report, ReadError> {
    serde_json::from_value(value).map_err(|error| ReadError::Invalid {
        file: source.to_owned(),
        error,
    })
}

/// Whether a text looks like an event log: JSON lines, the first one an event.
fn is_event_log(text: &str) -> bool {
    text.lines()
        .next()
        .and_then(|line| serde_json::from_str::<Value>(line).ok())
        .is_some_and(|first| first.get("event").is_some() && first.get("ts").is_some())
}
