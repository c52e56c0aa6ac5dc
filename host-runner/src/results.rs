//! Machine-readable results of `host-runner test`: JUnit XML for CI test reports,
//! JSON for scripts (and `--rerun-failed`), and the split of a suite into shards.
//!
//! JSON schema (one object per run):
//!
//! ```text
//! { "schema": "uring-getdents.test-results/1",
//!   "summary": "37 passed, 1 failed",
//!   "seconds": 812.4,
//!   "tests": [ { "name": "getdents_matches_getdents64",
//!                "status": "pass" | "fail" | "skip" | "stopped",
//!                "seconds": 1.93,
//!                "message": "why it failed or was skipped (empty when it passed)",
//!                "output": "the test's stdout and stderr and the runner's notes",
//!                "console_tail": "last console lines when the VM failed, else null" } ] }
//! ```

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::Path;

/// The `schema` value of the JSON results.
pub const SCHEMA: &str = "uring-getdents.test-results/1";

/// How one test ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Passed.
    Pass,
    /// Failed (the test, its VM, or the runner).
    Fail,
    /// Not run: meaningless with the chosen kernel.
    Skip,
    /// Cut short by a stop signal to the suite.
    Stopped,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Skip => "skip",
            Status::Stopped => "stopped",
        }
    }
}

/// One test's result.
#[derive(Debug, Clone, PartialEq)]
pub struct TestRecord {
    /// The test's name.
    pub name: String,
    /// How it ended.
    pub status: Status,
    /// Wall time of its VM.
    pub seconds: f64,
    /// Why it failed or was skipped; empty when it passed.
    pub message: String,
    /// Its captured stdout and stderr, with the runner's notes.
    pub output: String,
    /// The console's last lines when the VM itself failed.
    pub console_tail: Option<String>,
}

/// The JSON document for a run.
pub fn to_json(records: &[TestRecord], summary: &str, seconds: f64) -> String {
    let tests: Vec<Value> = records
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "status": r.status.as_str(),
                "seconds": r.seconds,
                "message": r.message,
                "output": r.output,
                "console_tail": r.console_tail,
            })
        })
        .collect();
    let doc = json!({ "schema": SCHEMA, "summary": summary, "seconds": seconds, "tests": tests });
    // Serialising a Value built from strings and numbers cannot fail.
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// The names of the tests that did not pass (failed or stopped) in a JSON results file.
pub fn failed_in(path: &Path) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let doc: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    if doc.get("schema").and_then(Value::as_str) != Some(SCHEMA) {
        bail!(
            "{} is not a results file of this runner ({SCHEMA})",
            path.display()
        );
    }
    let tests = doc
        .get("tests")
        .and_then(Value::as_array)
        .with_context(|| format!("{}: no tests array", path.display()))?;
    Ok(tests
        .iter()
        .filter(|t| {
            matches!(
                t.get("status").and_then(Value::as_str),
                Some("fail" | "stopped")
            )
        })
        .filter_map(|t| t.get("name").and_then(Value::as_str).map(String::from))
        .collect())
}

/// One test's log file: its verdict, its output, and the console tail if the VM failed.
pub fn log_text(r: &TestRecord) -> String {
    let mut text = format!("{} {} ({:.2}s)", r.status.as_str(), r.name, r.seconds);
    if !r.message.is_empty() {
        let _ = write!(text, ": {}", r.message);
    }
    text.push_str("\n\n");
    text.push_str(&r.output);
    if let Some(tail) = &r.console_tail {
        text.push_str("\n--- console tail ---\n");
        text.push_str(tail);
        text.push('\n');
    }
    text
}

