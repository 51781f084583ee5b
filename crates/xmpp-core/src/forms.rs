//! XEP-0004 data forms: building fields and reading submitted values.

use minidom::Element;

use crate::ns;
use crate::stanza::ElementExt;

/// A `<field/>` with an optional type and label, and its values.
pub fn field(var: &str, ty: Option<&str>, label: Option<&str>, values: &[&str]) -> Element {
    let mut f = Element::bare("field", ns::DATA_FORMS).with("var", var);
    if let Some(t) = ty {
        f.set("type", t);
    }
    if let Some(l) = label {
        f.set("label", l);
    }
    for v in values {
        let mut ve = Element::bare("value", ns::DATA_FORMS);
        ve.append_text(*v);
        f.append_child(ve);
    }
    f
}

/// The hidden `FORM_TYPE` field that names a form's vocabulary.
pub fn form_type(value: &str) -> Element {
    field("FORM_TYPE", Some("hidden"), None, &[value])
}

/// An `<x/>` form of this type (`form`, `submit`, `result`) with these
/// fields.
pub fn form(ty: &str, fields: impl IntoIterator<Item = Element>) -> Element {
    let mut x = Element::bare("x", ns::DATA_FORMS).with("type", ty);
    for f in fields {
        x.append_child(f);
    }
    x
}

/// Every value of the field `var` (several for `jid-multi`, `text-multi`).
pub fn values(x: &Element, var: &str) -> Vec<String> {
    x.children()
        .filter(|f| f.is("field", ns::DATA_FORMS) && f.attr("var") == Some(var))
        .flat_map(|f| f.children().filter(|v| v.is("value", ns::DATA_FORMS)))
        .map(Element::text)
        .collect()
}

/// The first value of the field `var`, if it has one.
pub fn value(x: &Element, var: &str) -> Option<String> {
    values(x, var).into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::parse_element;

    #[test]
    fn build_and_read() {
        let x = form(
            "form",
            [
                form_type("urn:example"),
                field("a", Some("text-single"), Some("A"), &["1"]),
                field("m", Some("jid-multi"), None, &["x@y", "z@y"]),
            ],
        );
        let back = parse_element(&crate::stanza::to_bytes(&x), 4096).unwrap();
        assert_eq!(back.attr("type"), Some("form"));
        assert_eq!(value(&back, "FORM_TYPE").as_deref(), Some("urn:example"));
        assert_eq!(value(&back, "a").as_deref(), Some("1"));
        assert_eq!(values(&back, "m"), ["x@y", "z@y"]);
        assert_eq!(value(&back, "missing"), None);
    }
}
