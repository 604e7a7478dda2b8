//! A small BER-TLV codec that keeps the original encoding.
//!
//! Profile packages are DER in practice, but the interoperable format is
//! defined over BER, and real packages carry the occasional non-minimal length.
//! The standard ASN.1 crates normalise such encodings when they re-encode, so
//! a template would not survive decode → encode unchanged. This codec keeps
//! each element's tag bytes and length bytes exactly as read; a length is
//! re-encoded (minimally, as DER wants) only when the content length it
//! describes has changed. Indefinite lengths (`0x80` … `00 00`) are kept as
//! such.
//!
//! Decoding never panics: every length is checked against the input, and the
//! nesting depth is bounded.

use thiserror::Error;

/// Deepest nesting accepted; profile packages nest about eight levels.
pub const MAX_DEPTH: usize = 48;

/// Why bytes are not a BER-TLV sequence.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{reason} at byte {offset}")]
pub struct TlvError {
    /// Offset into the input where decoding stopped.
    pub offset: usize,
    /// What was wrong there.
    pub reason: &'static str,
}

fn err(offset: usize, reason: &'static str) -> TlvError {
    TlvError { offset, reason }
}

/// One element: a tag, the way its length was written, and a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlv {
    /// Tag bytes exactly as encoded (one byte, or more for high tag numbers).
    pub tag: Vec<u8>,
    /// Length octets as read, kept for byte-exact re-encoding. Ignored (and a
    /// minimal definite length written) when they no longer match the value.
    len_raw: Vec<u8>,
    /// Contents.
    pub value: Value,
}

/// The contents of an element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A primitive element's octets.
    Primitive(Vec<u8>),
    /// A constructed element's children, in order.
    Constructed(Vec<Tlv>),
}

impl Tlv {
    /// A new primitive element with a minimal definite length.
    pub fn primitive(tag: &[u8], bytes: Vec<u8>) -> Self {
        Self {
            tag: tag.to_vec(),
            len_raw: Vec::new(),
            value: Value::Primitive(bytes),
        }
    }

    /// A new constructed element with a minimal definite length.
    pub fn constructed(tag: &[u8], children: Vec<Tlv>) -> Self {
        Self {
            tag: tag.to_vec(),
            len_raw: Vec::new(),
            value: Value::Constructed(children),
        }
    }

    /// Whether the tag says constructed (bit 6 of the first tag byte).
    pub fn is_constructed_tag(tag: &[u8]) -> bool {
        tag.first().is_some_and(|b| b & 0x20 != 0)
    }

    /// The primitive contents, if primitive.
    pub fn bytes(&self) -> Option<&[u8]> {
        match &self.value {
            Value::Primitive(b) => Some(b),
            Value::Constructed(_) => None,
        }
    }

    /// The children, if constructed (empty for primitive elements).
    pub fn children(&self) -> &[Tlv] {
        match &self.value {
            Value::Constructed(c) => c,
            Value::Primitive(_) => &[],
        }
    }

    /// The children for editing, if constructed.
    pub fn children_mut(&mut self) -> Option<&mut Vec<Tlv>> {
        match &mut self.value {
            Value::Constructed(c) => Some(c),
            Value::Primitive(_) => None,
        }
    }

    /// The first child with this single- or multi-byte tag.
    pub fn child(&self, tag: &[u8]) -> Option<&Tlv> {
        self.children().iter().find(|c| c.tag == tag)
    }

    /// The first child with this tag, for editing.
    pub fn child_mut(&mut self, tag: &[u8]) -> Option<&mut Tlv> {
        self.children_mut()?.iter_mut().find(|c| c.tag == tag)
    }

    /// Replace a primitive element's contents.
    pub fn set_bytes(&mut self, bytes: Vec<u8>) {
        self.value = Value::Primitive(bytes);
    }

    fn is_indefinite(&self) -> bool {
        self.len_raw == [0x80]
    }

    /// Length of the contents as encoded (children included).
    pub fn content_len(&self) -> usize {
        match &self.value {
            Value::Primitive(b) => b.len(),
            Value::Constructed(c) => c.iter().map(Tlv::encoded_len).sum(),
        }
    }