/// The JUnit XML document for a run: one `<testsuite>`, one `<testcase>` per test, with
/// `<failure>`, `<skipped>` or (for a stopped test) `<error>`, the output in
/// `<system-out>`.
pub fn to_junit(records: &[TestRecord], suite: &str, seconds: f64) -> String {
    let count = |s: Status| records.iter().filter(|r| r.status == s).count();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    // The suite's counts, the same on <testsuites> and its one <testsuite>.
    let counts = format!(
        "name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{seconds:.3}\"",
        xml_escape(suite),
        records.len(),
        count(Status::Fail),
        count(Status::Stopped),
        count(Status::Skip),
    );
    let _ = writeln!(x, "<testsuites {counts}>");
    let _ = writeln!(x, "  <testsuite {counts}>");
    for r in records {
        let _ = write!(
            x,
            "    <testcase classname=\"{0}\" name=\"{1}\" time=\"{2:.3}\">",
            xml_escape(suite),
            xml_escape(&r.name),
            r.seconds
        );
        let message = xml_escape(&r.message);
        match r.status {
            Status::Pass => {}
            Status::Fail => {
                let mut body = r.output.clone();
                if let Some(tail) = &r.console_tail {
                    body.push_str("\n--- console tail ---\n");
                    body.push_str(tail);
                }
                let _ = write!(
                    x,
                    "\n      <failure message=\"{message}\">{}</failure>",
                    xml_escape(&body)
                );
            }
            Status::Skip => {
                let _ = write!(x, "\n      <skipped message=\"{message}\"/>");
            }
            Status::Stopped => {
                let _ = write!(x, "\n      <error message=\"{message}\"/>");
            }
        }
        if !r.output.is_empty() {
            let _ = write!(
                x,
                "\n      <system-out>{}</system-out>",
                xml_escape(&r.output)
            );
        }
        let _ = writeln!(
            x,
            "{}</testcase>",
            if r.status == Status::Pass && r.output.is_empty() {
                ""
            } else {
                "\n    "
            }
        );
    }
    x.push_str("  </testsuite>\n</testsuites>\n");
    x
}

