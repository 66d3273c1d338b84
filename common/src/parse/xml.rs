//! Reading untrusted XML safely into a small element tree.
//!
//! # Design
//! quick-xml never resolves external entities, but it would pass a DTD through; we refuse any
//! document that declares entities (XXE, billion laughs), cap its size and depth, and decode
//! it ourselves (BOM, declared encoding via encoding_rs) so that a declared UTF-8 document
//! whose bytes are not UTF-8 is refused instead of guessed at. The tree keeps namespace URIs,
//! so readers match `gmd`/`mdb`/`dc` by namespace, never by prefix.

use std::sync::Arc;

use encoding_rs::Encoding;
use quick_xml::NsReader;
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;

/// Why a document could not be read; the text is the rejection reason users see.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct XmlError(pub String);

fn fail<T>(message: impl Into<String>) -> Result<T, XmlError> {
    Err(XmlError(message.into()))
}

/// Limits on what we agree to read. The counts bound the tree's memory and the work of a
/// hostile document (a million empty elements, an element with a million attributes) to what
/// real metadata needs many times over.
#[derive(Debug, Clone, Copy)]
pub struct XmlLimits {
    pub max_bytes: usize,
    pub max_depth: usize,
    /// Elements in the whole document.
    pub max_elements: usize,
    /// Attributes of one element, and of the whole document.
    pub max_attributes: usize,
    pub max_total_attributes: usize,
}

impl Default for XmlLimits {
    fn default() -> Self {
        XmlLimits {
            max_bytes: 10 * 1024 * 1024,
            max_depth: 256,
            max_elements: 200_000,
            max_attributes: 256,
            max_total_attributes: 100_000,
        }
    }
}

/// An element: namespace URI, local name, attributes by local name, children and own text.
/// The namespace is shared by every element of a document that uses it (a record names a
/// few namespaces over hundreds of elements).
#[derive(Debug, Clone, Default)]
pub struct Element {
    pub ns: Namespace,
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
    pub text: String,
}

impl Element {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Direct children with this local name (`*` for any).
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children
            .iter()
            .filter(move |c| name == "*" || c.name == name)
    }

    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every element reached by following `path` of local names (`*` matches any).
    pub fn select<'a>(&'a self, path: &[&str]) -> Vec<&'a Element> {
        let mut current = vec![self];
        for step in path {
            let mut next = Vec::new();
            for e in current {
                next.extend(
                    e.children
                        .iter()
                        .filter(|c| *step == "*" || c.name == *step),
                );
            }
            current = next;
        }
        current
    }

    /// Every descendant (not self) with this local name, in document order.
    pub fn descendants<'a>(&'a self, name: &str) -> Vec<&'a Element> {
        let mut out = Vec::new();
        let mut stack: Vec<&Element> = self.children.iter().rev().collect();
        while let Some(e) = stack.pop() {
            if e.name == name {
                out.push(e);
            }
            stack.extend(e.children.iter().rev());
        }
        out
    }

    /// The element's text with that of all descendants, trimmed.
    pub fn all_text(&self) -> String {
        let mut out = String::new();
        let mut stack = vec![self];
        while let Some(e) = stack.pop() {
            out.push_str(&e.text);
            stack.extend(e.children.iter().rev());
        }
        out.trim().to_string()
    }
}

/// Decodes the bytes to UTF-8 text by BOM, then by the declared encoding.
pub fn decode(bytes: &[u8]) -> Result<String, XmlError> {
    if let Some((encoding, bom_len)) = Encoding::for_bom(bytes) {
        let (text, had_errors) = encoding.decode_without_bom_handling(&bytes[bom_len..]);
        if had_errors {
            return fail(format!("bytes are not valid {}", encoding.name()));
        }
        return Ok(strip_declared_encoding(&text));
    }
    let head = &bytes[..bytes.len().min(256)];
    let head = String::from_utf8_lossy(head);
    let declared = head
        .strip_prefix("<?xml")
        .and_then(|rest| rest.split("?>").next())
        .and_then(|decl| {
            let i = decl.find("encoding")?;
            let value = decl[i + 8..].trim_start().strip_prefix('=')?.trim_start();
            let quote = value.chars().next()?;
            value[1..].split(quote).next().map(str::to_string)
        });
    match declared {
        Some(label)
            if !label.eq_ignore_ascii_case("utf-8") && !label.eq_ignore_ascii_case("utf8") =>
        {
            let Some(encoding) = Encoding::for_label(label.as_bytes()) else {
                return fail(format!("unknown declared encoding {label:?}"));
            };
            let (text, had_errors) = encoding.decode_without_bom_handling(bytes);
            if had_errors {
                return fail(format!("bytes are not valid {label}"));
            }
            Ok(strip_declared_encoding(&text))
        }
        _ => match std::str::from_utf8(bytes) {
            Ok(text) => Ok(text.to_string()),
            Err(e) => fail(format!(
                "declared or assumed UTF-8, but byte {} is not UTF-8",
                e.valid_up_to()
            )),
        },
    }
}

