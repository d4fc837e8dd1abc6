//! Pactum's amendment file format (SPEC §2, docs/FORMAT.md): the bytes of one TOML or JSON
//! amendment file in, a checked [`Draft`] out, or one [`FormatError`] that names the file, the
//! line and column where the parser knows them, and the rule that was broken.
//!
//! This crate is pure: it reads no files (the caller passes a name and the bytes) and knows no
//! ledger. It refuses what can be refused from the file alone (syntax, unknown fields, types,
//! malformed identifiers, and the rules of [`Draft::new`]); the refusals that depend on the
//! agreement's history (open missing or present, remove of a term not in force, revokes of a
//! missing version, expect_version) belong to the append path, not here.

mod build;
mod tree;

use pactum_domain::limits::FILE_BYTES_MAX;
use pactum_domain::Draft;

/// The syntax of an amendment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    Toml,
    Json,
}

/// `.json` → Json; `.toml` → Toml; otherwise (e.g. "-" for stdin) Json if the first
/// non-whitespace byte is `{` (a TOML file cannot start with one), else Toml.
pub fn detect(name: &str, bytes: &[u8]) -> Syntax {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".json") {
        return Syntax::Json;
    }
    if lower.ends_with(".toml") {
        return Syntax::Toml;
    }
    let body = bytes.strip_prefix(BOM.as_bytes()).unwrap_or(bytes);
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Syntax::Json,
        _ => Syntax::Toml,
    }
}

/// Parses one amendment file. `name` is only used in error messages.
pub fn parse_amendment(name: &str, bytes: &[u8]) -> Result<Draft, FormatError> {
    let fail =
        |f: Fail, text: &str| FormatError::new(name, f.pos.map(|p| line_col(text, p)), &f.msg);
    if bytes.len() > FILE_BYTES_MAX {
        return Err(FormatError::new(
            name,
            None,
            &format!(
                "the file is {} bytes, over the limit of {FILE_BYTES_MAX}",
                bytes.len()
            ),
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let valid = bytes.get(..e.valid_up_to()).unwrap_or_default();
        let prefix = std::str::from_utf8(valid).unwrap_or_default();
        let prefix = prefix.strip_prefix(BOM).unwrap_or(prefix);
        let bad = bytes.get(e.valid_up_to()).copied().unwrap_or_default();
        FormatError::new(
            name,
            Some(line_col(prefix, prefix.len())),
            &format!("the file is not UTF-8 text (byte 0x{bad:02X} is not valid UTF-8)"),
        )
    })?;
    // Editors may write a byte order mark; it is not part of the document, nor of its columns.
    let text = text.strip_prefix(BOM).unwrap_or(text);
    let syntax = detect(name, bytes);
    let root = match syntax {
        Syntax::Toml => tree::from_toml(text),
        Syntax::Json => tree::from_json(text),
    }
    .map_err(|f| fail(f, text))?;
    build::draft(&root, syntax).map_err(|f| fail(f, text))
}

const BOM: &str = "\u{feff}";

/// Why an amendment file was refused. Displays as one line, `FILE:LINE:COL: MESSAGE` (or
/// `FILE: MESSAGE` without a position), because the CLI prints it after `error: `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.one_line())]
pub struct FormatError {
    pub file: String,
    /// 1-based.
    pub line: Option<usize>,
    /// 1-based, in characters.
    pub column: Option<usize>,
    pub message: String,
}

impl FormatError {
    fn new(file: &str, at: Option<(usize, usize)>, message: &str) -> FormatError {
        FormatError {
            file: file.to_owned(),
            line: at.map(|(l, _)| l),
            column: at.map(|(_, c)| c),
            message: collapse(message),
        }
    }

    fn one_line(&self) -> String {
        let file = collapse(&self.file);
        let message = collapse(&self.message);
        match (self.line, self.column) {
            (Some(l), Some(c)) => format!("{file}:{l}:{c}: {message}"),
            (Some(l), None) => format!("{file}:{l}: {message}"),
            _ => format!("{file}: {message}"),
        }
    }
}

/// Parser messages may span lines; the error must not. Messages quote the file (a slug, a key),
/// so one is also cut at [`MESSAGE_MAX`] characters.
fn collapse(s: &str) -> String {
    let one = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() > MESSAGE_MAX {
        let mut cut: String = one.chars().take(MESSAGE_MAX).collect();
        cut.push('…');
        cut
    } else {
        one
    }
}

/// Longest message a [`FormatError`] carries, in characters.
const MESSAGE_MAX: usize = 1024;

/// A name taken from the file, cut short for a message.
pub(crate) fn clip(s: &str) -> String {
    const NAME_MAX: usize = 64;
    if s.chars().count() > NAME_MAX {
        let mut cut: String = s.chars().take(NAME_MAX).collect();
        cut.push('…');
        cut
    } else {
        s.to_owned()
    }
}

/// A refusal inside the crate: the byte offset it points at, if known, and what is wrong.
#[derive(Debug)]
pub(crate) struct Fail {
    pub pos: Option<usize>,
    pub msg: String,
}

impl Fail {
    pub(crate) fn at(node: &tree::Node, msg: String) -> Fail {
        Fail { pos: node.pos, msg }
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let offset = (0..=offset)
        .rev()
        .find(|&o| text.is_char_boundary(o))
        .unwrap_or(0);
    let before = text.get(..offset).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).unwrap_or_default().chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests;
