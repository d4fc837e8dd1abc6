//! Colour and aligned tables for text output.

use std::io::IsTerminal;

/// ANSI styling, on only when stdout is a terminal and `NO_COLOR` is unset or empty.
pub struct Style {
    enabled: bool,
}

impl Style {
    pub fn for_stdout() -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Style {
            enabled: !no_color && std::io::stdout().is_terminal(),
        }
    }

    #[cfg(test)]
    pub fn plain() -> Self {
        Style { enabled: false }
    }

    fn paint(&self, code: &str, s: &str) -> String {
        if self.enabled {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }

    pub fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
    pub fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }
    pub fn green(&self, s: &str) -> String {
        self.paint("32", s)
    }
    pub fn red(&self, s: &str) -> String {
        self.paint("31", s)
    }
    pub fn yellow(&self, s: &str) -> String {
        self.paint("33", s)
    }
}

/// A table whose columns are padded to their widest cell (in characters; styling is applied
/// after padding so escape codes never skew the alignment).
pub struct Table {
    header: Vec<String>,
    rows: Vec<Row>,
}

enum Row {
    Cells(Vec<String>),
    /// A line under the previous row, indented, not aligned (e.g. clause text).
    Note(String),
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Table {
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(Row::Cells(cells));
    }

    pub fn note(&mut self, line: String) {
        self.rows.push(Row::Note(line));
    }

    pub fn render(&self, style: &Style, indent: &str) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            if let Row::Cells(cells) = row {
                for (i, c) in cells.iter().enumerate() {
                    if i < widths.len() {
                        widths[i] = widths[i].max(c.chars().count());
                    }
                }
            }
        }
        let line = |cells: &[String]| {
            let mut out = String::from(indent);
            for (i, c) in cells.iter().enumerate() {
                let last = i + 1 == cells.len();
                out.push_str(c);
                if !last {
                    let width = widths.get(i).copied().unwrap_or(0);
                    let pad = width.saturating_sub(c.chars().count());
                    out.push_str(&" ".repeat(pad + 2));
                }
            }
            out.trim_end().to_owned()
        };
        let mut out = style.bold(&line(&self.header));
        out.push('\n');
        for row in &self.rows {
            match row {
                Row::Cells(cells) => out.push_str(&line(cells)),
                Row::Note(note) => {
                    out.push_str(indent);
                    out.push_str("    ");
                    out.push_str(&style.dim(note));
                }
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_by_characters_and_notes_indent() {
        let mut t = Table::new(&["A", "B"]);
        t.row(vec!["é".into(), "x".into()]);
        t.row(vec!["long".into(), "y".into()]);
        t.note("clause".into());
        assert_eq!(
            t.render(&Style::plain(), "  "),
            "  A     B\n  é     x\n  long  y\n      clause\n"
        );
    }
}
