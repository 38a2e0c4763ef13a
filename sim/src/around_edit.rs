//! Edits of a scenario's TOML document for `campaign --around`: set, remove, append to a list
//! and copy, addressed by a field path such as `destination.mount[1].size`, keeping the rest of
//! the file (comments, order, layout) as it was.

use toml_edit::{Array, ArrayOfTables, DocumentMut, InlineTable, Item, Table, Value};

/// One change to a scenario document.
#[derive(Clone, Debug)]
pub enum Edit {
    /// Sets a value, creating the tables on the way.
    Set(String, Value),
    /// Removes a key (nothing happens when it is absent).
    Remove(String),
    /// Appends a table to a list of tables (`[[faults.drain]]` or an inline array).
    Push(String, InlineTable),
    /// Copies the item at the first path to the second, unless the second already exists.
    CopyIfAbsent(String, String),
}

/// One step of a path: a key, or an index into a list.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// `a.b[2].c` as steps.
fn segments(path: &str) -> Result<Vec<Seg>, String> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = part.split_once('[').map_or((part, ""), |(k, r)| (k, r));
        if key.is_empty() {
            return Err(format!("'{path}' has an empty key"));
        }
        out.push(Seg::Key(key.to_string()));
        while !rest.is_empty() {
            let (n, after) = rest.split_once(']').ok_or_else(|| format!("'{path}' has an unclosed ["))?;
            out.push(Seg::Index(n.parse().map_err(|_| format!("'{path}': '{n}' is not an index"))?));
            rest = after.strip_prefix('[').unwrap_or(after);
        }
    }
    Ok(out)
}

/// The item at `path`, creating missing tables (a root-level one as `[table]`, a deeper one
/// inline) when `create` is set.
fn walk<'a>(root: &'a mut Item, path: &[Seg], create: bool) -> Result<Option<&'a mut Item>, String> {
    let mut at = root;
    for (depth, seg) in path.iter().enumerate() {
        at = match seg {
            Seg::Key(k) => {
                let Some(t) = at.as_table_like_mut() else { return Err(format!("'{k}' lies under a value that is not a table")) };
                if t.get(k).is_none_or(Item::is_none) {
                    if !create {
                        return Ok(None);
                    }
                    let fresh = if depth == 0 {
                        let mut t = Table::new();
                        t.set_implicit(true);
                        Item::Table(t)
                    } else {
                        Item::Value(Value::InlineTable(InlineTable::new()))
                    };
                    t.insert(k, fresh);
                }
                t.get_mut(k).expect("inserted above")
            }
            Seg::Index(i) => match at.get_mut(*i) {
                Some(item) => item,
                None if create => return Err(format!("there is no element {i} of the list")),
                None => return Ok(None),
            },
        };
    }
    Ok(Some(at))
}

/// Splits a path into its parent and its last key.
fn parent_and_key(path: &str) -> Result<(Vec<Seg>, String), String> {
    let mut segs = segments(path)?;
    match segs.pop() {
        Some(Seg::Key(k)) => Ok((segs, k)),
        _ => Err(format!("'{path}' does not end in a key")),
    }
}

/// Applies one edit to a document.
pub fn apply(doc: &mut DocumentMut, edit: &Edit) -> Result<(), String> {
    let root = doc.as_item_mut();
    match edit {
        Edit::Set(path, v) => {
            let (parent, key) = parent_and_key(path)?;
            let table = walk(root, &parent, true)?.expect("created").as_table_like_mut().ok_or_else(|| format!("{path}: its parent is not a table"))?;
            let mut v = v.clone();
            if let Some(old) = table.get(&key).and_then(Item::as_value) {
                *v.decor_mut() = old.decor().clone();
            }
            table.insert(&key, Item::Value(v));
        }
        Edit::Remove(path) => {
            let (parent, key) = parent_and_key(path)?;
            if let Some(t) = walk(root, &parent, false)?.and_then(Item::as_table_like_mut) {
                t.remove(&key);
            }
        }
        Edit::Push(path, t) => {
            let (parent, key) = parent_and_key(path)?;
            let depth = parent.len();
            let table = walk(root, &parent, true)?.expect("created").as_table_like_mut().ok_or_else(|| format!("{path}: its parent is not a table"))?;
            let dotted = table.is_dotted();
            match table.get_mut(&key) {
                Some(Item::ArrayOfTables(a)) => a.push(t.clone().into_table()),
                Some(Item::Value(Value::Array(a))) => a.push(Value::InlineTable(t.clone())),
                Some(item) if !item.is_none() => return Err(format!("{path} is not a list of tables")),
                _ if depth == 1 && !dotted => {
                    let mut a = ArrayOfTables::new();
                    a.push(t.clone().into_table());
                    table.insert(&key, Item::ArrayOfTables(a));
                }
                _ => {
                    let mut a = Array::new();
                    a.push(Value::InlineTable(t.clone()));
                    table.insert(&key, Item::Value(Value::Array(a)));
                }
            }
        }
        Edit::CopyIfAbsent(from, to) => {
            let from = segments(from)?;
            let Some(item) = walk(root, &from, false)?.map(|i| i.clone()) else { return Ok(()) };
            let (parent, key) = parent_and_key(to)?;
            let table = walk(root, &parent, true)?.expect("created").as_table_like_mut().ok_or_else(|| format!("{to}: its parent is not a table"))?;
            if table.get(&key).is_none_or(Item::is_none) {
                let mut item = item;
                if let Item::ArrayOfTables(a) = &mut item {
                    // Written where the destination's tables are, not where the source's were.
                    for t in a.iter_mut() {
                        t.set_position(None);
                    }
                }
                table.insert(&key, item);
            }
        }
    }
    Ok(())
}

