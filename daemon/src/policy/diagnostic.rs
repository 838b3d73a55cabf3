//! Where a problem is and what it says. Every error and warning points at a file, a line and a
//! column, and compilation goes on after each one, so that an operator fixes them all in one pass.

use std::{
    cell::OnceCell,
    fmt,
    ops::Range,
    path::{Path, PathBuf},
};

use serde::de::DeserializeOwned;
use toml::{
    Spanned,
    de::{DeTable, DeValue, Deserializer, ValueDeserializer},
};

use super::problem::Problem;

/// A position in a policy file: 1-based line and column, the column counted in characters.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Place {
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl Place {
    /// The start of a file, for problems with the file as a whole (missing, unreadable).
    #[must_use]
    pub fn file(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            line: 1,
            column: 1,
        }
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.path.display(), self.line, self.column)
    }
}

/// One error or warning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl Diagnostic {
    #[must_use]
    pub fn new(place: &Place, message: impl fmt::Display) -> Self {
        Self {
            path: place.path.clone(),
            line: place.line,
            column: place.column,
            message: message.to_string(),
        }
    }

    /// `path:line:column`.
    #[must_use]
    pub fn place(&self) -> Place {
        Place {
            path: self.path.clone(),
            line: self.line,
            column: self.column,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.place(), self.message)
    }
}

/// Every error of a policy directory that does not compile, in file and position order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", lines(.0))]
pub struct PolicyErrors(pub Vec<Diagnostic>);

fn lines(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A policy file's text, to turn the byte spans that the TOML parser gives into places.
pub(crate) struct SourceText<'a> {
    /// The path shown in diagnostics (the directory, or `<embedded>`, joined to `name`).
    pub path: PathBuf,
    /// The name relative to the policy directory, with `/` separators: `catalog/zoom.toml`.
    pub name: String,
    pub text: &'a str,
    /// Byte offset of each line's start, found once: a catalog of 100,000 prefixes asks for
    /// 100,000 places, and counting lines from the top for each was quadratic.
    line_starts: OnceCell<Vec<usize>>,
}

impl<'a> SourceText<'a> {
    pub fn new(path: PathBuf, name: String, text: &'a str) -> Self {
        Self {
            path,
            name,
            text,
            line_starts: OnceCell::new(),
        }
    }

    /// The place where byte `span.start` lies (clamped into the text).
    pub fn place(&self, span: Range<usize>) -> Place {
        let mut start = span.start.min(self.text.len());
        while !self.text.is_char_boundary(start) {
            start -= 1;
        }
        let starts = self.line_starts.get_or_init(|| {
            std::iter::once(0)
                .chain(self.text.match_indices('\n').map(|(i, _)| i + 1))
                .collect()
        });
        // The last line start at or before `start` (the first is 0, so there is one).
        let line = starts.partition_point(|&s| s <= start);
        let line_start = starts[line - 1];
        Place {
            path: self.path.clone(),
            line,
            column: self.text[line_start..start].chars().count() + 1,
        }
    }

    pub fn at<T>(&self, value: &Spanned<T>) -> Place {
        self.place(value.span())
    }

    /// The document's top-level table, or `None` after reporting every syntax error.
    pub fn document(&self, report: &mut Report) -> Option<Spanned<DeTable<'a>>> {
        let (document, errors) = DeTable::parse_recoverable(self.text);
        for e in &errors {
            self.report_toml(e, report);
        }
        errors.is_empty().then_some(document)
    }

    /// A value of the document as `T`, or `None` after reporting why it is not one (the first
    /// reason: unknown key, missing key, wrong type).
    pub fn value<T: DeserializeOwned>(
        &self,
        value: Spanned<DeValue<'a>>,
        report: &mut Report,
    ) -> Option<T> {
        self.deserialized(T::deserialize(ValueDeserializer::from(value)), report)
    }

    /// The whole text as `T`, or `None` after reporting its problems.
    pub fn parse<T: DeserializeOwned>(&self, report: &mut Report) -> Option<T> {
        let document = self.document(report)?;
        self.deserialized(T::deserialize(Deserializer::from(document)), report)
    }

    fn deserialized<T>(
        &self,
        result: Result<T, toml::de::Error>,
        report: &mut Report,
    ) -> Option<T> {
        result.map_err(|e| self.report_toml(&e, report)).ok()
    }

    fn report_toml(&self, e: &toml::de::Error, report: &mut Report) {
        report.error(
            &self.place(e.span().unwrap_or(0..0)),
            Problem::Toml(e.message().to_owned()),
        );
    }
}

/// Problems found so far.
#[derive(Default)]
pub(crate) struct Report {
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

impl Report {
    pub fn error(&mut self, place: &Place, problem: Problem) {
        self.errors.push(Diagnostic::new(place, problem));
    }

    pub fn warn(&mut self, place: &Place, problem: Problem) {
        self.warnings.push(Diagnostic::new(place, problem));
    }

    /// The value of `result`, or `None` after reporting its problem at `place`.
    pub fn take<T>(&mut self, place: &Place, result: Result<T, Problem>) -> Option<T> {
        result.map_err(|problem| self.error(place, problem)).ok()
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    pub fn error_count(&self) -> usize {
        self.errors.len()
    }

    /// The errors, sorted by file and position (stable: one place keeps its order).
    pub fn into_errors(self) -> PolicyErrors {
        PolicyErrors(sorted(self.errors))
    }

    pub fn into_warnings(self) -> Vec<Diagnostic> {
        sorted(self.warnings)
    }
}

fn sorted(mut diagnostics: Vec<Diagnostic>) -> Vec<Diagnostic> {
    diagnostics.sort_by(|a, b| (&a.path, a.line, a.column).cmp(&(&b.path, b.line, b.column)));
    diagnostics
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(text: &str) -> SourceText<'_> {
        SourceText::new(PathBuf::from("p.toml"), "p.toml".into(), text)
    }

    #[test]
    fn places_are_one_based_and_count_characters() {
        let text = "a = 1\nnom = \"é\" x\n";
        let src = source(text);
        assert_eq!(src.place(0..1).to_string(), "p.toml:1:1");
        let x = text.find('x').unwrap();
        // "nom = \"é\" " is 10 characters but 11 bytes.
        assert_eq!(src.place(x..x + 1).to_string(), "p.toml:2:11");
        assert_eq!(src.place(999..1000).to_string(), "p.toml:3:1");
    }

    #[test]
    fn errors_print_one_per_line_in_place_order() {
        let mut report = Report::default();
        let b = Place {
            path: "b".into(),
            line: 2,
            column: 3,
        };
        let a = Place {
            path: "a".into(),
            line: 9,
            column: 1,
        };
        report.error(&b, Problem::MissingPolicyFile);
        report.error(&a, Problem::MissingPolicyFile);
        let shown = report.into_errors().to_string();
        assert_eq!(
            shown,
            "a:9:1: missing policy.toml\nb:2:3: missing policy.toml"
        );
    }
}
