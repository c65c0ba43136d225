//! A Rust tokenizer just careful enough for the import checks: it drops
//! comments (nested block comments included) and the contents of string,
//! byte-string, raw-string and char literals, tells lifetimes from chars,
//! and then reads three things from the tokens: the `mod x;` declarations
//! (with a `#[path]` attribute), the inline `mod x { … }` blocks, and every
//! path that starts with `crate`, `$crate`, `self` or `super`, with use
//! groups expanded.

/// One token, with the line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    /// A string literal's contents (kept for `#[path = "…"]`).
    Str(String),
    /// `::`
    PathSep,
    Punct(char),
    /// A number, a char or a lifetime: nothing the checks look at.
    Other,
}

/// A `mod name;` declaration.
#[derive(Debug, Clone)]
pub struct ModDecl {
    /// The inline modules it sits in, outermost first.
    pub inline: Vec<String>,
    pub name: String,
    /// The value of a `#[path = "…"]` attribute on it.
    pub path_attr: Option<String>,
}

/// A path that starts with `crate`, `$crate`, `self` or `super`.
#[derive(Debug, Clone)]
pub struct PathRef {
    /// The inline modules it is written in, outermost first.
    pub inline: Vec<String>,
    /// Its segments as written (`["super", "a", "B"]`); a glob ends at
    /// the module it reads from.
    pub segments: Vec<String>,
    pub line: usize,
}

/// What the checks need from one file.
#[derive(Debug, Default)]
pub struct FileScan {
    pub mod_decls: Vec<ModDecl>,
    /// Every inline module, as its path from the file's module.
    pub inline_mods: Vec<Vec<String>>,
    pub paths: Vec<PathRef>,
}

