//! Writing XML answers: a string with open/close/leaf, every text and attribute escaped.

use quick_xml::escape::escape;

pub struct XmlOut(String);

impl XmlOut {
    pub fn new() -> XmlOut {
        XmlOut(String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"))
    }

    /// Without the declaration: a part of a document.
    pub fn fragment() -> XmlOut {
        XmlOut(String::new())
    }

    fn start(&mut self, tag: &str, attrs: &[(&str, &str)]) {
        self.0.push('<');
        self.0.push_str(tag);
        for (name, value) in attrs {
            self.0.push(' ');
            self.0.push_str(name);
            self.0.push_str("=\"");
            self.0.push_str(&escape(*value));
            self.0.push('"');
        }
    }

    pub fn open(&mut self, tag: &str, attrs: &[(&str, &str)]) -> &mut Self {
        self.start(tag, attrs);
        self.0.push('>');
        self
    }

    pub fn close(&mut self, tag: &str) -> &mut Self {
        self.0.push_str("</");
        self.0.push_str(tag);
        self.0.push('>');
        self
    }

    pub fn empty(&mut self, tag: &str, attrs: &[(&str, &str)]) -> &mut Self {
        self.start(tag, attrs);
        self.0.push_str("/>");
        self
    }

    /// `<tag attrs>text</tag>`.
    pub fn leaf(&mut self, tag: &str, attrs: &[(&str, &str)], text: &str) -> &mut Self {
        self.start(tag, attrs);
        self.0.push('>');
        self.0.push_str(&escape(text));
        self.close(tag)
    }

    /// A fragment that is already XML (an original document's root element).
    pub fn raw(&mut self, xml: &str) -> &mut Self {
        self.0.push_str(xml);
        self
    }

    pub fn finish(self) -> String {
        self.0
    }
}