    /// Total encoded length of this element.
    pub fn encoded_len(&self) -> usize {
        let content = self.content_len();
        if self.is_indefinite() {
            return self.tag.len() + 1 + content + 2;
        }
        let len_bytes = if decode_definite(&self.len_raw) == Some(content) {
            self.len_raw.len()
        } else {
            minimal_len(content).len()
        };
        self.tag.len() + len_bytes + content
    }

    /// Length of the tag and length octets: where the contents start,
    /// relative to the element's first byte.
    pub fn header_len(&self) -> usize {
        let trailer = if self.is_indefinite() { 2 } else { 0 };
        self.encoded_len() - self.content_len() - trailer
    }

    /// The tag and length octets this element would have with contents of
    /// `content` bytes: its own length octets while they still say so (or
    /// are indefinite), else a minimal definite length.
    pub fn header_for(&self, content: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.tag.len() + 5);
        self.write_header(content, &mut out);
        out
    }

    fn write_header(&self, content: usize, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.tag);
        if self.is_indefinite() {
            out.push(0x80);
        } else if decode_definite(&self.len_raw) == Some(content) {
            out.extend_from_slice(&self.len_raw);
        } else {
            out.extend_from_slice(&minimal_len(content));
        }
    }

    /// Append this element's encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        self.write_header(self.content_len(), out);
        match &self.value {
            Value::Primitive(b) => out.extend_from_slice(b),
            Value::Constructed(c) => c.iter().for_each(|t| t.encode_into(out)),
        }
        if self.is_indefinite() {
            out.extend_from_slice(&[0, 0]);
        }
    }

    /// This element's encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }
}

/// The value of definite length octets, if they are definite and fit.
fn decode_definite(raw: &[u8]) -> Option<usize> {
    let (&first, rest) = raw.split_first()?;
    if first < 0x80 {
        return rest.is_empty().then_some(first as usize);
    }
    let n = (first & 0x7f) as usize;
    if n == 0 || n != rest.len() || n > std::mem::size_of::<usize>() {
        return None;
    }
    Some(rest.iter().fold(0usize, |acc, b| (acc << 8) | *b as usize))
}

/// The minimal definite length octets for `len`.
pub fn minimal_len(len: usize) -> Vec<u8> {
    if len < 0x80 {
        return vec![len as u8];
    }
    let bytes: Vec<u8> = len
        .to_be_bytes()
        .into_iter()
        .skip_while(|b| *b == 0)
        .collect();
    let mut out = vec![0x80 | bytes.len() as u8];
    out.extend(bytes);
    out
}

/// Decode a whole buffer as a sequence of elements; trailing bytes are an error.
pub fn decode_all(input: &[u8]) -> Result<Vec<Tlv>, TlvError> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < input.len() {
        let (tlv, next) = decode_one(input, pos, 0)?;
        out.push(tlv);
        pos = next;
    }
    Ok(out)
}

/// Encode a sequence of elements.
pub fn encode_all(elements: &[Tlv]) -> Vec<u8> {
    let mut out = Vec::with_capacity(elements.iter().map(Tlv::encoded_len).sum());
    elements.iter().for_each(|e| e.encode_into(&mut out));
    out
}