/// The text with every edit applied, in order.
pub fn edited(text: &str, edits: &[Edit]) -> Result<String, String> {
    let mut doc: DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| format!("the file cannot be edited: {}", e.message()))?;
    for e in edits {
        apply(&mut doc, e)?;
    }
    Ok(doc.to_string())
}

/// An inline table of key/value pairs, for [`Edit::Push`].
pub fn inline(pairs: &[(&str, Value)]) -> InlineTable {
    let mut t = InlineTable::new();
    for (k, v) in pairs {
        t.insert(*k, v.clone());
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "name = \"x\"\n\n[destination]\nbackend = { kind = \"hugetlbfs\", capacity = \"64M\" } # quota\n\n[[device]]\nid = \"vmem0\"\n\n[[device]]\nid = \"vmem1\"\n";

    #[test]
    fn set_keeps_the_layout_and_creates_what_is_missing() {
        let out = edited(BASE, &[Edit::Set("destination.backend.capacity".into(), "62M".into()), Edit::Set("device[1].destination.prealloc".into(), false.into()), Edit::Set("migration.mode".into(), "postcopy".into())]).unwrap();
        assert!(out.contains("backend = { kind = \"hugetlbfs\", capacity = \"62M\" } # quota"), "{out}");
        let parsed: toml::Value = toml::from_str(&out).unwrap();
        assert_eq!(parsed["device"][1]["destination"]["prealloc"].as_bool(), Some(false), "{out}");
        assert_eq!(parsed["migration"]["mode"].as_str(), Some("postcopy"), "{out}");
        assert!(parsed["device"][0].get("destination").is_none(), "{out}");
    }

    #[test]
    fn push_appends_a_table_to_a_new_or_existing_list() {
        let drain = inline(&[("at", "end".into()), ("bytes", "2M".into())]);
        let out = edited(BASE, &[Edit::Push("faults.drain".into(), drain.clone()), Edit::Push("faults.drain".into(), drain)]).unwrap();
        let parsed: toml::Value = toml::from_str(&out).unwrap();
        assert_eq!(parsed["faults"]["drain"].as_array().map(Vec::len), Some(2), "{out}");
        assert_eq!(parsed["faults"]["drain"][1]["at"].as_str(), Some("end"), "{out}");
    }

    #[test]
    fn remove_and_copy() {
        let text = "[source]\n[[source.mount]]\npath = \"/a\"\nfs = \"tmpfs\"\n\n[destination]\nx = 1\n\n[expect]\noutcome = \"completed\"\n";
        let out = edited(text, &[Edit::Remove("expect".into()), Edit::CopyIfAbsent("source.mount".into(), "destination.mount".into()), Edit::Set("destination.mount[0].size".into(), "1G".into())]).unwrap();
        let parsed: toml::Value = toml::from_str(&out).unwrap();
        assert!(parsed.get("expect").is_none(), "{out}");
        assert_eq!(parsed["destination"]["mount"][0]["size"].as_str(), Some("1G"), "{out}");
        assert!(parsed["source"]["mount"][0].get("size").is_none(), "{out}");
        assert!(edited(text, &[Edit::Set("destination.mount[3].size".into(), "1G".into())]).is_err());
    }
}
