//! JUnit XML, as CI dashboards read it (Jenkins, GitLab, GitHub test reporters): one
//! `<testsuites>` holding `<testsuite>`s of `<testcase>`s, a case failing with `<failure>`
//! (the check found a difference) or `<error>` (it could not run: the file is wrong).

use serde::Serialize;

/// One test case.
#[derive(Clone, Debug, Serialize)]
pub struct Case {
    #[serde(rename = "@name")]
    pub name: String,
    #[serde(rename = "@classname")]
    pub classname: String,
    /// Seconds.
    #[serde(rename = "@time")]
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<Problem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Problem>,
    #[serde(rename = "system-out", skip_serializing_if = "Option::is_none")]
    pub system_out: Option<String>,
}

/// A `<failure>` or `<error>`: a one-line message and the whole text.
#[derive(Clone, Debug, Serialize)]
pub struct Problem {
    #[serde(rename = "@message")]
    pub message: String,
    #[serde(rename = "@type")]
    pub kind: String,
    #[serde(rename = "$text")]
    pub text: String,
}

impl Case {
    pub fn new(classname: &str, name: &str, seconds: f64) -> Case {
        Case { name: name.to_string(), classname: classname.to_string(), time: format!("{seconds:.3}"), failure: None, error: None, system_out: None }
    }
}

#[derive(Clone, Debug, Serialize)]
struct Suite {
    #[serde(rename = "@name")]
    name: String,
    #[serde(rename = "@tests")]
    tests: usize,
    #[serde(rename = "@failures")]
    failures: usize,
    #[serde(rename = "@errors")]
    errors: usize,
    #[serde(rename = "@skipped")]
    skipped: usize,
    #[serde(rename = "@time")]
    time: String,
    testcase: Vec<Case>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename = "testsuites")]
struct Suites {
    #[serde(rename = "@name")]
    name: String,
    #[serde(rename = "@tests")]
    tests: usize,
    #[serde(rename = "@failures")]
    failures: usize,
    #[serde(rename = "@errors")]
    errors: usize,
    #[serde(rename = "@time")]
    time: String,
    testsuite: Vec<Suite>,
}

/// The XML of one suite of cases, inside a `<testsuites>` of the same name.
pub fn document(name: &str, cases: Vec<Case>) -> String {
    let failures = cases.iter().filter(|c| c.failure.is_some()).count();
    let errors = cases.iter().filter(|c| c.error.is_some()).count();
    let seconds: f64 = cases.iter().map(|c| c.time.parse::<f64>().unwrap_or(0.0)).sum();
    let time = format!("{seconds:.3}");
    let tests = cases.len();
    let suite = Suite { name: name.to_string(), tests, failures, errors, skipped: 0, time: time.clone(), testcase: cases };
    let doc = Suites { name: name.to_string(), tests, failures, errors, time, testsuite: vec![suite] };
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let mut ser = quick_xml::se::Serializer::new(&mut xml);
    ser.indent(' ', 2);
    doc.serialize(ser).expect("a JUnit document holds only strings and numbers");
    xml.push('\n');
    xml
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_failures_and_errors_and_escapes_text() {
        let mut bad = Case::new("replay", "a <b> & \"c\"", 0.5);
        bad.failure = Some(Problem { message: "outcome: expected failed, got crashed".into(), kind: "expectation".into(), text: "x < y".into() });
        let mut broken = Case::new("replay", "broken.toml", 0.25);
        broken.error = Some(Problem { message: "line 3".into(), kind: "input".into(), text: String::new() });
        let xml = document("vmemsim replay", vec![Case::new("replay", "ok.toml", 1.0), bad, broken]);
        assert!(xml.contains(r#"<testsuites name="vmemsim replay" tests="3" failures="1" errors="1" time="1.750">"#), "{xml}");
        assert!(xml.contains("a &lt;b&gt; &amp; &quot;c&quot;"), "{xml}");
        assert!(xml.contains(">x &lt; y</failure>"), "{xml}");
    }
}
