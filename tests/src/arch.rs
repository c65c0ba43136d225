//! The checks that hold the code's structure (issue 25): which room of
//! region-core may import which, and no import circle between the files of
//! any crate.
//!
//! An "import" is any path that starts with `crate::`, `super::` or
//! `self::` anywhere in a file (use lines with their groups, expressions,
//! types, macro arguments), resolved to the file that defines the module it
//! names. `mod x;` declarations are not imports: they say where a file sits,
//! not what it uses. Comments and string literals are skipped by a small
//! tokenizer, so a path in a doc comment or an error message counts for
//! nothing. Plain text in, no compiler: the checks run in milliseconds and
//! need no stack.
//!
//! Each check is a function over a directory, so the tests prove it on the
//! small trees under `tests/fixtures/arch/` as well as on the real one.

mod scan;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use scan::{FileScan, scan};

/// One resolved import: `from:line` names `path`, defined in `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// The importing file.
    pub from: PathBuf,
    /// Its 1-based line.
    pub line: usize,
    /// The path as written, groups expanded (`crate::a::b::C`).
    pub path: String,
    /// The file that defines the module the path names.
    pub to: PathBuf,
}

/// The files of one compilation target and the module each one is.
#[derive(Debug, Default)]
struct Target {
    /// File → its module path (`[]` for the root).
    files: BTreeMap<PathBuf, Vec<String>>,
    /// Module path → the file that defines it (inline modules map to the
    /// file they are written in).
    modules: HashMap<Vec<String>, PathBuf>,
}

/// The roots of a package's targets, by Cargo's conventions (the
/// workspace's crates use no other): the library, the binary, `src/bin/*`,
/// integration tests, benches, examples and the build script.
fn target_roots(package: &Path) -> Vec<PathBuf> {
    let mut roots = Vec::new();
    for file in ["src/lib.rs", "src/main.rs", "build.rs"] {
        let path = package.join(file);
        if path.is_file() {
            roots.push(path);
        }
    }
    for dir in ["src/bin", "tests", "benches", "examples"] {
        let Ok(entries) = std::fs::read_dir(package.join(dir)) else {
            continue;
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter_map(|p| {
                if p.extension().is_some_and(|e| e == "rs") && p.is_file() {
                    Some(p)
                } else if p.join("main.rs").is_file() {
                    Some(p.join("main.rs"))
                } else {
                    None
                }
            })
            .collect();
        found.sort();
        roots.extend(found);
    }
    roots
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Walks the `mod` declarations from `root` and records every file of the
/// target with its module path.
fn walk_target(root: &Path, scans: &mut BTreeMap<PathBuf, FileScan>) -> Target {
    let mut target = Target::default();
    // (file, its module path, whether `mod x;` in it looks beside it)
    let mut todo = vec![(root.to_path_buf(), Vec::<String>::new(), true)];
    while let Some((file, module, mod_rs)) = todo.pop() {
        if target.files.contains_key(&file) {
            continue;
        }
        let scanned = scans
            .entry(file.clone())
            .or_insert_with(|| scan(&read(&file)));
        target.files.insert(file.clone(), module.clone());
        target.modules.insert(module.clone(), file.clone());
        for inline in &scanned.inline_mods {
            let mut path = module.clone();
            path.extend(inline.iter().cloned());
            target.modules.entry(path).or_insert_with(|| file.clone());
        }
        let here = file.parent().expect("a file has a directory").to_path_buf();
        let base = if mod_rs {
            here.clone()
        } else {
            here.join(file.file_stem().expect("a .rs file"))
        };
        for decl in &scanned.mod_decls {
            let mut path = module.clone();
            path.extend(decl.inline.iter().cloned());
            path.push(decl.name.clone());
            let (child, child_mod_rs) = match &decl.path_attr {
                Some(p) => {
                    let child = here.join(p);
                    let mod_rs = child.file_name().is_some_and(|n| n == "mod.rs");
                    (child, mod_rs)
                }
                None => {
                    let mut dir = base.clone();
                    dir.extend(decl.inline.iter());
                    let flat = dir.join(format!("{}.rs", decl.name));
                    if flat.is_file() {
                        (flat, false)
                    } else {
                        (dir.join(&decl.name).join("mod.rs"), true)
                    }
                }
            };
            if child.is_file() {
                todo.push((child, path, child_mod_rs));
            }
        }
    }
    target
}

/// Where `segments` (as written, starting with `crate`, `self` or `super`)
/// lead from module `current`: the deepest module of the target the path
/// names. `None` when it climbs above the root.
fn resolve<'t>(target: &'t Target, current: &[String], segments: &[String]) -> Option<&'t PathBuf> {
    let mut module: Vec<String> = current.to_vec();
    let mut rest = segments;
    while let Some((first, tail)) = rest.split_first() {
        match first.as_str() {
            "crate" | "$crate" => module.clear(),
            "self" => {}
            "super" => {
                module.pop()?;
            }
            _ => break,
        }
        rest = tail;
    }
    for segment in rest {
        module.push(segment.clone());
        if !target.modules.contains_key(&module) {
            module.pop();
            break;
        }
    }
    target.modules.get(&module)
}

