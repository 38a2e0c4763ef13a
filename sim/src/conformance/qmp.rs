//! A small QMP client over QEMU's Unix socket: send a command, wait for its return, skip events.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vmemsim_model::migration::source_fate::Reply;

pub struct Qmp {
    out: UnixStream,
    input: BufReader<UnixStream>,
}

impl Qmp {
    /// Connects (retrying until `timeout`, while QEMU creates the socket) and negotiates.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Qmp, String> {
        let start = Instant::now();
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if start.elapsed() < timeout => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(format!("QMP {}: {e}", path.display())),
            }
        };
        stream.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
        let mut q = Qmp { out: stream.try_clone().map_err(|e| e.to_string())?, input: BufReader::new(stream) };
        let greeting = q.read()?;
        if greeting.get("QMP").is_none() {
            return Err(format!("not a QMP greeting: {greeting}"));
        }
        q.execute("qmp_capabilities", json!({}))?;
        Ok(q)
    }

    fn read(&mut self) -> Result<Value, String> {
        let mut line = String::new();
        let n = self.input.read_line(&mut line).map_err(|e| format!("QMP read: {e}"))?;
        if n == 0 {
            return Err("QMP: QEMU closed the connection".into());
        }
        serde_json::from_str(&line).map_err(|e| format!("QMP: bad JSON '{}': {e}", line.trim()))
    }

    /// Runs a command and returns its `return` value (events in between are skipped).
    pub fn execute(&mut self, cmd: &str, args: Value) -> Result<Value, String> {
        let msg = json!({"execute": cmd, "arguments": args});
        writeln!(self.out, "{msg}").map_err(|e| format!("QMP write: {e}"))?;
        loop {
            let v = self.read()?;
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                return Err(format!("QMP {cmd}: {e}"));
            }
        }
    }

    /// Runs a command and returns QEMU's answer as the model writes it: success, or the
    /// error's `desc`; `Err` only when QMP itself failed.
    pub fn reply(&mut self, cmd: &str, args: Value) -> Result<Reply, String> {
        let msg = json!({"execute": cmd, "arguments": args});
        writeln!(self.out, "{msg}").map_err(|e| format!("QMP write: {e}"))?;
        loop {
            let v = self.read()?;
            if v.get("return").is_some() {
                return Ok(Reply::Ok);
            }
            if let Some(e) = v.get("error") {
                return Ok(Reply::Error(e.get("desc").and_then(Value::as_str).unwrap_or_default().to_string()));
            }
        }
    }
}