/// Decode one element starting at `pos`; returns it and the offset after it.
fn decode_one(input: &[u8], pos: usize, depth: usize) -> Result<(Tlv, usize), TlvError> {
    if depth > MAX_DEPTH {
        return Err(err(pos, "nesting too deep"));
    }
    let tag_end = read_tag(input, pos)?;
    let tag = input[pos..tag_end].to_vec();
    let (len, len_end) = read_len(input, tag_end)?;
    let len_raw = input[tag_end..len_end].to_vec();
    let constructed = Tlv::is_constructed_tag(&tag);
    match len {
        Some(len) => {
            let end = len_end
                .checked_add(len)
                .filter(|e| *e <= input.len())
                .ok_or_else(|| err(tag_end, "length runs past the end of the data"))?;
            let value = if constructed {
                let mut children = Vec::new();
                let mut p = len_end;
                while p < end {
                    let (child, next) = decode_one(&input[..end], p, depth + 1)?;
                    children.push(child);
                    p = next;
                }
                Value::Constructed(children)
            } else {
                Value::Primitive(input[len_end..end].to_vec())
            };
            Ok((
                Tlv {
                    tag,
                    len_raw,
                    value,
                },
                end,
            ))
        }
        None => {
            if !constructed {
                return Err(err(tag_end, "indefinite length on a primitive element"));
            }
            let mut children = Vec::new();
            let mut p = len_end;
            loop {
                if input.get(p..p + 2) == Some(&[0, 0]) {
                    break;
                }
                if p >= input.len() {
                    return Err(err(p, "missing end-of-contents"));
                }
                let (child, next) = decode_one(input, p, depth + 1)?;
                children.push(child);
                p = next;
            }
            Ok((
                Tlv {
                    tag,
                    len_raw,
                    value: Value::Constructed(children),
                },
                p + 2,
            ))
        }
    }
}

/// The end offset of the tag starting at `pos`.
fn read_tag(input: &[u8], pos: usize) -> Result<usize, TlvError> {
    let first = *input.get(pos).ok_or_else(|| err(pos, "missing tag"))?;
    if first & 0x1f != 0x1f {
        return Ok(pos + 1);
    }
    let mut p = pos + 1;
    loop {
        let b = *input
            .get(p)
            .ok_or_else(|| err(p, "tag runs past the end of the data"))?;
        p += 1;
        if b & 0x80 == 0 {
            return Ok(p);
        }
        if p - pos > 5 {
            return Err(err(pos, "tag number too large"));
        }
    }
}

