//! `--format human|json`: how every command answers.

use vmemsim_sim::report::{to_json, ErrorDoc};

/// How a command prints its answer.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Lines for people (the default).
    #[default]
    Human,
    /// One JSON document of the `vmemsim/1` schema on stdout (schema/vmemsim-1.schema.json).
    Json,
}

impl Format {
    pub fn json(self) -> bool {
        self == Format::Json
    }
}

/// Prints a document as JSON.
pub fn print_doc<T: serde::Serialize>(doc: &T) {
    out!("{}", to_json(doc));
}

/// Prints a command's error: on stderr for people, as a document on stdout for JSON.
pub fn print_error(format: Format, command: &str, message: &str) {
    if format.json() {
        print_doc(&ErrorDoc::new(command, message));
    } else {
        eprintln!("error: {message}");
    }
}

/// The `--format` an argument list asks for, read before clap parses it (for clap's own
/// errors).
pub fn requested(args: &[String]) -> Format {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--format=json" || (a == "--format" && it.next().is_some_and(|v| v == "json")) {
            return Format::Json;
        }
    }
    Format::Human
}