/// Text as XML 1.0 character data or attribute value: the five special characters as
/// entities, and characters XML 1.0 cannot carry at all (most control characters, which
/// test output may well contain) as `\u{..}` escapes of the text.
fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' => out.push(c),
            // A carriage return would be normalised away by any XML parser.
            '\r' => out.push_str("&#13;"),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// A `--shard K/N` selection: the 1-based shard `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// Which shard, 1..=count.
    pub index: usize,
    /// How many shards.
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("--shard {s:?}: expected K/N with 1 <= K <= N");
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (usize, usize) = (
            k.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if count == 0 || index == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl Shard {
    /// Whether the test at `position` of the sorted list of names belongs to this shard.
    /// Dealt round-robin over the names in sorted order: every machine computes the same
    /// split from the same suite, the shards' sizes differ by at most one, and their
    /// union is the suite with no test twice.
    pub fn takes(&self, position: usize) -> bool {
        position % self.count == self.index - 1
    }

    /// The names of `names` in this shard, in their original order.
    pub fn select<'a>(&self, names: &[&'a str]) -> Vec<&'a str> {
        let mut sorted: Vec<&str> = names.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mine: std::collections::HashSet<&str> = sorted
            .iter()
            .enumerate()
            .filter(|(i, _)| self.takes(*i))
            .map(|(_, n)| *n)
            .collect();
        names.iter().copied().filter(|n| mine.contains(n)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records() -> Vec<TestRecord> {
        vec![
            TestRecord {
                name: "passes".into(),
                status: Status::Pass,
                seconds: 1.5,
                message: String::new(),
                output: String::new(),
                console_tail: None,
            },
            TestRecord {
                name: "fails <&> \"quoted\"".into(),
                status: Status::Fail,
                seconds: 2.25,
                message: "CRASH: guest kernel panic".into(),
                output: "line one\n\u{1b}[31mred\u{1b}[0m\r\nend ]]> \u{0}".into(),
                console_tail: Some("Kernel panic - not syncing".into()),
            },
            TestRecord {
                name: "skipped".into(),
                status: Status::Skip,
                seconds: 0.0,
                message: "needs the stock kernel".into(),
                output: String::new(),
                console_tail: None,
            },
            TestRecord {
                name: "stopped".into(),
                status: Status::Stopped,
                seconds: 0.4,
                message: "signal 2".into(),
                output: "partial".into(),
                console_tail: None,
            },
        ]
    }

    /// A venv with junitparser from PyPI, made once in the cache's tools.
    fn junitparser() -> Option<std::path::PathBuf> {
        let venv = crate::cache::cache_dir("tools")
            .ok()?
            .join("junitparser-3.2.0");
        let python = venv.join("bin/python");
        let ready = |p: &Path| {
            std::process::Command::new(p)
                .args(["-c", "import junitparser"])
                .status()
                .is_ok_and(|s| s.success())
        };
        if ready(&python) {
            return Some(python);
        }
        let made = std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success())
            && std::process::Command::new(venv.join("bin/pip"))
                .args(["install", "-q", "junitparser==3.2.0"])
                .status()
                .is_ok_and(|s| s.success());
        (made && ready(&python)).then_some(python)
    }

    #[test]
    fn junit_is_read_back_by_junitparser() {
        let xml = to_junit(&records(), "guest-tests", 4.15);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("junit.xml");
        std::fs::write(&file, &xml).unwrap();
        let Some(python) = junitparser() else {
            // CI reaches PyPI; a machine without it still gets the parse check below.
            eprintln!("skipped: junitparser could not be installed from PyPI");
            return;
        };
        let script = r#"
import json, sys
from junitparser import JUnitXml, Failure, Skipped, Error
xml = JUnitXml.fromfile(sys.argv[1])
cases = []
for suite in xml:
    for case in suite:
        kinds = [type(r).__name__ for r in case.result]
        msgs = [r.message for r in case.result]
        texts = [r.text for r in case.result]
        cases.append({"name": case.name, "time": case.time, "kinds": kinds,
                      "messages": msgs, "texts": texts, "out": case.system_out})
print(json.dumps({"tests": xml.tests, "failures": xml.failures, "errors": xml.errors,
                  "skipped": xml.skipped, "cases": cases}))
"#;
        let out = std::process::Command::new(python)
            .args(["-c", script])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(got["tests"], 4);
        assert_eq!(got["failures"], 1);
        assert_eq!(got["errors"], 1);
        assert_eq!(got["skipped"], 1);
        let cases = got["cases"].as_array().unwrap();
        assert_eq!(cases[0]["name"], "passes");
        assert_eq!(cases[0]["kinds"], json!([]));
        assert_eq!(cases[1]["name"], "fails <&> \"quoted\"");
        assert_eq!(cases[1]["time"], 2.25);
        assert_eq!(cases[1]["kinds"], json!(["Failure"]));
        assert_eq!(cases[1]["messages"], json!(["CRASH: guest kernel panic"]));
        let text = cases[1]["texts"][0].as_str().unwrap();
        assert!(text.contains("\\u{1b}[31mred"), "{text}");
        assert!(text.contains("\r\nend ]]> \\u{0}"), "{text}");
        assert!(text.ends_with("--- console tail ---\nKernel panic - not syncing"));
        assert_eq!(cases[2]["kinds"], json!(["Skipped"]));
        assert_eq!(cases[2]["messages"], json!(["needs the stock kernel"]));
        assert_eq!(cases[3]["kinds"], json!(["Error"]));
        assert_eq!(cases[3]["out"], "partial");
    }

    #[test]
    fn a_log_file_has_verdict_output_and_console_tail() {
        let log = log_text(&records()[1]);
        assert!(log.starts_with(
            "fail fails <&> \"quoted\" (2.25s): CRASH: guest kernel panic\n\nline one\n"
        ));
        assert!(log.ends_with("--- console tail ---\nKernel panic - not syncing\n"));
        assert_eq!(log_text(&records()[0]), "pass passes (1.50s)\n\n");
    }

    #[test]
    fn json_round_trips_and_names_what_to_rerun() {
        let text = to_json(&records(), "1 passed, 1 failed, 1 skipped", 4.15);
        let doc: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["schema"], SCHEMA);
        assert_eq!(doc["tests"][1]["status"], "fail");
        assert_eq!(
            doc["tests"][1]["console_tail"],
            "Kernel panic - not syncing"
        );
        assert_eq!(doc["tests"][0]["console_tail"], Value::Null);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("r.json");
        std::fs::write(&file, &text).unwrap();
        assert_eq!(
            failed_in(&file).unwrap(),
            vec!["fails <&> \"quoted\"".to_string(), "stopped".to_string()]
        );
        std::fs::write(&file, "{\"tests\": []}").unwrap();
        assert!(failed_in(&file).is_err());
    }

    #[test]
    fn shards_partition_the_suite_the_same_way_everywhere() {
        let names = ["e", "a", "d", "b", "c", "g", "f"];
        for n in 1..=8 {
            let mut union = Vec::new();
            let mut sizes = Vec::new();
            for k in 1..=n {
                let shard: Shard = format!("{k}/{n}").parse().unwrap();
                let mine = shard.select(&names);
                // The split does not depend on the order the names came in.
                let mut reversed: Vec<&str> = names.to_vec();
                reversed.reverse();
                let mut again = shard.select(&reversed);
                again.reverse();
                assert_eq!(mine, again);
                sizes.push(mine.len());
                union.extend(mine);
            }
            union.sort_unstable();
            let mut all = names.to_vec();
            all.sort_unstable();
            assert_eq!(union, all, "{n} shards");
            assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
        }
        for bad in ["0/3", "4/3", "1/0", "x/2", "2", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }
}
