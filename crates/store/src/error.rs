//! The store's errors. Each says what went wrong and in which store.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pactum_domain::{Slug, Version};

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A read (or `OpenMode::MustExist`) found nothing at the path.
    #[error("no store at {} (append creates one)", .path.display())]
    Missing { path: PathBuf },

    #[error("{} is not a pactum store: {reason}", .path.display())]
    NotAStore { path: PathBuf, reason: String },

    /// Another process holds the store (sled's lock), still after `waited`.
    #[error("store {} is in use by another process{}", .path.display(), waited_for(.waited))]
    Locked { path: PathBuf, waited: Duration },

    #[error(
        "store {} has format version {found}, newer than this build supports ({supported}): \
         upgrade pactum",
        .path.display()
    )]
    NewerFormat {
        path: PathBuf,
        found: u32,
        supported: u32,
    },

    #[error("store {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("store {}: sled: {source}", .path.display())]
    Sled {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },

    /// A stored head or record that does not decode.
    #[error(
        "store {}: {} does not decode: {reason}",
        .path.display(),
        describe(.agreement, .version)
    )]
    Decode {
        path: PathBuf,
        /// The slug, or the agreement's uuid where the slug is not known.
        agreement: String,
        /// The record's version; `None` for the agreement's head.
        version: Option<Version>,
        reason: String,
    },

    /// The trees disagree with each other (a slug without a head, a key of the wrong length).
    #[error("store {} is damaged: {reason}", .path.display())]
    Corrupt { path: PathBuf, reason: String },

    #[error("store {}: no agreement {agreement}", .path.display())]
    UnknownAgreement { path: PathBuf, agreement: Slug },

    /// An append request the store refuses to write (the app layer should never send one).
    #[error("store {}: refused to append to {agreement}: {reason}", .path.display())]
    Refused {
        path: PathBuf,
        agreement: Slug,
        reason: String,
    },
}

fn waited_for(waited: &Duration) -> String {
    if waited.is_zero() {
        String::new()
    } else {
        format!("; waited {} s", waited.as_secs_f64())
    }
}

fn describe(agreement: &str, version: &Option<Version>) -> String {
    match version {
        Some(v) => format!("record {agreement} v{v}"),
        None => format!("the head of agreement {agreement}"),
    }
}

/// Turns sled's error at open into ours: its lock failure is an `io::Error` of kind `Other`
/// whose message starts "could not acquire lock" (fs2's own error, kind `WouldBlock`, is only in
/// the text).
pub(crate) fn open_error(path: &Path, e: sled::Error) -> StoreError {
    let path = path.to_path_buf();
    match e {
        sled::Error::Io(io)
            if io.kind() == std::io::ErrorKind::WouldBlock
                || io.to_string().contains("could not acquire lock") =>
        {
            StoreError::Locked {
                path,
                waited: Duration::ZERO,
            }
        }
        sled::Error::Io(source) => StoreError::Io { path, source },
        sled::Error::Corruption { .. } | sled::Error::Unsupported(_) => StoreError::NotAStore {
            path,
            reason: format!("sled cannot open it: {e}"),
        },
        other => StoreError::Sled {
            path,
            source: other,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[test]
    fn lock_failures_map_to_locked() {
        let p = Path::new("/x/pactum.db");
        let sled_msg = io::Error::other(
            "could not acquire lock on \"/x/pactum.db/db\": Os { code: 11, kind: WouldBlock }",
        );
        let e = open_error(p, sled::Error::Io(sled_msg));
        assert!(matches!(e, StoreError::Locked { .. }));
        assert_eq!(
            e.to_string(),
            "store /x/pactum.db is in use by another process"
        );
        let wb = open_error(p, sled::Error::Io(io::ErrorKind::WouldBlock.into()));
        assert!(matches!(wb, StoreError::Locked { .. }));
        let waited = StoreError::Locked {
            path: p.into(),
            waited: Duration::from_millis(2500),
        };
        assert_eq!(
            waited.to_string(),
            "store /x/pactum.db is in use by another process; waited 2.5 s"
        );
        let denied = open_error(p, sled::Error::Io(io::ErrorKind::PermissionDenied.into()));
        assert!(matches!(denied, StoreError::Io { .. }));
        let unsupported = open_error(p, sled::Error::Unsupported("x".into()));
        assert!(matches!(unsupported, StoreError::NotAStore { .. }));
    }

    #[test]
    fn decode_messages_name_the_record() {
        let e = StoreError::Decode {
            path: "/s".into(),
            agreement: "acme".into(),
            version: Some(3),
            reason: "bad".into(),
        };
        assert_eq!(
            e.to_string(),
            "store /s: record acme v3 does not decode: bad"
        );
        let e = StoreError::Decode {
            path: "/s".into(),
            agreement: "acme".into(),
            version: None,
            reason: "bad".into(),
        };
        assert_eq!(
            e.to_string(),
            "store /s: the head of agreement acme does not decode: bad"
        );
    }
}
