//! QEMU's command line as QEMU reads it: options with their argument, `key=value` lists with
//! an implied first key and `,,` for a comma (`qemu_opts_parse`, `keyval_parse`), and the JSON
//! form libvirt writes for `-object` and `-device`.

/// One option's argument: its implied value (`-device virtio-mem-pci,...` → `virtio-mem-pci`)
/// and its properties in order, with the text as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opts {
    pub implied: Option<String>,
    pub props: Vec<(String, String)>,
    pub text: String,
}

impl Opts {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.props.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The implied value, or the property that names it (`type=`, `driver=`, `qom-type=`).
    pub fn kind(&self, key: &str) -> Option<&str> {
        self.implied.as_deref().or_else(|| self.get(key))
    }
}

/// `opt=value,opt=value`; the first element without `=` is the implied value.
pub fn parse_opts(text: &str, implied_key: &str) -> Result<Opts, String> {
    if text.trim_start().starts_with('{') {
        return parse_json(text, implied_key);
    }
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ',' {
            if chars.peek() == Some(&',') {
                chars.next();
                cur.push(',');
            } else {
                parts.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(c);
        }
    }
    parts.push(cur);
    let mut opts = Opts { implied: None, props: Vec::new(), text: text.to_string() };
    for (i, p) in parts.into_iter().enumerate() {
        match p.split_once('=') {
            Some((k, v)) => opts.props.push((k.to_string(), v.to_string())),
            None if i == 0 && !p.is_empty() => opts.implied = Some(p),
            None if p.is_empty() => return Err(format!("'{text}': an empty element")),
            // `-machine q35,usb` style flags mean on.
            None => opts.props.push((p, "on".into())),
        }
    }
    Ok(opts)
}

fn parse_json(text: &str, implied_key: &str) -> Result<Opts, String> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("'{text}': not JSON: {e}"))?;
    let map = v.as_object().ok_or_else(|| format!("'{text}': a JSON option must be an object"))?;
    let mut opts = Opts { implied: None, props: Vec::new(), text: text.to_string() };
    for (k, v) in map {
        let value = match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Bool(b) => if *b { "on".into() } else { "off".into() },
            serde_json::Value::Number(n) => n.to_string(),
            // host-nodes as a JSON list: QEMU's list form, one entry each.
            serde_json::Value::Array(a) => {
                for item in a {
                    let s = item.as_u64().map(|n| n.to_string()).or_else(|| item.as_str().map(str::to_string)).ok_or_else(|| format!("'{text}': {k} holds {item}"))?;
                    opts.props.push((k.clone(), s));
                }
                continue;
            }
            other => return Err(format!("'{text}': {k} holds {other}, not a value")),
        };
        if k == implied_key {
            opts.implied = Some(value);
        } else {
            opts.props.push((k.clone(), value));
        }
    }
    Ok(opts)
}

/// QEMU's options that take no argument (qemu-options.hx), as far as a VMM's command line
/// uses them.
const FLAGS: &[&str] = &[
    "S", "nodefaults", "no-user-config", "enable-kvm", "nographic", "no-reboot", "no-shutdown", "daemonize", "snapshot", "no-hpet", "usb",
    "full-screen", "no-acpi", "no-fd-bootchk", "win2k-hack", "no-quit", "preconfig", "only-migratable", "nodefconfig",
];

/// A command line, option by option: `(name, argument)`, the name without its dashes. The
/// program name, if first, is dropped.
pub fn options(args: &[String]) -> Result<Vec<(String, Option<String>)>, String> {
    let mut out = Vec::new();
    let mut i = 0;
    if args.first().is_some_and(|a| !a.starts_with('-')) {
        i = 1;
    }
    while i < args.len() {
        let a = &args[i];
        let Some(name) = a.strip_prefix("--").or_else(|| a.strip_prefix('-')).filter(|n| !n.is_empty()) else {
            return Err(format!("'{a}' (argument {}) is not an option: QEMU's options start with '-'", i + 1));
        };
        if FLAGS.contains(&name) {
            out.push((name.to_string(), None));
            i += 1;
        } else {
            let value = args.get(i + 1).ok_or_else(|| format!("-{name} (argument {}) needs a value", i + 1))?;
            out.push((name.to_string(), Some(value.clone())));
            i += 2;
        }
    }
    Ok(out)
}

/// A size as QEMU reads it (`qemu_strtosz`): a number with an optional suffix K, M, G, T, P, E
/// (either case) or B; `default_unit` applies without one (`-m` counts MiB).
pub fn size(text: &str, default_unit: u64) -> Result<u64, String> {
    let t = text.trim();
    let bad = || format!("'{text}' is not a size");
    if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return u64::from_str_radix(hex, 16).map_err(|_| bad());
    }
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, suffix) = t.split_at(split);
    let unit: u64 = match suffix.to_ascii_uppercase().as_str() {
        "" => default_unit,
        "B" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        "P" => 1 << 50,
        "E" => 1 << 60,
        _ => return Err(bad()),
    };
    if num.contains('.') {
        let f: f64 = num.parse().map_err(|_| bad())?;
        let v = f * unit as f64;
        if !(0.0..1.8e19).contains(&v) || v.fract() != 0.0 {
            return Err(bad());
        }
        return Ok(v as u64);
    }
    let n: u64 = num.parse().map_err(|_| bad())?;
    n.checked_mul(unit).ok_or_else(bad)
}

/// `on`/`off` (and QEMU's other spellings of a bool).
pub fn boolean(text: &str) -> Result<bool, String> {
    match text {
        "on" | "yes" | "true" | "y" => Ok(true),
        "off" | "no" | "false" | "n" => Ok(false),
        _ => Err(format!("'{text}' is not on or off")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_lists_with_an_implied_key_and_doubled_commas() {
        let o = parse_opts("memory-backend-file,id=mem0,mem-path=/a,,b,size=1G", "qom-type").unwrap();
        assert_eq!(o.implied.as_deref(), Some("memory-backend-file"));
        assert_eq!(o.get("mem-path"), Some("/a,b"));
        assert_eq!(o.get("size"), Some("1G"));
        let j = parse_opts(r#"{"qom-type":"memory-backend-file","id":"mem0","share":true,"size":1073741824,"host-nodes":[0,1]}"#, "qom-type").unwrap();
        assert_eq!(j.implied.as_deref(), Some("memory-backend-file"));
        assert_eq!(j.get("share"), Some("on"));
        assert_eq!(j.get("size"), Some("1073741824"));
        assert_eq!(j.props.iter().filter(|(k, _)| k == "host-nodes").count(), 2);
    }

    #[test]
    fn options_and_sizes_as_qemu_reads_them() {
        let args: Vec<String> = ["qemu-system-x86_64", "-nodefaults", "-m", "4096", "--machine", "q35"].iter().map(|s| s.to_string()).collect();
        let o = options(&args).unwrap();
        assert_eq!(o, vec![("nodefaults".into(), None), ("m".into(), Some("4096".into())), ("machine".into(), Some("q35".into()))]);
        assert_eq!(size("4096", 1 << 20).unwrap(), 4 << 30);
        assert_eq!(size("8100M", 1).unwrap(), 8100 << 20);
        assert_eq!(size("1.5G", 1).unwrap(), 3 << 29);
        assert_eq!(size("2g", 1).unwrap(), 2 << 30);
        assert!(size("1Q", 1).is_err());
        assert!(options(&["-m".to_string()]).unwrap_err().contains("needs a value"));
    }
}