/// Once decoded, the declaration's encoding no longer describes the text.
fn strip_declared_encoding(text: &str) -> String {
    if text.starts_with("<?xml")
        && let Some(end) = text.find("?>")
    {
        return format!("<?xml version=\"1.0\"?>{}", &text[end + 2..]);
    }
    text.to_string()
}

/// A namespace URI (empty: none), shared by the elements of a document that use it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Namespace(Arc<str>);

impl Namespace {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl PartialEq<&str> for Namespace {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl std::fmt::Display for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Attributes an element may have before its duplicate check moves to a set.
const FEW_ATTRIBUTES: usize = 16;

/// The namespaces a document has named so far, each kept once.
#[derive(Default)]
struct Namespaces(Vec<Namespace>);

impl Namespaces {
    fn shared(&mut self, uri: &[u8]) -> Namespace {
        if let Some(known) = self.0.iter().find(|known| known.0.as_bytes() == uri) {
            return known.clone();
        }
        let new = Namespace(Arc::from(text_of(uri)));
        // A hostile document may name a new namespace on every element: past a few, each
        // element keeps its own rather than the search growing with them.
        if self.0.len() < 64 {
            self.0.push(new.clone());
        }
        new
    }
}

/// A name or namespace from the decoded text (so valid UTF-8; lossy only in case).
fn text_of(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// Reads `bytes` into an element tree, refusing what is unsafe or unreadable.
pub fn parse(bytes: &[u8], limits: XmlLimits) -> Result<Element, XmlError> {
    if bytes.len() > limits.max_bytes {
        return fail(format!(
            "document is {} bytes, over the limit of {} bytes",
            bytes.len(),
            limits.max_bytes
        ));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return fail("empty document");
    }
    let text = decode(bytes)?;
    let mut reader = NsReader::from_str(&text);
    reader.config_mut().trim_text(false);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let namespaces = std::cell::RefCell::new(Namespaces::default());
    let mut elements = 0usize;
    let total_attributes = std::cell::Cell::new(0usize);
    loop {
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|e| XmlError(format!("malformed XML: {e}")))?;
        let open =
            |ns: ResolveResult, e: &quick_xml::events::BytesStart| -> Result<Element, XmlError> {
                let ns = match ns {
                    ResolveResult::Bound(n) => namespaces.borrow_mut().shared(n.as_ref()),
                    _ => Namespace::default(),
                };
                let name = text_of(e.local_name().as_ref());
                // quick-xml's own duplicate check compares each attribute with every earlier
                // one (quadratic): it is off; the attributes so far are compared while they
                // are few, and a set takes over past that, so the check stays linear.
                let mut attrs: Vec<(String, String)> = Vec::new();
                let mut keys: Vec<&[u8]> = Vec::new();
                let mut seen = std::collections::HashSet::new();
                for a in e.attributes().with_checks(false) {
                    let a = a.map_err(|e| XmlError(format!("malformed attribute: {e}")))?;
                    total_attributes.set(total_attributes.get() + 1);
                    if total_attributes.get() > limits.max_total_attributes {
                        return fail(format!(
                            "more than {} attributes",
                            limits.max_total_attributes
                        ));
                    }
                    if attrs.len() >= limits.max_attributes {
                        return fail(format!(
                            "an element has more than {} attributes",
                            limits.max_attributes
                        ));
                    }
                    let key: &[u8] = a.key.into_inner();
                    let repeated = if keys.len() < FEW_ATTRIBUTES {
                        let repeated = keys.contains(&key);
                        keys.push(key);
                        repeated
                    } else {
                        if seen.is_empty() {
                            seen.extend(keys.iter().copied());
                        }
                        !seen.insert(key)
                    };
                    if repeated {
                        return fail(format!(
                            "malformed attribute: {} repeated",
                            String::from_utf8_lossy(a.key.as_ref())
                        ));
                    }
                    let value = a
                        .unescape_value()
                        .map_err(|e| XmlError(format!("malformed attribute value: {e}")))?;
                    attrs.push((text_of(a.key.local_name().as_ref()), value.into_owned()));
                }
                Ok(Element {
                    ns,
                    name,
                    attrs,
                    ..Default::default()
                })
            };
        match event {
            Event::DocType(d) => {
                let dtd = String::from_utf8_lossy(d.as_ref()).to_string();
                if dtd.contains("<!ENTITY") {
                    return fail(
                        "the document declares DTD entities, which are refused (XXE and entity expansion)",
                    );
                }
            }
            Event::Start(e) => {
                elements += 1;
                if elements > limits.max_elements {
                    return fail(format!("more than {} elements", limits.max_elements));
                }
                if root.is_some() {
                    return fail("content after the root element");
                }
                if stack.len() >= limits.max_depth {
                    return fail(format!("elements nested deeper than {}", limits.max_depth));
                }
                stack.push(open(ns, &e)?);
            }
            Event::Empty(e) => {
                elements += 1;
                if elements > limits.max_elements {
                    return fail(format!("more than {} elements", limits.max_elements));
                }
                let element = open(ns, &e)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None if root.is_none() => root = Some(element),
                    None => return fail("content after the root element"),
                }
            }
            Event::End(_) => {
                let element = stack
                    .pop()
                    .ok_or_else(|| XmlError("unbalanced end tag".into()))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => root = Some(element),
                }
            }
            Event::Text(t) => {
                let text = t
                    .decode()
                    .map_err(|e| XmlError(format!("undecodable text: {e}")))?;
                if let Some(current) = stack.last_mut() {
                    // References come as `GeneralRef` events, so this text has none left.
                    current.text.push_str(&text);
                } else if !text.trim().is_empty() {
                    return fail("text outside the root element");
                }
            }
            Event::GeneralRef(r) => {
                let name = r
                    .decode()
                    .map_err(|e| XmlError(format!("undecodable reference: {e}")))?;
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    _ => match quick_xml::escape::resolve_xml_entity(&name) {
                        Some(s) => s.to_string(),
                        None => {
                            return fail(format!(
                                "unresolvable entity &{name}; (entities are not expanded)"
                            ));
                        }
                    },
                };
                if let Some(current) = stack.last_mut() {
                    current.text.push_str(&resolved);
                }
            }
            Event::CData(c) => {
                if let Some(current) = stack.last_mut() {
                    current.text.push_str(&String::from_utf8_lossy(&c));
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return fail("document ends before its elements close (truncated)");
    }
    root.ok_or_else(|| XmlError("no root element".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(xml: &[u8]) -> Result<Element, XmlError> {
        parse(xml, XmlLimits::default())
    }

    #[test]
    fn namespaces_resolve_by_uri_not_prefix() {
        let doc = read(br#"<a:r xmlns:a="urn:x"><a:t>one &amp; two</a:t><b xmlns="urn:y"/></a:r>"#)
            .unwrap();
        assert_eq!(doc.ns, "urn:x");
        assert_eq!(doc.child("t").unwrap().text, "one & two");
        assert_eq!(doc.child("b").unwrap().ns, "urn:y");
    }

    #[test]
    fn entity_declarations_are_refused() {
        let xml = br#"<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x "y">]><r>&x;</r>"#;
        assert!(read(xml).unwrap_err().0.contains("entities"));
        let undeclared = br#"<r>&lol9;</r>"#;
        assert!(read(undeclared).is_err());
    }

    #[test]
    fn depth_size_truncation_and_empty_are_refused() {
        let deep = format!("{}{}", "<a>".repeat(300), "</a>".repeat(300));
        assert!(read(deep.as_bytes()).unwrap_err().0.contains("deeper"));
        let small = XmlLimits {
            max_bytes: 10,
            max_depth: 10,
            ..XmlLimits::default()
        };
        assert!(
            parse(b"<r>0123456789</r>", small)
                .unwrap_err()
                .0
                .contains("over the limit")
        );
        assert!(read(b"<r><a>text</a>").unwrap_err().0.contains("truncated"));
        assert!(read(b"  \n").unwrap_err().0.contains("empty"));
    }

    #[test]
    fn encodings_are_decoded_or_refused() {
        let latin1 = b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><r>caf\xe9</r>";
        assert_eq!(read(latin1).unwrap().text, "café");
        let lying = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><r>caf\xe9</r>";
        assert!(read(lying).unwrap_err().0.contains("not UTF-8"));
        let mut utf16 = vec![0xFF, 0xFE];
        for unit in "<?xml version=\"1.0\" encoding=\"UTF-16\"?><r>é</r>".encode_utf16() {
            utf16.extend_from_slice(&unit.to_le_bytes());
        }
        assert_eq!(read(&utf16).unwrap().text, "é");
        let bom = b"\xEF\xBB\xBF<?xml version=\"1.0\" encoding=\"UTF-8\"?><r>x</r>";
        assert_eq!(read(bom).unwrap().text, "x");
    }
}