/// The length at `pos` (`None` for indefinite) and the offset after it.
fn read_len(input: &[u8], pos: usize) -> Result<(Option<usize>, usize), TlvError> {
    let first = *input.get(pos).ok_or_else(|| err(pos, "missing length"))?;
    if first < 0x80 {
        return Ok((Some(first as usize), pos + 1));
    }
    if first == 0x80 {
        return Ok((None, pos + 1));
    }
    let n = (first & 0x7f) as usize;
    if n > 4 {
        return Err(err(pos, "length field too long"));
    }
    let bytes = input
        .get(pos + 1..pos + 1 + n)
        .ok_or_else(|| err(pos, "length runs past the end of the data"))?;
    let len = bytes.iter().fold(0usize, |acc, b| (acc << 8) | *b as usize);
    Ok((Some(len), pos + 1 + n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn roundtrips_non_minimal_and_indefinite_lengths() {
        // 81 02 (non-minimal) and an indefinite-length constructed element.
        let bytes = hex::decode("a08103800101a4808001ff81020a0b0000").unwrap();
        let tree = decode_all(&bytes).unwrap();
        assert_eq!(tree.len(), 2);
        assert_eq!(encode_all(&tree), bytes);
        assert_eq!(tree[1].children().len(), 2);
        assert_eq!(tree[0].header_len(), 3);
        assert_eq!(tree[1].header_len(), 2);
        assert_eq!(tree[1].children()[1].header_len(), 2);
        // Its own length octets while they fit, else minimal ones.
        assert_eq!(tree[0].header_for(3), vec![0xa0, 0x81, 0x03]);
        assert_eq!(tree[0].header_for(4), vec![0xa0, 0x04]);
        assert_eq!(tree[0].header_for(300), vec![0xa0, 0x82, 0x01, 0x2c]);
        assert_eq!(tree[1].header_for(99), vec![0xa4, 0x80]);
    }

    #[test]
    fn rewrites_only_changed_lengths() {
        let bytes = hex::decode("a0820004800201025f2101aa").unwrap();
        let mut tree = decode_all(&bytes).unwrap();
        assert_eq!(tree[0].child(&[0x80]).unwrap().bytes(), Some(&[1u8, 2][..]));
        assert_eq!(tree[1].tag, vec![0x5f, 0x21]);
        tree[0].child_mut(&[0x80]).unwrap().set_bytes(vec![9; 200]);
        let out = encode_all(&tree);
        // The outer length is now minimal DER (81 cb); the second element is untouched.
        assert_eq!(&out[..5], &[0xa0, 0x81, 0xcb, 0x80, 0x81]);
        assert_eq!(&out[out.len() - 4..], &[0x5f, 0x21, 0x01, 0xaa]);
        assert_eq!(decode_all(&out).unwrap()[0].encoded_len(), 3 + 203);
    }

    #[test]
    fn refuses_malformed_input_with_an_offset() {
        let cases: [(&str, &str); 6] = [
            ("a005800101", "length runs past the end of the data"),
            ("1f", "tag runs past the end of the data"),
            ("80", "missing length"),
            ("8080", "indefinite length on a primitive element"),
            ("a080800100", "missing end-of-contents"),
            ("8585000000000000", "length field too long"),
        ];
        for (hex_in, reason) in cases {
            let e = decode_all(&hex::decode(hex_in).unwrap()).unwrap_err();
            assert_eq!(e.reason, reason, "{hex_in}");
        }
        let deep: Vec<u8> = std::iter::repeat_n([0xa0u8, 0x80], 60).flatten().collect();
        assert_eq!(decode_all(&deep).unwrap_err().reason, "nesting too deep");
    }

    #[test]
    fn minimal_lengths() {
        assert_eq!(minimal_len(0x7f), vec![0x7f]);
        assert_eq!(minimal_len(0x80), vec![0x81, 0x80]);
        assert_eq!(minimal_len(0x1234), vec![0x82, 0x12, 0x34]);
    }

    /// Arbitrary trees, encoded with arbitrary (valid) length styles.
    fn arb_tlv() -> impl Strategy<Value = Tlv> {
        let tag_prim = prop_oneof![
            (0u8..0x1f).prop_map(|t| vec![0x80 | t]),
            (0x1fu8..0x7f).prop_map(|t| vec![0x9f, t]),
            (0x80u8..0xff, 1u8..0x7f).prop_map(|(a, b)| vec![0x9f, a, b]),
        ];
        let style = 0u8..3;
        let leaf = (
            tag_prim,
            proptest::collection::vec(any::<u8>(), 0..40),
            style,
        )
            .prop_map(|(tag, bytes, style)| with_style(Tlv::primitive(&tag, bytes), style));
        leaf.prop_recursive(5, 64, 6, |inner| {
            (
                (0u8..0x1f).prop_map(|t| vec![0xa0 | t]),
                proptest::collection::vec(inner, 0..6),
                0u8..4,
            )
                .prop_map(|(tag, kids, style)| with_style(Tlv::constructed(&tag, kids), style))
        })
    }

    /// Give an element minimal (0), long-form (1), four-byte (2) or indefinite (3) length octets.
    fn with_style(mut t: Tlv, style: u8) -> Tlv {
        let len = t.content_len();
        t.len_raw = match style {
            1 => {
                let mut v = vec![0x82];
                v.extend_from_slice(&(len as u16).to_be_bytes());
                v
            }
            2 => {
                let mut v = vec![0x84];
                v.extend_from_slice(&(len as u32).to_be_bytes());
                v
            }
            3 => vec![0x80],
            _ => minimal_len(len),
        };
        t
    }

    proptest! {
        #[test]
        fn encode_decode_roundtrip(trees in proptest::collection::vec(arb_tlv(), 1..4)) {
            let bytes = encode_all(&trees);
            let decoded = decode_all(&bytes).unwrap();
            prop_assert_eq!(encode_all(&decoded), bytes.clone());
            prop_assert_eq!(decoded.iter().map(Tlv::encoded_len).sum::<usize>(), bytes.len());
        }

        #[test]
        fn never_panics_and_roundtrips_what_it_accepts(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(tree) = decode_all(&bytes) {
                prop_assert_eq!(encode_all(&tree), bytes);
            }
        }
    }
}
