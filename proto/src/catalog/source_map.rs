//! Maps a key path inside a catalog file (`probes[2].interval`) to the line it
//! was written on. The `config` crate gives us typed values but forgets
//! positions, so the loader re-reads the file text with the format's own
//! parser (yaml-rust2 events, toml's spanned tables) just to answer "where".
use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};

/// One step in a key path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Seg {
    Key(String),
    Index(usize),
}

pub fn render_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Lines (1-based) of every key and sequence item in a document.
#[derive(Debug, Default)]
pub struct SourceMap {
    lines: HashMap<Vec<Seg>, usize>,
}

impl SourceMap {
    pub fn yaml(text: &str) -> SourceMap {
        let mut map = SourceMap::default();
        let mut parser = Parser::new_from_str(text);
        // Stack of open containers: for a mapping, the pending key (None while
        // expecting a key); for a sequence, the next index.
        enum Frame {
            Map(Option<String>),
            Seq(usize),
        }
        let mut stack: Vec<Frame> = Vec::new();
        let mut path: Vec<Seg> = Vec::new();
        // Called when a value (scalar or container start) begins at `line`.
        fn enter_value(stack: &mut [Frame], path: &mut Vec<Seg>, map: &mut SourceMap, line: usize) {
            if let Some(Frame::Seq(i)) = stack.last_mut() {
                path.push(Seg::Index(*i));
                map.lines.entry(path.clone()).or_insert(line);
                *i += 1;
            }
        }
        fn leave_value(stack: &mut [Frame], path: &mut Vec<Seg>) {
            let had_key = match stack.last_mut() {
                Some(Frame::Seq(_)) => true,
                Some(Frame::Map(pending)) => pending.take().is_some(),
                None => false,
            };
            if had_key {
                path.pop();
            }
        }
        while let Ok((event, mark)) = parser.next_token() {
            let line = mark.line();
            match event {
                Event::StreamEnd => break,
                Event::Scalar(value, ..) => {
                    if let Some(Frame::Map(pending @ None)) = stack.last_mut() {
                        *pending = Some(value.clone());
                        path.push(Seg::Key(value));
                        map.lines.entry(path.clone()).or_insert(line);
                        continue;
                    }
                    enter_value(&mut stack, &mut path, &mut map, line);
                    leave_value(&mut stack, &mut path);
                }
                Event::Alias(_) => {
                    enter_value(&mut stack, &mut path, &mut map, line);
                    leave_value(&mut stack, &mut path);
                }
                Event::MappingStart(..) => {
                    enter_value(&mut stack, &mut path, &mut map, line);
                    stack.push(Frame::Map(None));
                }
                Event::SequenceStart(..) => {
                    enter_value(&mut stack, &mut path, &mut map, line);
                    stack.push(Frame::Seq(0));
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                    leave_value(&mut stack, &mut path);
                }
                _ => {}
            }
        }
        map
    }

    pub fn toml(text: &str) -> SourceMap {
        use toml::de::{DeTable, DeValue};
        let mut map = SourceMap::default();
        let Ok(root) = DeTable::parse(text) else {
            return map;
        };
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        fn walk_table(
            table: &DeTable<'_>,
            path: &mut Vec<Seg>,
            map: &mut SourceMap,
            line_of: &dyn Fn(usize) -> usize,
        ) {
            for (key, value) in table.iter() {
                path.push(Seg::Key(key.get_ref().to_string()));
                map.lines.insert(path.clone(), line_of(key.span().start));
                walk_value(value.get_ref(), path, map, line_of);
                path.pop();
            }
        }
        fn walk_value(
            value: &DeValue<'_>,
            path: &mut Vec<Seg>,
            map: &mut SourceMap,
            line_of: &dyn Fn(usize) -> usize,
        ) {
            match value {
                DeValue::Table(t) => walk_table(t, path, map, line_of),
                DeValue::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        path.push(Seg::Index(i));
                        map.lines.insert(path.clone(), line_of(item.span().start));
                        walk_value(item.get_ref(), path, map, line_of);
                        path.pop();
                    }
                }
                _ => {}
            }
        }
        walk_table(root.get_ref(), &mut Vec::new(), &mut map, &line_of);
        map
    }

    /// The line of `path`, or of its nearest ancestor that has one.
    pub fn line(&self, path: &[Seg]) -> Option<usize> {
        (0..=path.len())
            .rev()
            .find_map(|n| self.lines.get(&path[..n]).copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(segs: &[&str]) -> Vec<Seg> {
        segs.iter()
            .map(|s| match s.parse::<usize>() {
                Ok(i) => Seg::Index(i),
                Err(_) => Seg::Key(s.to_string()),
            })
            .collect()
    }

    #[test]
    fn yaml_lines_of_keys_and_items() {
        let text = "probes:\n  - id: a\n    kind: http\n    url: x\n  - id: b\n    expect:\n      status: [200, 201]\nslos: []\n";
        let m = SourceMap::yaml(text);
        assert_eq!(m.line(&p(&["probes"])), Some(1));
        assert_eq!(m.line(&p(&["probes", "0"])), Some(2));
        assert_eq!(m.line(&p(&["probes", "0", "url"])), Some(4));
        assert_eq!(m.line(&p(&["probes", "1", "id"])), Some(5));
        assert_eq!(m.line(&p(&["probes", "1", "expect", "status"])), Some(7));
        assert_eq!(
            m.line(&p(&["probes", "1", "expect", "status", "1"])),
            Some(7)
        );
        assert_eq!(m.line(&p(&["slos"])), Some(8));
        // Unknown deeper path falls back to the closest known ancestor.
        assert_eq!(m.line(&p(&["probes", "1", "nope", "deeper"])), Some(5));
    }

    #[test]
    fn toml_lines_of_keys_and_items() {
        let text = "[[probes]]\nid = \"a\"\nkind = \"http\"\n\n[[probes]]\nid = \"b\"\ninterval = \"1s\"\n";
        let m = SourceMap::toml(text);
        assert_eq!(m.line(&p(&["probes", "0", "kind"])), Some(3));
        assert_eq!(m.line(&p(&["probes", "1", "interval"])), Some(7));
    }
}
