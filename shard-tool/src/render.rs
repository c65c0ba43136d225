//! Output for people and for scripts. People get compact aligned tables
//! with figures in readable units; scripts (`--json`) get one JSON object
//! per line on stdout, each with a `kind`, and the raw figures.

use std::io::Write;

use serde::Serialize;

/// A column's alignment: text left, figures right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Text.
    Left,
    /// Figures.
    Right,
}

/// An aligned table: a header row, then rows, each column as wide as its
/// widest cell, two spaces apart, indented by `indent`.
#[derive(Debug)]
pub struct Table {
    indent: usize,
    align: Vec<Align>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers and alignments.
    pub fn new(indent: usize, columns: &[(&str, Align)]) -> Table {
        Table {
            indent,
            align: columns.iter().map(|(_, a)| *a).collect(),
            rows: vec![columns.iter().map(|(h, _)| h.to_string()).collect()],
        }
    }

    /// Adds a row (missing cells are empty).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as lines of text, without trailing spaces.
    pub fn lines(&self) -> Vec<String> {
        let columns = self.align.len();
        let width = |i: usize| {
            self.rows
                .iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..columns).map(width).collect();
        self.rows
            .iter()
            .map(|row| {
                let mut line = " ".repeat(self.indent);
                for (i, w) in widths.iter().enumerate() {
                    let cell = row.get(i).map_or("", String::as_str);
                    let pad = w.saturating_sub(cell.chars().count());
                    if i > 0 {
                        line.push_str("  ");
                    }
                    match self.align[i] {
                        Align::Left => {
                            line.push_str(cell);
                            line.push_str(&" ".repeat(pad));
                        }
                        Align::Right => {
                            line.push_str(&" ".repeat(pad));
                            line.push_str(cell);
                        }
                    }
                }
                line.trim_end().to_string()
            })
            .collect()
    }
}

/// One JSON line: `{"kind": kind, ...item's fields}`.
pub fn json_line<T: Serialize>(
    out: &mut (impl Write + ?Sized),
    kind: &str,
    item: &T,
) -> std::io::Result<()> {
    #[derive(Serialize)]
    struct Line<'a, T> {
        kind: &'a str,
        #[serde(flatten)]
        item: &'a T,
    }
    let text = serde_json::to_string(&Line { kind, item }).map_err(std::io::Error::other)?;
    writeln!(out, "{text}")
}

/// `1 234 567`: thousands apart by a space, as the project writes figures.
pub fn count(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(d);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// `0 B`, `16.4 kB`, `1.9 GB` (decimal units).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut unit = "B";
    for u in UNITS {
        if v < 1000.0 {
            break;
        }
        v /= 1000.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

/// `42s`, `3m 12s`, `2h 05m`, `3d 04h`: the two largest units.
pub fn duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "?".to_string();
    }
    let s = seconds.round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// An optional figure, `—` when unknown.
pub fn or_dash<T>(v: Option<T>, f: impl FnOnce(T) -> String) -> String {
    v.map_or_else(|| "—".to_string(), f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_as_the_project_writes_them() {
        assert_eq!(count(412318), "412 318");
        assert_eq!(count(12), "12");
        assert_eq!(count(-1000), "-1 000");
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(1_900_000_000), "1.9 GB");
        assert_eq!(duration(42.4), "42s");
        assert_eq!(duration(192.0), "3m 12s");
        assert_eq!(duration(7500.0), "2h 05m");
        assert_eq!(or_dash(None::<u64>, bytes), "—");
    }

    #[test]
    fn columns_align_text_left_and_figures_right() {
        let mut t = Table::new(2, &[("city", Align::Left), ("rows", Align::Right)]);
        t.row(vec!["newyork".into(), "1 234".into()]);
        t.row(vec!["nyc".into(), "5".into()]);
        assert_eq!(
            t.lines(),
            ["  city      rows", "  newyork  1 234", "  nyc          5"]
        );
    }

    #[test]
    fn a_json_line_carries_its_kind() {
        let mut out = Vec::new();
        json_line(&mut out, "job", &serde_json::json!({"id": 7})).expect("write");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "{\"kind\":\"job\",\"id\":7}\n"
        );
    }
}
