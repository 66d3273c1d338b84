//! Hostile documents of 10 MiB (the document size limit) are rejected with their reason, in
//! linear time: a million empty elements, one element with a million attributes, and one
//! with a million repeats of one attribute. The bound of 30 s is far above what linear parsing
//! takes, even in a loaded debug build, and far below what quadratic parsing of these sizes
//! takes (hours).

use std::time::{Duration, Instant};

use common::parse::{XmlLimits, read_metadata};

const SIZE: usize = 10 * 1024 * 1024;

fn document(open: &str, repeated: impl Fn(usize) -> String, close: &str) -> Vec<u8> {
    let mut doc = String::with_capacity(SIZE);
    doc.push_str(open);
    for i in 0.. {
        let piece = repeated(i);
        if doc.len() + piece.len() + close.len() > SIZE {
            break;
        }
        doc.push_str(&piece);
    }
    doc.push_str(close);
    doc.into_bytes()
}

fn rejected_quickly(doc: &[u8], reason: &str) {
    assert!(
        doc.len() <= SIZE && doc.len() > SIZE - 4096,
        "{} bytes",
        doc.len()
    );
    let started = Instant::now();
    let err = read_metadata(doc, XmlLimits::default()).expect_err("a hostile document is rejected");
    let took = started.elapsed();
    assert!(err.to_string().contains(reason), "{err}");
    // Not a speed target (the benchmarks hold those): a bound a quadratic reading of a million
    // elements (hours) cannot meet, loose enough for a loaded debug build.
    assert!(took < Duration::from_secs(30), "rejected in {took:?}");
}

#[test]
fn a_million_empty_elements() {
    let doc = document(
        r#"<gmd:MD_Metadata xmlns:gmd="http://www.isotc211.org/2005/gmd">"#,
        |_| "<a/>".to_string(),
        "</gmd:MD_Metadata>",
    );
    rejected_quickly(&doc, "more than 200000 elements");
}

#[test]
fn one_element_with_a_million_attributes() {
    let doc = document(
        r#"<gmd:MD_Metadata xmlns:gmd="http://www.isotc211.org/2005/gmd""#,
        |i| format!(" a{i}=\"\""),
        "/>",
    );
    rejected_quickly(&doc, "more than 256 attributes");
}

#[test]
fn one_attribute_repeated_a_million_times() {
    let doc = document(
        r#"<gmd:MD_Metadata xmlns:gmd="http://www.isotc211.org/2005/gmd""#,
        |_| " a=\"\"".to_string(),
        "/>",
    );
    rejected_quickly(&doc, "repeated");
}

#[test]
fn many_elements_each_with_many_attributes() {
    // Under the caps of one element: 255 attributes each, as many elements as fit.
    let attrs: String = (0..255).map(|i| format!(" b{i}=\"1\"")).collect();
    let doc = document(
        r#"<gmd:MD_Metadata xmlns:gmd="http://www.isotc211.org/2005/gmd">"#,
        |_| format!("<c{attrs}/>"),
        "</gmd:MD_Metadata>",
    );
    rejected_quickly(&doc, "more than 100000 attributes");
}
