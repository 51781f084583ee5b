//! XEP-0004 data forms: the pieces modules build and read.

use minidom::Element;
use xmpp_core::ns;
use xmpp_core::stanza::ElementExt;

/// Submitted fields: each `var` with its values, in order.
pub type Fields = Vec<(String, Vec<String>)>;

/// Building fields is the core's (`xmpp_core::forms`); reading submitted
/// forms and the list helpers are here.
pub use xmpp_core::forms::field;

/// A `boolean` field.
pub fn boolean(var: &str, label: &str, value: bool) -> Element {
    field(
        var,
        Some("boolean"),
        Some(label),
        &[if value { "1" } else { "0" }],
    )
}

/// A `list-single` field offering `options`.
pub fn list_single(var: &str, label: &str, value: &str, options: &[&str]) -> Element {
    let mut f = field(var, Some("list-single"), Some(label), &[value]);
    for o in options {
        let mut opt = Element::bare("option", ns::DATA_FORMS);
        opt.append_child(Element::bare("value", ns::DATA_FORMS).with_text(o));
        f.append_child(opt);
    }
    f
}

/// The hidden `FORM_TYPE` field a form starts with.
pub fn form_type_field(form_type: &str) -> Element {
    xmpp_core::forms::form_type(form_type)
}

/// The form's `FORM_TYPE` value.
pub fn form_type(x: &Element) -> Option<String> {
    x.children()
        .find(|f| f.is("field", ns::DATA_FORMS) && f.attr("var") == Some("FORM_TYPE"))
        .and_then(|f| f.get_child("value", ns::DATA_FORMS))
        .map(Element::text)
}

/// A form's fields other than `FORM_TYPE`, with their values, in order.
pub fn fields(x: &Element) -> Fields {
    x.children()
        .filter(|f| f.is("field", ns::DATA_FORMS))
        .filter_map(|f| {
            let var = f.attr("var").filter(|v| *v != "FORM_TYPE")?;
            let values = f
                .children()
                .filter(|v| v.is("value", ns::DATA_FORMS))
                .map(Element::text)
                .collect();
            Some((var.to_owned(), values))
        })
        .collect()
}

/// An XML Schema boolean's value.
pub fn parse_boolean(v: &str) -> Option<bool> {
    match v.trim() {
        "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}