/// Every import of every target of `package`, in file and line order. A
/// file that several targets include (a shared test module) is read in
/// each of them; the same import is listed once.
pub fn imports_of_package(package: &Path) -> Vec<Import> {
    let mut scans = BTreeMap::new();
    let mut imports = BTreeSet::new();
    for root in target_roots(package) {
        let target = walk_target(&root, &mut scans);
        for (file, module) in &target.files {
            for path in &scans[file].paths {
                let mut current = module.clone();
                current.extend(path.inline.iter().cloned());
                let Some(to) = resolve(&target, &current, &path.segments) else {
                    continue;
                };
                if to != file {
                    imports.insert((
                        file.clone(),
                        path.line,
                        path.segments.join("::"),
                        to.clone(),
                    ));
                }
            }
        }
    }
    imports
        .into_iter()
        .map(|(from, line, path, to)| Import {
            from,
            line,
            path,
            to,
        })
        .collect()
}

/// A group of files that import each other round (a strongly connected
/// component of more than one file), with the imports that close it.
#[derive(Debug)]
pub struct Circle {
    /// The files, sorted.
    pub files: Vec<PathBuf>,
    /// The first import from each file to each other file of the circle.
    pub imports: Vec<Import>,
}

/// The import circles between the files of `package`.
pub fn circles_in_package(package: &Path) -> Vec<Circle> {
    let imports = imports_of_package(package);
    let mut nodes: BTreeSet<&PathBuf> = BTreeSet::new();
    let mut edges: BTreeMap<&PathBuf, BTreeSet<&PathBuf>> = BTreeMap::new();
    for import in &imports {
        nodes.insert(&import.from);
        nodes.insert(&import.to);
        edges.entry(&import.from).or_default().insert(&import.to);
    }
    let nodes: Vec<&PathBuf> = nodes.into_iter().collect();
    let index: HashMap<&PathBuf, usize> = nodes.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let successors: Vec<Vec<usize>> = nodes
        .iter()
        .map(|n| {
            edges
                .get(n)
                .map(|s| s.iter().map(|t| index[t]).collect())
                .unwrap_or_default()
        })
        .collect();
    strongly_connected(&successors)
        .into_iter()
        .filter(|component| component.len() > 1)
        .map(|component| {
            let files: BTreeSet<&PathBuf> = component.iter().map(|&i| nodes[i]).collect();
            let mut seen = BTreeSet::new();
            let imports = imports
                .iter()
                .filter(|i| files.contains(&i.from) && files.contains(&i.to))
                .filter(|i| seen.insert((i.from.clone(), i.to.clone())))
                .cloned()
                .collect();
            Circle {
                files: files.into_iter().cloned().collect(),
                imports,
            }
        })
        .collect()
}

/// Tarjan's algorithm, iterative (no recursion depth to worry about).
fn strongly_connected(successors: &[Vec<usize>]) -> Vec<Vec<usize>> {
    const UNSEEN: usize = usize::MAX;
    let n = successors.len();
    let (mut order, mut low) = (vec![UNSEEN; n], vec![0; n]);
    let mut on_stack = vec![false; n];
    let (mut stack, mut components, mut counter) = (Vec::new(), Vec::new(), 0);
    for start in 0..n {
        if order[start] != UNSEEN {
            continue;
        }
        let mut work = vec![(start, 0usize)];
        while let Some(&(node, next)) = work.last() {
            if next == 0 && order[node] == UNSEEN {
                order[node] = counter;
                low[node] = counter;
                counter += 1;
                stack.push(node);
                on_stack[node] = true;
            }
            if let Some(&succ) = successors[node].get(next) {
                if let Some(top) = work.last_mut() {
                    top.1 += 1;
                }
                if order[succ] == UNSEEN {
                    work.push((succ, 0));
                } else if on_stack[succ] {
                    low[node] = low[node].min(order[succ]);
                }
                continue;
            }
            work.pop();
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[node]);
            }
            if low[node] == order[node] {
                let mut component = Vec::new();
                while let Some(member) = stack.pop() {
                    on_stack[member] = false;
                    component.push(member);
                    if member == node {
                        break;
                    }
                }
                components.push(component);
            }
        }
    }
    components
}

