//! Taking a record out of a protocol's answer (CSW GetRecordById, OAI-PMH GetRecord) as a
//! document of its own: its bytes as served, under the answer's XML declaration, with the
//! namespace declarations it inherited from the elements around it written onto its root
//! (without them its prefixes would be unbound).

use bytes::Bytes;
use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

/// Why an answer held no record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unwrap {
    /// The root element is not the answer expected (an exception report, an HTML page).
    WrongRoot(String),
    /// The answer is the expected one, with no record in it.
    Empty,
    Malformed(String),
}

/// A namespace declaration as written: its attribute name (`xmlns`, `xmlns:gmd`) and raw value.
type Declaration = (Vec<u8>, Vec<u8>);

/// The first element inside the element that `path` names (local names from the root down;
/// other elements on the way are skipped).
pub fn inner_record(body: &[u8], path: &[&str]) -> Result<Bytes, Unwrap> {
    let malformed = |e: quick_xml::Error| Unwrap::Malformed(format!("malformed XML: {e}"));
    let mut reader = Reader::from_reader(body);
    let mut declaration: &[u8] = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>";
    let mut inherited: Vec<Declaration> = Vec::new();
    let mut depth = 0usize;
    loop {
        let before = reader.buffer_position() as usize;
        let event = reader.read_event().map_err(malformed)?;
        match event {
            Event::Decl(_) => declaration = &body[before..reader.buffer_position() as usize],
            Event::Start(e) if depth < path.len() => {
                if e.local_name().as_ref() == path[depth].as_bytes() {
                    inherited.extend(namespace_declarations(&e)?);
                    depth += 1;
                } else if depth == 0 {
                    return Err(Unwrap::WrongRoot(name_of(&e)));
                } else {
                    reader.read_to_end(e.name()).map_err(malformed)?;
                }
            }
            Event::Empty(e) if depth < path.len() => {
                if depth == 0 && e.local_name().as_ref() != path[0].as_bytes() {
                    return Err(Unwrap::WrongRoot(name_of(&e)));
                }
                if e.local_name().as_ref() == path[depth].as_bytes() {
                    return Err(Unwrap::Empty);
                }
            }
            Event::Start(e) => {
                let own = namespace_declarations(&e)?;
                let name_end = before + 1 + e.name().as_ref().len();
                let tag_end = reader.buffer_position() as usize;
                reader.read_to_end(e.name()).map_err(malformed)?;
                let end = reader.buffer_position() as usize;
                let tag = &body[name_end..tag_end];
                let rest = &body[tag_end..end];
                let open = &body[before..name_end];
                return Ok(assemble(declaration, open, &inherited, &own, tag, rest));
            }
            Event::Empty(e) => {
                let own = namespace_declarations(&e)?;
                let name_end = before + 1 + e.name().as_ref().len();
                let end = reader.buffer_position() as usize;
                let open = &body[before..name_end];
                let tag = &body[name_end..end];
                return Ok(assemble(declaration, open, &inherited, &own, tag, b""));
            }
            Event::End(_) | Event::Eof => return Err(Unwrap::Empty),
            _ => {}
        }
    }
}

fn name_of(e: &BytesStart) -> String {
    String::from_utf8_lossy(e.local_name().as_ref()).into_owned()
}

fn namespace_declarations(e: &BytesStart) -> Result<Vec<Declaration>, Unwrap> {
    let mut out = Vec::new();
    for attr in e.attributes() {
        let attr = attr.map_err(|err| Unwrap::Malformed(format!("malformed XML: {err}")))?;
        let key = attr.key.as_ref();
        if key == b"xmlns" || key.starts_with(b"xmlns:") {
            out.push((key.to_vec(), attr.value.to_vec()));
        }
    }
    Ok(out)
}

/// The record: declaration, `<name`, the inherited declarations it does not make itself (the
/// nearest ancestor's when several declare a prefix), the rest of its tag and its content.
fn assemble(
    declaration: &[u8],
    open: &[u8],
    inherited: &[Declaration],
    own: &[Declaration],
    tag: &[u8],
    rest: &[u8],
) -> Bytes {
    let mut out = Vec::with_capacity(declaration.len() + open.len() + rest.len() + 512);
    out.extend_from_slice(declaration);
    out.push(b'\n');
    out.extend_from_slice(open);
    let mut written: Vec<&[u8]> = own.iter().map(|(k, _)| k.as_slice()).collect();
    for (key, value) in inherited.iter().rev() {
        if written.contains(&key.as_slice()) {
            continue;
        }
        written.push(key);
        let quote = if value.contains(&b'"') { b'\'' } else { b'"' };
        out.push(b' ');
        out.extend_from_slice(key);
        out.push(b'=');
        out.push(quote);
        out.extend_from_slice(value);
        out.push(quote);
    }
    out.extend_from_slice(tag);
    out.extend_from_slice(rest);
    out.push(b'\n');
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nearest_declaration_of_a_prefix_wins_and_other_elements_are_skipped() {
        let body = br#"<?xml version="1.0"?><a:R xmlns:a="urn:a" xmlns:x="urn:outer"><a:skip><a:metadata/></a:skip><a:metadata xmlns:x="urn:inner"><x:rec>1</x:rec></a:metadata></a:R>"#;
        let record = inner_record(body, &["R", "metadata"]).expect("a record");
        let text = std::str::from_utf8(&record).unwrap();
        assert_eq!(
            text,
            "<?xml version=\"1.0\"?>\n<x:rec xmlns:x=\"urn:inner\" xmlns:a=\"urn:a\">1</x:rec>\n"
        );
    }

    #[test]
    fn wrong_roots_and_empty_answers_say_so() {
        assert_eq!(
            inner_record(b"<html><body/></html>", &["R"]),
            Err(Unwrap::WrongRoot("html".into()))
        );
        assert_eq!(inner_record(b"<R/>", &["R"]), Err(Unwrap::Empty));
        assert_eq!(
            inner_record(b"<R> <!-- none --> </R>", &["R"]),
            Err(Unwrap::Empty)
        );
        assert_eq!(
            inner_record(
                b"<R><error code='idDoesNotExist'/></R>",
                &["R", "GetRecord"]
            ),
            Err(Unwrap::Empty)
        );
        assert!(matches!(
            inner_record(b"<R><a></R>", &["R"]),
            Err(Unwrap::Malformed(_))
        ));
    }
}
