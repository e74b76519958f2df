//! ferkit's error: a kind that fronts map (the CLI to its messages, the server to HTTP status
//! codes, Python to exception classes), where the problem is (file, line, field) when it is in
//! the user's input, and the chain of messages from the outermost context to the first cause.
//!
//! Inside the library, errors are made with [`bail!`], [`ensure!`] and [`err!`], which name the
//! kind, and given context with [`Context`] (as with `anyhow`, whose shape this follows); an
//! error from another crate that reaches `?` is classified by its type ([`ErrorKind::Io`] for
//! `std::io::Error`, ...). `{:#}` prints the whole chain joined by ": ", `{}` the outermost message.

use std::fmt;
use std::path::{Path, PathBuf};

/// What went wrong, for a front to decide what to do with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The user's input is malformed: a data file's row, an image or photo, a request body, an
    /// argument that names nothing (HTTP 400 / 422; Python `ValueError`).
    BadInput,
    /// Reading or writing failed in the operating system: a missing file, permissions, a full
    /// disk (HTTP 500, or 404 for a missing file a request named; Python `OSError`).
    Io,
    /// Weights that cannot be used: not a weights file, damaged, tensors that do not fit the
    /// net, NaN values (Python `ValueError`).
    Weights,
    /// A net that cannot be built: an inconsistent spec, an unknown preset.
    Model,
    /// A setting out of range or inconsistent: a training recipe, a search space, a saved
    /// config, options that do not go together.
    Config,
    /// Something this build or version does not do: a GPU without the `gpu` feature, a file
    /// format it does not read (HTTP 501 / 415; Python `NotImplementedError`).
    Unsupported,
    /// Training stopped because the loss or the weights stopped being finite.
    Diverged,
    /// The work was stopped on request ([`crate::events::Events::should_stop`]); what it had
    /// finished is kept (a training run resumes from its last finished epoch).
    Interrupted,
    /// A failure that is ferkit's own fault or not classified (HTTP 500; Python `RuntimeError`).
    Internal,
}

impl ErrorKind {
    /// A short lowercase name (`bad_input`, `io`, ...), as error responses spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::BadInput => "bad_input",
            ErrorKind::Io => "io",
            ErrorKind::Weights => "weights",
            ErrorKind::Model => "model",
            ErrorKind::Config => "config",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Diverged => "diverged",
            ErrorKind::Interrupted => "interrupted",
            ErrorKind::Internal => "internal",
        }
    }
}

/// Where in the user's input a problem is: the file and, when known, the 1-based line and the
/// field (a CSV column, a TOML key).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Location {
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
    pub field: Option<String>,
}

/// ferkit's error (see the module's documentation).
pub struct Error {
    kind: ErrorKind,
    location: Option<Location>,
    /// Outermost context first; the last is the first cause's message.
    messages: Vec<String>,
    /// The foreign error this started from, if any (for [`Error::downcast_ref`]).
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// `Result` with ferkit's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl fmt::Display) -> Self {
        Self { kind, location: None, messages: vec![message.to_string()], source: None }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The same error with another kind (a caller that knows better, e.g. a missing file that a
    /// request named is the request's fault).
    pub fn with_kind(mut self, kind: ErrorKind) -> Self {
        self.kind = kind;
        self
    }

    /// Where in the user's input the problem is, when the library knows.
    pub fn location(&self) -> Option<&Location> {
        self.location.as_ref()
    }

    /// Records the file, line and field of the problem (parts left `None` are kept from
    /// before).
    pub fn at(mut self, file: Option<&Path>, line: Option<usize>, field: Option<&str>) -> Self {
        let loc = self.location.get_or_insert_with(Location::default);
        if let Some(f) = file {
            loc.file.get_or_insert_with(|| f.to_path_buf());
        }
        if line.is_some() && loc.line.is_none() {
            loc.line = line;
        }
        if let Some(f) = field {
            loc.field.get_or_insert_with(|| f.to_string());
        }
        self
    }

    /// Wraps the error in an outer message (what was being done).
    pub fn context(mut self, message: impl fmt::Display) -> Self {
        self.messages.insert(0, message.to_string());
        self
    }

    /// The messages from the outermost context to the first cause.
    pub fn chain(&self) -> impl Iterator<Item = &str> {
        self.messages.iter().map(String::as_str)
    }

    /// The first cause's message.
    pub fn root_message(&self) -> &str {
        self.messages.last().map_or("", String::as_str)
    }

    /// The foreign error this started from, if it is a `T`.
    pub fn downcast_ref<T: std::error::Error + 'static>(&self) -> Option<&T> {
        self.source.as_deref().and_then(|s| s.downcast_ref::<T>())
    }

