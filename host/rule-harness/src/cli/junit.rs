//! `rule-harness test --junit FILE`: the cases as JUnit XML, which CI systems show. One
//! `testsuite` per case file, one `testcase` per case, a failed case's `failure` holding
//! what went wrong and the diff.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use quick_xml::Writer;
use quick_xml::events::{BytesCData, BytesDecl, BytesEnd, BytesStart, BytesText, Event};

use detect_sdk::testkit::cases::CaseReport;

/// Writes `reports`, cases of rule `rule`, as JUnit XML.
pub fn write(out: impl Write, rule: &str, reports: &[CaseReport]) -> std::io::Result<()> {
    let mut files: BTreeMap<&Path, Vec<&CaseReport>> = BTreeMap::new();
    for report in reports {
        files.entry(&report.file).or_default().push(report);
    }
    let mut xml = Writer::new_with_indent(out, b' ', 2);
    xml.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    let all = totals(reports.iter());
    let suites = element(
        "testsuites",
        &[("name", format!("rule-harness test: {rule}"))],
        all,
    );
    xml.write_event(Event::Start(suites))?;
    for (file, cases) in files {
        let name = file.display().to_string();
        let suite = element(
            "testsuite",
            &[("name", name.clone())],
            totals(cases.iter().copied()),
        );
        xml.write_event(Event::Start(suite))?;
        for case in cases {
            let attributes = [
                ("name", case.name.clone()),
                ("classname", format!("{rule}.{name}")),
                ("time", format!("{:.6}", case.time.as_secs_f64())),
            ];
            let testcase = element("testcase", &attributes, None);
            if case.passed() {
                xml.write_event(Event::Empty(testcase))?;
                continue;
            }
            xml.write_event(Event::Start(testcase))?;
            let first = case.failures[0]
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned();
            let failure = element(
                "failure",
                &[("message", first), ("type", "case".into())],
                None,
            );
            xml.write_event(Event::Start(failure))?;
            xml.write_event(Event::Text(BytesText::new("\n")))?;
            xml.write_event(Event::CData(BytesCData::new(case.failures.join("\n"))))?;
            xml.write_event(Event::End(BytesEnd::new("failure")))?;
            xml.write_event(Event::End(BytesEnd::new("testcase")))?;
        }
        xml.write_event(Event::End(BytesEnd::new("testsuite")))?;
    }
    xml.write_event(Event::End(BytesEnd::new("testsuites")))?;
    writeln!(xml.into_inner())
}

/// `tests`, `failures` and `time` of some cases.
fn totals<'a>(cases: impl Iterator<Item = &'a CaseReport>) -> Option<[(&'static str, String); 3]> {
    let (mut tests, mut failures, mut time) = (0, 0, 0.0);
    for case in cases {
        tests += 1;
        failures += usize::from(!case.passed());
        time += case.time.as_secs_f64();
    }
    Some([
        ("tests", tests.to_string()),
        ("failures", failures.to_string()),
        ("time", format!("{time:.6}")),
    ])
}

fn element(
    name: &'static str,
    attributes: &[(&str, String)],
    more: Option<[(&'static str, String); 3]>,
) -> BytesStart<'static> {
    let mut start = BytesStart::new(name);
    for (key, value) in attributes.iter().chain(more.iter().flatten()) {
        start.push_attribute((*key, value.as_str()));
    }
    start
}
