//! Kubernetes objects as YAML text. The renderer builds every object as a
//! `serde_json::Value` (so a test can read it back as JSON) and prints it
//! here: a small emitter rather than a YAML library, because the subset we
//! need is tiny (maps, lists, scalars) and its output must be stable byte
//! for byte for the golden files. Strings are written as JSON strings
//! (valid YAML double-quoted scalars, so nothing is ever mis-typed: no
//! `"on"` read as a boolean), except multi-line text, which becomes a
//! literal block so that config files stay readable.

use serde_json::Value;

/// The documents of one file, each introduced by `---`.
pub fn documents(objects: &[Value]) -> String {
    let mut out = String::new();
    for object in objects {
        out.push_str("---\n");
        node(&mut out, object, 0);
    }
    out
}

/// Writes `value` as a block node whose lines are indented by `indent`.
fn node(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, item) in map {
                out.push_str(&" ".repeat(indent));
                out.push_str(&key_text(key));
                out.push(':');
                after_key(out, item, indent + 2);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                let mut child = String::new();
                match item {
                    Value::Object(m) if !m.is_empty() => node(&mut child, item, indent + 2),
                    Value::Array(a) if !a.is_empty() => node(&mut child, item, indent + 2),
                    _ => {
                        child.push_str(&" ".repeat(indent + 2));
                        child.push_str(&scalar(item, indent + 2));
                        child.push('\n');
                    }
                }
                // The first line of the item carries the dash.
                out.push_str(&" ".repeat(indent));
                out.push_str("- ");
                out.push_str(&child[indent + 2..]);
            }
        }
        _ => {
            out.push_str(&" ".repeat(indent));
            out.push_str(&scalar(value, indent));
            out.push('\n');
        }
    }
}

/// What follows `key:`: a nested block on the next lines, or a scalar.
fn after_key(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            node(out, value, indent);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            node(out, value, indent);
        }
        _ => {
            out.push(' ');
            out.push_str(&scalar(value, indent));
            out.push('\n');
        }
    }
}

/// A scalar (or an empty collection) on one line; multi-line strings as a
/// literal block whose lines are indented by `indent`.
fn scalar(value: &Value, indent: usize) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
        Value::String(s) if literal_block_fits(s) => {
            let chomp = if s.ends_with("\n\n") {
                "+"
            } else if s.ends_with('\n') {
                ""
            } else {
                "-"
            };
            let mut text = format!("|{chomp}");
            for line in s.strip_suffix('\n').unwrap_or(s).split('\n') {
                text.push('\n');
                if !line.is_empty() {
                    text.push_str(&" ".repeat(indent));
                    text.push_str(line);
                }
            }
            text
        }
        Value::String(s) => Value::String(s.clone()).to_string(),
    }
}

/// A literal block keeps text as it is, but cannot start with a space (the
/// indentation would be misread) nor carry tabs, carriage returns or
/// trailing spaces that editors strip.
fn literal_block_fits(s: &str) -> bool {
    s.contains('\n')
        && !s.starts_with([' ', '\n'])
        && !s.contains(['\t', '\r'])
        && s.lines().all(|l| !l.ends_with(' '))
}

/// Keys are plain when YAML cannot read them as anything but a string.
fn key_text(key: &str) -> String {
    let plain = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
        && !matches!(
            key.to_ascii_lowercase().as_str(),
            "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null"
        );
    if plain {
        key.to_string()
    } else {
        Value::String(key.to_string()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_maps_and_lists_indent_as_kubectl_writes_them() {
        let text = documents(&[json!({
            "kind": "Service",
            "spec": {"ports": [{"name": "dns", "port": 53}, {"name": "tcp", "port": 53}],
                     "selector": {}},
            "args": ["serve", ["a"]],
        })]);
        assert_eq!(
            text,
            "---\nargs:\n  - \"serve\"\n  - - \"a\"\nkind: \"Service\"\nspec:\n  ports:\n    - name: \"dns\"\n      port: 53\n    - name: \"tcp\"\n      port: 53\n  selector: {}\n"
        );
    }

    #[test]
    fn ambiguous_scalars_are_quoted_and_config_text_is_a_literal_block() {
        let text = documents(&[json!({"conf": "a b\n\nc\n", "n": "1", "on": "yes"})]);
        assert_eq!(
            text,
            "---\nconf: |\n  a b\n\n  c\n\"n\": \"1\"\n\"on\": \"yes\"\n"
        );
    }
}