fn tokenize(text: &str) -> Vec<(Tok, usize)> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let (mut i, mut line) = (0, 1);
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    while i < chars.len() {
        let c = chars[i];
        let start_line = line;
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && at(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if chars[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if let Some(after_prefix) = raw_string_start(&chars, i) {
            // r"…", r#"…"#, br#"…"#, cr"…": no escapes, ends at `"` and the
            // same number of `#`.
            let mut j = after_prefix;
            let mut hashes = 0;
            while at(j) == '#' {
                hashes += 1;
                j += 1;
            }
            j += 1; // the opening quote
            let content_start = j;
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (0..hashes).all(|k| at(j + 1 + k) == '#') {
                    break;
                }
                if chars[j] == '\n' {
                    line += 1;
                }
                j += 1;
            }
            let content: String = chars[content_start..j.min(chars.len())].iter().collect();
            tokens.push((Tok::Str(content), start_line));
            i = j + 1 + hashes;
        } else if c == '"' || ((c == 'b' || c == 'c') && at(i + 1) == '"') {
            let mut j = if c == '"' { i + 1 } else { i + 2 };
            let content_start = j;
            while j < chars.len() && chars[j] != '"' {
                if chars[j] == '\\' {
                    j += 1;
                }
                if at(j) == '\n' {
                    line += 1;
                }
                j += 1;
            }
            let content: String = chars[content_start..j.min(chars.len())].iter().collect();
            tokens.push((Tok::Str(content), start_line));
            i = j + 1;
        } else if c == '\'' || (c == 'b' && at(i + 1) == '\'') {
            let q = if c == '\'' { i } else { i + 1 };
            if at(q + 1) == '\\' {
                // An escaped char (`'\''`, `'\u{..}'`): runs to the closing
                // quote after the escaped one.
                let mut j = q + 3;
                while j < chars.len() && chars[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
            } else if at(q + 2) == '\'' {
                i = q + 3; // 'x'
            } else {
                // A lifetime or a label: the quote and its identifier.
                let mut j = q + 1;
                while is_ident_char(at(j)) {
                    j += 1;
                }
                i = j;
            }
            tokens.push((Tok::Other, start_line));
        } else if c.is_ascii_digit() {
            let mut j = i;
            while is_ident_char(at(j)) || (at(j) == '.' && at(j + 1).is_ascii_digit()) {
                j += 1;
            }
            tokens.push((Tok::Other, start_line));
            i = j;
        } else if is_ident_start(c) {
            let mut j = i;
            if c == 'r' && at(i + 1) == '#' && is_ident_start(at(i + 2)) {
                j = i + 2; // a raw identifier: r#type reads as `type`
            }
            let from = j;
            while is_ident_char(at(j)) {
                j += 1;
            }
            tokens.push((Tok::Ident(chars[from..j].iter().collect()), start_line));
            i = j;
        } else if c == ':' && at(i + 1) == ':' {
            tokens.push((Tok::PathSep, start_line));
            i += 2;
        } else {
            tokens.push((Tok::Punct(c), start_line));
            i += 1;
        }
    }
    tokens
}

/// Where the hashes or the quote of a raw string start, when one starts
/// at `i`.
fn raw_string_start(chars: &[char], i: usize) -> Option<usize> {
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    if i > 0 && is_ident_char(chars[i - 1]) {
        return None;
    }
    let after = match (at(i), at(i + 1)) {
        ('r', _) => i + 1,
        ('b' | 'c', 'r') => i + 2,
        _ => return None,
    };
    let mut j = after;
    while at(j) == '#' {
        j += 1;
    }
    (at(j) == '"').then_some(after)
}

fn is_ident_start(c: char) -> bool {
    c == '_' || c.is_alphabetic()
}

fn is_ident_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// Reads the tokens of one file.
pub fn scan(text: &str) -> FileScan {
    let tokens = tokenize(text);
    let ident = |i: usize| match tokens.get(i) {
        Some((Tok::Ident(s), _)) => Some(s.as_str()),
        _ => None,
    };
    let is = |i: usize, tok: &Tok| tokens.get(i).map(|(t, _)| t) == Some(tok);
    let mut out = FileScan::default();
    // The inline modules open at this point, with the brace depth inside each.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut path_attr: Option<String> = None;
    let mut i = 0;
    while i < tokens.len() {
        let (tok, _) = &tokens[i];
        match tok {
            Tok::Punct('{') => {
                depth += 1;
                path_attr = None;
            }
            Tok::Punct('}') => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
                path_attr = None;
            }
            Tok::Punct(';') => path_attr = None,
            Tok::Punct('#')
                if is(i + 1, &Tok::Punct('['))
                    && ident(i + 2) == Some("path")
                    && is(i + 3, &Tok::Punct('=')) =>
            {
                if let Some((Tok::Str(value), _)) = tokens.get(i + 4) {
                    path_attr = Some(value.clone());
                }
            }
            Tok::Ident(word) if word == "mod" => {
                if let Some(name) = ident(i + 1) {
                    let names: Vec<String> = inline.iter().map(|(n, _)| n.clone()).collect();
                    if is(i + 2, &Tok::Punct(';')) {
                        out.mod_decls.push(ModDecl {
                            inline: names,
                            name: name.to_string(),
                            path_attr: path_attr.take(),
                        });
                    } else if is(i + 2, &Tok::Punct('{')) {
                        let mut path = names;
                        path.push(name.to_string());
                        out.inline_mods.push(path);
                        inline.push((name.to_string(), depth + 1));
                    }
                }
            }
            Tok::Ident(word)
                if matches!(word.as_str(), "crate" | "self" | "super")
                    && is(i + 1, &Tok::PathSep)
                    && !(i > 0 && is(i - 1, &Tok::PathSep))
                    && !(i > 0 && ident(i - 1) == Some("in")) =>
            {
                let first = if i > 0 && is(i - 1, &Tok::Punct('$')) {
                    "$crate".to_string()
                } else {
                    word.clone()
                };
                let names: Vec<String> = inline.iter().map(|(n, _)| n.clone()).collect();
                let mut found = Vec::new();
                let end = read_tree(&tokens, i + 2, vec![first], &mut found);
                for (segments, line) in found {
                    out.paths.push(PathRef {
                        inline: names.clone(),
                        segments,
                        line,
                    });
                }
                i = end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Reads a path (or a use tree) from `i`, right after a `::`, with the
/// segments before it in `prefix`; pushes each complete path with its line
/// and returns the index after it.
fn read_tree(
    tokens: &[(Tok, usize)],
    mut i: usize,
    mut prefix: Vec<String>,
    found: &mut Vec<(Vec<String>, usize)>,
) -> usize {
    loop {
        let line = tokens.get(i).map_or(0, |(_, l)| *l);
        match tokens.get(i).map(|(t, _)| t) {
            Some(Tok::Ident(segment)) => {
                if segment != "self" || prefix.is_empty() {
                    prefix.push(segment.clone());
                }
                i += 1;
                if tokens.get(i).map(|(t, _)| t) == Some(&Tok::PathSep) {
                    i += 1;
                    continue;
                }
                found.push((prefix, line));
                return i;
            }
            Some(Tok::Punct('{')) => {
                i += 1;
                loop {
                    match tokens.get(i).map(|(t, _)| t) {
                        None => return i,
                        Some(Tok::Punct('}')) => return i + 1,
                        Some(Tok::Punct(',')) => i += 1,
                        Some(_) => {
                            let before = i;
                            i = read_tree(tokens, i, prefix.clone(), found);
                            // Skip a rename (`as x`) up to the next item.
                            while let Some((t, _)) = tokens.get(i) {
                                if matches!(t, Tok::Punct(',') | Tok::Punct('}')) {
                                    break;
                                }
                                i += 1;
                            }
                            if i == before {
                                i += 1;
                            }
                        }
                    }
                }
            }
            // A glob (`*`) or generics (`::<T>`): the path ends here.
            _ => {
                found.push((prefix, line));
                return i;
            }
        }
    }
}
