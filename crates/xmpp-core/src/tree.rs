//! Elements from the lexer's events, with namespaces resolved (Namespaces
//! in XML 1.0 §6).
//!
//! Why not minidom's `TreeBuilder`: it copies the map of declarations for
//! every element it opens and allocates each prefix it looks up, which
//! made it a third of the cost of parsing a chat message. Here the
//! declarations in scope are one list (the stream's own first), searched
//! from the innermost, and an element without declarations costs none.
//! The result is the same tree (the lexer's tests compare both).

use std::collections::BTreeMap;

use minidom::Element;
use rxml::{Namespace, NcName, RawEvent};

use crate::framing::FramingError;

/// Prefix declarations: `None` is the default namespace.
pub(crate) type Declarations = Vec<(Option<String>, String)>;

#[derive(Default)]
pub(crate) struct Builder {
    /// Declarations made by the open elements, innermost last.
    scope: Declarations,
    /// Where each open element's declarations start in `scope`.
    marks: Vec<usize>,
    stack: Vec<Element>,
    /// The element whose start tag is being read.
    head: Option<(Option<NcName>, NcName)>,
    attrs: Vec<(Option<NcName>, NcName, String)>,
    /// Set when the outermost element ends.
    pub(crate) root: Option<Element>,
}

impl Builder {
    /// Frees the growable parts while no element is open (see
    /// `StreamParser::release_temporaries`).
    pub(crate) fn release_temporaries(&mut self) {
        if self.stack.is_empty() && self.head.is_none() {
            self.stack = Vec::new();
            self.attrs = Vec::new();
            self.marks = Vec::new();
            self.scope = Declarations::default();
        }
    }

    /// Open elements.
    pub(crate) fn depth(&self) -> usize {
        self.stack.len()
    }

    /// `outer` are declarations in scope around everything built (the
    /// stream element's).
    pub(crate) fn event(&mut self, ev: RawEvent, outer: &Declarations) -> Result<(), FramingError> {
        match ev {
            RawEvent::XmlDeclaration(..) => {}
            RawEvent::ElementHeadOpen(_, qname) => {
                self.head = Some(qname);
                self.marks.push(self.scope.len());
            }
            RawEvent::Attribute(_, (prefix, name), value) => match prefix {
                None if name.as_str() == "xmlns" => self.scope.push((None, value)),
                Some(p) if p.as_str() == "xmlns" => {
                    self.scope.push((Some(name.as_str().to_owned()), value))
                }
                _ => self.attrs.push((prefix, name, value)),
            },
            RawEvent::ElementHeadClose(_) => self.open(outer)?,
            RawEvent::ElementFoot(_) => {
                let el = self.stack.pop().ok_or(FramingError::NotWellFormed)?;
                if let Some(mark) = self.marks.pop() {
                    self.scope.truncate(mark);
                }
                match self.stack.last_mut() {
                    Some(parent) => {
                        parent.append_child(el);
                    }
                    None => self.root = Some(el),
                }
            }
            RawEvent::Text(_, text) => {
                if let Some(top) = self.stack.last_mut() {
                    top.append_text(text);
                }
            }
        }
        Ok(())
    }

    fn open(&mut self, outer: &Declarations) -> Result<(), FramingError> {
        let (prefix, name) = self.head.take().ok_or(FramingError::NotWellFormed)?;
        let mark = self.marks.last().copied().unwrap_or(0);
        let ns = self
            .lookup(prefix.as_ref().map(|p| p.as_str()), outer)
            .ok_or(FramingError::InvalidNamespace)?
            .to_owned();
        let mut el = Element::bare(name.as_str(), ns);
        if self.scope.len() > mark {
            let declared: BTreeMap<Option<String>, String> =
                self.scope[mark..].iter().cloned().collect();
            el.prefixes = declared.into();
        }
        let mut attrs = std::mem::take(&mut self.attrs);
        for (prefix, name, value) in attrs.drain(..) {
            let ns = match prefix {
                None => Namespace::NONE,
                Some(p) if p.as_str() == "xml" => Namespace::xml().clone(),
                Some(p) => Namespace::from(
                    self.lookup(Some(p.as_str()), outer)
                        .ok_or(FramingError::InvalidNamespace)?
                        .to_owned(),
                ),
            };
            el.attrs_mut().insert(ns, name, value);
        }
        self.attrs = attrs;
        self.stack.push(el);
        Ok(())
    }

    fn lookup<'a>(&'a self, prefix: Option<&str>, outer: &'a Declarations) -> Option<&'a str> {
        self.scope
            .iter()
            .rev()
            .chain(outer.iter().rev())
            .find(|(p, _)| p.as_deref() == prefix)
            .map(|(_, ns)| ns.as_str())
    }
}