    /// An error of `kind` that keeps `source` (for [`Error::downcast_ref`]) and its message.
    pub fn from_source(kind: ErrorKind, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        let mut messages = vec![source.to_string()];
        // The source's own causes, as `anyhow` shows them.
        let mut cause = source.source();
        while let Some(c) = cause {
            // Many errors repeat their cause in their own message: show it once.
            let text = c.to_string();
            if !messages.last().is_some_and(|m| m.contains(&text)) {
                messages.push(text);
            }
            cause = c.source();
        }
        Self { kind, location: None, messages, source: Some(Box::new(source)) }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if f.alternate() {
            write!(f, "{}", self.messages.join(": "))
        } else {
            write!(f, "{}", self.messages.first().map_or("", String::as_str))
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} error: {:#}", self.kind.as_str(), self)?;
        if let Some(loc) = &self.location {
            write!(f, " (at {loc:?})")?;
        }
        Ok(())
    }
}

/// A foreign error reaching `?` is classified by its type: I/O errors as [`ErrorKind::Io`], TOML
/// parse errors as [`ErrorKind::Config`], JSON and image decoding errors as
/// [`ErrorKind::BadInput`], anything else as [`ErrorKind::Internal`].
impl<E: std::error::Error + Send + Sync + 'static> From<E> for Error {
    fn from(e: E) -> Self {
        let any: &dyn std::any::Any = &e;
        let kind = if any.is::<std::io::Error>() {
            ErrorKind::Io
        } else if any.is::<toml::de::Error>() {
            ErrorKind::Config
        } else if any.is::<serde_json::Error>() || any.is::<image::ImageError>() {
            ErrorKind::BadInput
        } else {
            ErrorKind::Internal
        };
        Error::from_source(kind, e)
    }
}

/// Context for results and options, as `anyhow::Context`: the kind of the error is kept (an
/// `Option`'s `None` becomes [`ErrorKind::BadInput`]: something the input lacks).
pub trait Context<T> {
    fn context<C: fmt::Display>(self, context: C) -> Result<T>;
    fn with_context<C: fmt::Display, F: FnOnce() -> C>(self, f: F) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context<C: fmt::Display>(self, context: C) -> Result<T> {
        self.map_err(|e| e.into().context(context))
    }

    fn with_context<C: fmt::Display, F: FnOnce() -> C>(self, f: F) -> Result<T> {
        self.map_err(|e| e.into().context(f()))
    }
}

impl<T> Context<T> for Option<T> {
    fn context<C: fmt::Display>(self, context: C) -> Result<T> {
        self.ok_or_else(|| Error::new(ErrorKind::BadInput, context))
    }

    fn with_context<C: fmt::Display, F: FnOnce() -> C>(self, f: F) -> Result<T> {
        self.ok_or_else(|| Error::new(ErrorKind::BadInput, f()))
    }
}

/// An [`Error`] of the given kind: `err!(Config, "epochs must be at least 1 (got {n})")`, or
/// `err!(Config @ "epochs", ...)` naming the setting too.
#[macro_export]
macro_rules! err {
    ($kind:ident @ $field:expr, $($arg:tt)+) => {
        $crate::error::Error::new($crate::error::ErrorKind::$kind, format!($($arg)+)).at(None, None, Some($field))
    };
    ($kind:ident, $($arg:tt)+) => {
        $crate::error::Error::new($crate::error::ErrorKind::$kind, format!($($arg)+))
    };
}

/// Returns an [`Error`] of the given kind: `bail!(BadInput, "{}: empty", path.display())`;
/// `bail!(Config @ "epochs", "...")` also names the setting (the field of its [`Location`]).
#[macro_export]
macro_rules! bail {
    ($kind:ident @ $field:expr, $($arg:tt)+) => {
        return Err($crate::err!($kind @ $field, $($arg)+).into())
    };
    ($kind:ident, $($arg:tt)+) => {
        return Err($crate::err!($kind, $($arg)+).into())
    };
}

/// Returns an [`Error`] of the given kind unless `cond` holds.
#[macro_export]
macro_rules! ensure {
    ($kind:ident @ $field:expr, $cond:expr, $($arg:tt)+) => {
        if !$cond {
            $crate::bail!($kind @ $field, $($arg)+);
        }
    };
    ($kind:ident, $cond:expr, $($arg:tt)+) => {
        if !$cond {
            $crate::bail!($kind, $($arg)+);
        }
    };
}

pub use crate::{bail, ensure, err};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_keeps_the_kind_and_prints_the_chain_as_anyhow_does() {
        let io: Result<()> = Err(std::io::Error::new(std::io::ErrorKind::NotFound, "gone").into());
        let e = io.context("data.csv: cannot read").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Io);
        assert_eq!(format!("{e:#}"), "data.csv: cannot read: gone");
        assert_eq!(format!("{e}"), "data.csv: cannot read");
        assert!(e.downcast_ref::<std::io::Error>().is_some());
        let f = || -> Result<()> { bail!(Config, "epochs must be at least {}", 1) };
        assert_eq!(f().unwrap_err().kind(), ErrorKind::Config);
        let none: Option<u8> = None;
        assert_eq!(none.context("no pixels column").unwrap_err().kind(), ErrorKind::BadInput);
        let located = err!(BadInput, "bad pixel").at(Some(Path::new("a.csv")), Some(3), Some("pixels"));
        let loc = located.location().unwrap();
        assert_eq!((loc.line, loc.field.as_deref()), (Some(3), Some("pixels")));
    }
}
