//! An element tree of an XML answer, read with the SDK's own XML decoder
//! (`aws-smithy-xml`), for the Query-protocol answers `ec2` reads without an SDK crate.
//!
//! The decoder reads an element either as text or as child elements, and must be told
//! which: a first pass notes, for each element in document order, whether the next
//! one starts inside it; the second builds the tree with that knowledge.

use aws_smithy_xml::decode::{Document, ScopedDecoder, try_data};

/// One element: its local name, its text (unescaped; empty for an element that holds
/// elements) and its child elements in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Element {
    pub(crate) name: String,
    pub(crate) text: String,
    pub(crate) children: Vec<Element>,
}

impl Element {
    /// The document's root element; `None` for a text that is not XML. A document cut
    /// short keeps the elements read before the fault.
    pub(crate) fn parse(xml: &str) -> Option<Element> {
        let mut depths = Vec::new();
        let mut document = Document::new(xml);
        while let Some(start) = document.next_start_element() {
            depths.push(start.depth());
        }
        let holds_elements: Vec<bool> = depths
            .iter()
            .zip(depths.iter().skip(1).map(Some).chain([None]))
            .map(|(depth, next)| next.is_some_and(|next| next > depth))
            .collect();
        let mut document = Document::new(xml);
        let mut root = document.root_element().ok()?;
        let mut index = 0;
        Some(read(&mut root, &holds_elements, &mut index))
    }

    /// The child elements named `name`.
    pub(crate) fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> {
        self.children.iter().filter(move |child| child.name == name)
    }

    /// The text of the first child element named `name`.
    pub(crate) fn child_text(&self, name: &str) -> Option<String> {
        self.children_named(name).next().map(|child| child.text.clone())
    }

    /// The list items of a list element: EC2 writes each entry as an `<item>`.
    pub(crate) fn items(&self) -> impl Iterator<Item = &Element> {
        self.children_named("item")
    }

    /// This element and every element inside it, in document order.
    pub(crate) fn descendants(&self) -> Vec<&Element> {
        let mut all = vec![self];
        for child in &self.children {
            all.extend(child.descendants());
        }
        all
    }

    /// The first element named `name`, this one included, in document order.
    pub(crate) fn find(&self, name: &str) -> Option<&Element> {
        self.descendants().into_iter().find(|element| element.name == name)
    }

    /// The text of the first element named `name` that holds text.
    pub(crate) fn find_text(&self, name: &str) -> Option<String> {
        self.descendants()
            .into_iter()
            .find(|element| element.name == name && element.children.is_empty())
            .map(|element| element.text.clone())
    }
}

fn read(
    decoder: &mut ScopedDecoder<'_, '_>,
    holds_elements: &[bool],
    index: &mut usize,
) -> Element {
    let mut element = Element { name: decoder.start_el().local().to_owned(), ..Element::default() };
    let holds = holds_elements.get(*index).copied().unwrap_or(false);
    *index += 1;
    if holds {
        while let Some(mut child) = decoder.next_tag() {
            element.children.push(read(&mut child, holds_elements, index));
        }
    } else {
        element.text = try_data(decoder).map(|text| text.into_owned()).unwrap_or_default();
    }
    element
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nested_lists_text_and_escapes() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<R xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>r</requestId>
  <set>
    <item><id>a&amp;b</id><empty/><tags><item><key>k</key></item></tags></item>
    <item><id>&lt;c&gt;</id></item>
  </set>
</R>"#;
        let root = Element::parse(xml).unwrap();
        assert_eq!(root.name, "R");
        assert_eq!(root.child_text("requestId").as_deref(), Some("r"));
        let set = root.find("set").unwrap();
        let ids: Vec<String> = set.items().filter_map(|item| item.child_text("id")).collect();
        assert_eq!(ids, ["a&b", "<c>"]);
        let first = set.items().next().unwrap();
        assert_eq!(first.child_text("empty").as_deref(), Some(""));
        assert_eq!(first.find_text("key").as_deref(), Some("k"));
        assert_eq!(root.find_text("tags"), None, "a list holds no text");
    }

    #[test]
    fn text_that_is_not_xml_has_no_tree() {
        assert_eq!(Element::parse("Service Unavailable"), None);
        assert_eq!(Element::parse(""), None);
        // Cut short: what was read before the fault stays.
        let cut = Element::parse("<R><a>1</a><b>2").unwrap();
        assert_eq!(cut.child_text("a").as_deref(), Some("1"));
    }
}
