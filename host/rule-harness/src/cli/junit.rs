//! `rule-harness test --junit FILE`: the cases as JUnit XML, which CI systems show. One
//! `testsuite` per case file, one `testcase` per case, a failed case's `failure` holding
//! what went wrong and the diff.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use quick_xml::Writer;
use quick_xml::escape::partial_escape;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};

use detect_sdk::testkit::cases::CaseReport;

/// Writes `reports`, cases of rule `rule`, as JUnit XML, and flushes `out`.
pub fn write(out: impl Write, rule: &str, reports: &[CaseReport]) -> std::io::Result<()> {
    let mut files: BTreeMap<&Path, Vec<&CaseReport>> = BTreeMap::new();
    for report in reports {
        files.entry(&report.file).or_default().push(report);
    }
    let mut xml = Writer::new_with_indent(out, b' ', 2);
    xml.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    let name = ("name", format!("rule-harness test: {rule}"));
    xml.write_event(Event::Start(element(
        "testsuites",
        [name].into_iter().chain(totals(reports.iter())),
    )))?;
    for (file, cases) in files {
        let name = ("name", file.display().to_string());
        let suite = [name].into_iter().chain(totals(cases.iter().copied()));
        xml.write_event(Event::Start(element("testsuite", suite)))?;
        // `rule.file`: reporters that split a class name at its last dot show the rule
        // as the package and the case file as the class.
        let stem = file.file_name().map(|n| n.to_string_lossy());
        let stem = stem
            .as_deref()
            .unwrap_or_default()
            .trim_end_matches(".case.json");
        let classname = format!("{rule}.{}", stem.replace('.', "_"));
        for case in cases {
            write_case(&mut xml, case, &classname)?;
        }
        xml.write_event(Event::End(BytesEnd::new("testsuite")))?;
    }
    xml.write_event(Event::End(BytesEnd::new("testsuites")))?;
    let mut out = xml.into_inner();
    writeln!(out)?;
    out.flush()
}

/// A `testcase`, with a `failure` holding what went wrong when the case failed.
fn write_case<W: Write>(
    xml: &mut Writer<W>,
    case: &CaseReport,
    classname: &str,
) -> std::io::Result<()> {
    let attributes = [
        ("name", case.name.clone()),
        ("classname", classname.to_owned()),
        ("time", format!("{:.6}", case.time.as_secs_f64())),
    ];
    let testcase = element("testcase", attributes);
    if case.passed() {
        return xml.write_event(Event::Empty(testcase));
    }
    xml.write_event(Event::Start(testcase))?;
    let first = case.failures[0].lines().next().unwrap_or_default();
    let failure = element(
        "failure",
        [("message", first.to_owned()), ("type", "case".into())],
    );
    xml.write_event(Event::Start(failure))?;
    let text = format!("\n{}\n", case.failures.join("\n"));
    // Quotes as they are: a diff of JSON is full of them.
    let text = partial_escape(xml_chars(&text));
    xml.write_event(Event::Text(BytesText::from_escaped(text)))?;
    xml.write_event(Event::End(BytesEnd::new("failure")))?;
    xml.write_event(Event::End(BytesEnd::new("testcase")))
}

/// `tests`, `failures` and `time` of some cases.
fn totals<'a>(cases: impl Iterator<Item = &'a CaseReport>) -> [(&'static str, String); 3] {
    let (mut tests, mut failures, mut time) = (0, 0, 0.0);
    for case in cases {
        tests += 1;
        failures += usize::from(!case.passed());
        time += case.time.as_secs_f64();
    }
    [
        ("tests", tests.to_string()),
        ("failures", failures.to_string()),
        ("time", format!("{time:.6}")),
    ]
}

/// A start tag; quick-xml escapes the markup characters of the values.
fn element(
    name: &'static str,
    attributes: impl IntoIterator<Item = (&'static str, String)>,
) -> BytesStart<'static> {
    let mut start = BytesStart::new(name);
    for (key, value) in attributes {
        start.push_attribute((key, xml_chars(&value).as_ref()));
    }
    start
}

/// `text` with each character XML 1.0 does not allow (most control characters, U+FFFE,
/// U+FFFF), which a diff of alerts may hold, written as `\u{..}`: a parser refuses
/// the whole file for one of them.
fn xml_chars(text: &str) -> Cow<'_, str> {
    let allowed = |c: char| matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..);
    if text.chars().all(allowed) {
        return Cow::Borrowed(text);
    }
    let escaped = text.chars().map(|c| match allowed(c) {
        true => c.to_string(),
        false => c.escape_unicode().to_string(),
    });
    Cow::Owned(escaped.collect())
}