/// The workspace's members, as the root `Cargo.toml` lists them.
pub fn workspace_members(root: &Path) -> Vec<PathBuf> {
    let manifest = read(&root.join("Cargo.toml"));
    let mut in_workspace = false;
    let mut members = Vec::new();
    let mut lines = manifest.lines();
    while let Some(line) = lines.next() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.starts_with('[') {
            in_workspace = line == "[workspace]";
            continue;
        }
        let Some(value) = line.strip_prefix("members") else {
            continue;
        };
        if !in_workspace {
            continue;
        }
        let mut list = value.trim_start().trim_start_matches('=').to_string();
        while !list.contains(']') {
            match lines.next() {
                Some(more) => list.push_str(more.split('#').next().unwrap_or("")),
                None => break,
            }
        }
        members.extend(
            list.split(['[', ']', ','])
                .map(|m| m.trim().trim_matches('"'))
                .filter(|m| !m.is_empty())
                .map(|m| root.join(m)),
        );
    }
    members
}

/// A room of region-core (see the layout in the issue and the README's
/// code map). `http/` is the api role's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Room {
    /// `main.rs`, `lib.rs`: exempt.
    Top,
    /// `roles/<role>` (`roles/common.rs` and `roles/mod.rs` are `Common`).
    Role(String),
    /// The prelude every role shares; it imports no role.
    Common,
    /// The api's HTTP layer, part of the api role.
    Http,
    /// The contract between processes.
    Bus,
    /// Everything else: what the roles share.
    Core,
}

impl fmt::Display for Room {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Room::Top => write!(f, "the top"),
            Room::Role(role) => write!(f, "role {role}"),
            Room::Common => write!(f, "roles/common"),
            Room::Http => write!(f, "http (role api)"),
            Room::Bus => write!(f, "bus"),
            Room::Core => write!(f, "the core"),
        }
    }
}

/// The room of `file` (a path under region-core's `src`).
pub fn room(src: &Path, file: &Path) -> Room {
    let relative = file.strip_prefix(src).unwrap_or(file);
    let parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    match parts
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["main"] | ["lib"] => Room::Top,
        ["roles"] | ["roles", "mod"] | ["roles", "common", ..] => Room::Common,
        ["roles", role, ..] => Room::Role(role.to_string()),
        ["http", ..] => Room::Http,
        ["bus", ..] => Room::Bus,
        _ => Room::Core,
    }
}

/// The rule an import from `from` to `to` breaks, if any.
pub fn broken_rule(from: &Room, to: &Room) -> Option<&'static str> {
    let reaches_role = |room: &Room| matches!(room, Room::Role(_) | Room::Common | Room::Http);
    match from {
        Room::Top => None,
        Room::Role(role) => match to {
            Room::Role(other) if other != role => Some("rule 1: a role imports another role"),
            Room::Http if role != "api" => Some("rule 1: only the api role imports http"),
            _ => None,
        },
        Room::Http => match to {
            Room::Role(other) if other != "api" => Some("rule 1: a role imports another role"),
            _ => None,
        },
        Room::Common => match to {
            Room::Role(_) | Room::Http => Some("rule 1: roles/common imports no role"),
            _ => None,
        },
        Room::Bus if reaches_role(to) => Some("rule 2: bus imports no role and no http"),
        Room::Core if reaches_role(to) || *to == Room::Bus => {
            Some("rule 3: the core imports no role, no http and no bus")
        }
        Room::Bus | Room::Core => None,
    }
}

/// Every import of the package at `package` (region-core's layout: rooms
/// under `src/`) that breaks a rule, as `file:line -> path (rule)` with
/// paths relative to `shown_from`.
pub fn rule_violations(package: &Path, shown_from: &Path) -> Vec<String> {
    let src = package.join("src");
    imports_of_package(package)
        .into_iter()
        .filter(|i| i.from.starts_with(&src) && i.to.starts_with(&src))
        .filter_map(|i| {
            let (from, to) = (room(&src, &i.from), room(&src, &i.to));
            broken_rule(&from, &to).map(|rule| {
                format!(
                    "{}:{} -> {} ({rule}: {from} -> {to})",
                    shown(&i.from, shown_from),
                    i.line,
                    i.path
                )
            })
        })
        .collect()
}

/// `path` relative to `base` when it is under it, for messages.
pub fn shown(path: &Path, base: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// A circle as the failure message prints it.
pub fn describe_circle(circle: &Circle, base: &Path) -> String {
    let mut text = String::from("circle:");
    for file in &circle.files {
        text.push_str(&format!(" {}", shown(file, base)));
    }
    for import in &circle.imports {
        text.push_str(&format!(
            "\n    {}:{} -> {} ({})",
            shown(&import.from, base),
            import.line,
            import.path,
            shown(&import.to, base)
        ));
    }
    text
}
