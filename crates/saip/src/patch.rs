//! The fast path: personalising by patching a copy of the template's encoding.
//!
//! Most personal values have a fixed size: the ICCID (header and EF.ICCID),
//! EF.IMSI, EF.ACC, Ki and OPc, and the PIN/PUK/ADM values. Writing one
//! never changes a length, so a [`Plan`], worked out once per template,
//! records the byte range each one occupies in the template's encoding, and
//! personalising copies the template's bytes and overwrites those ranges.
//!
//! The values whose files may change shape (MSISDN, IMPI, IMPU: a value may
//! be shorter or longer than the template's, and a file may grow) are
//! written into a copy of that one file field, which is re-encoded and
//! spliced in; the length octets of the ProfileElement around it are
//! rewritten for its new size. No other part of the tree is copied.
//!
//! [`crate::personalise::personalise_reference`] does the same on a copy of
//! the whole tree; the tests check that both give the same bytes.

use std::ops::Range;

use crate::encoding as enc;
use crate::package::{
    pe, FileRef, Package, PackageError, EF_ACC, EF_ICCID, EF_IMPI, EF_IMPU, EF_IMSI, EF_MSISDN,
};
use crate::tlv::Tlv;

/// A code slot: a PIN or PUK entry of the template, by key reference.
#[derive(Debug, Clone)]
pub(crate) struct CodeSlot {
    /// A PUK (PE-PUKCodes) rather than a PIN or ADM (PE-PINCodes).
    pub puk: bool,
    /// Its key reference.
    pub reference: usize,
    /// Where its 8-byte value is; `None` when the entry has no 8-byte value.
    pub value: Option<Range<usize>>,
}

/// A file whose value may change its size: where it and its element are.
#[derive(Debug, Clone)]
pub(crate) struct VarFile {
    /// Index of the top-level element holding it.
    pub element: usize,
    /// Index of the file field among the element's children.
    pub field: usize,
    /// The file field's encoding (tag to end).
    pub span: Range<usize>,
    /// The element's tag and length octets.
    pub element_header: Range<usize>,
    /// The element's content length.
    pub element_content: usize,
}

/// Where personalisation writes, in one template's encoding.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// The template's encoding.
    pub bytes: Vec<u8>,
    /// Each top-level element's range in `bytes`.
    pub spans: Vec<Range<usize>>,
    /// The ProfileHeader's iccid (10 bytes).
    pub header_iccid: Range<usize>,
    /// EF.ICCID, EF.IMSI and EF.ACC leading contents (10, 9 and 2 bytes).
    pub ef_iccid: Range<usize>,
    /// See `ef_iccid`.
    pub ef_imsi: Range<usize>,
    /// See `ef_iccid`.
    pub ef_acc: Range<usize>,
    /// (key, OPc) of every AKA parameter element (16 bytes each).
    pub aka: Vec<(Range<usize>, Range<usize>)>,
    /// Every PIN and PUK entry.
    pub codes: Vec<CodeSlot>,
    /// EF.MSISDN, if the template has it (or why it cannot be used).
    pub msisdn: Result<Option<VarFile>, PackageError>,
    /// EF.IMPI.
    pub impi: Result<Option<VarFile>, PackageError>,
    /// EF.IMPU.
    pub impu: Result<Option<VarFile>, PackageError>,
}

fn template(reason: &str) -> PackageError {
    PackageError::Template(reason.into())
}

/// Index of the first child with a one-byte tag.
fn idx(node: &Tlv, tag: u8) -> Option<usize> {
    node.children().iter().position(|c| c.tag == [tag])
}

/// Offsets of the encoding, computed by walking child indices.
struct Locator<'a> {
    elements: &'a [Tlv],
    spans: &'a [Range<usize>],
}

impl<'a> Locator<'a> {
    /// The node at `path` (top-level element index, then child indices) and
    /// the offset of its first byte.
    fn node(&self, path: &[usize]) -> Result<(&'a Tlv, usize), PackageError> {
        let (&first, rest) = path.split_first().ok_or_else(|| template("empty path"))?;
        let mut node = &self.elements[first];
        let mut start = self.spans[first].start;
        for &i in rest {
            let mut at = start + node.header_len();
            for c in &node.children()[..i] {
                at += c.encoded_len();
            }
            node = &node.children()[i];
            start = at;
        }
        Ok((node, start))
    }

    /// The contents' byte range of the primitive node at `path`.
    fn value(&self, path: &[usize]) -> Result<Range<usize>, PackageError> {
        let (node, start) = self.node(path)?;
        let from = start + node.header_len();
        let bytes = node
            .bytes()
            .ok_or_else(|| template("a value slot is not primitive"))?;
        Ok(from..from + bytes.len())
    }

    /// Where the variable-size file `f` is, if the template has it.
    fn var_file(&self, p: &Package, f: FileRef) -> Result<Option<VarFile>, PackageError> {
        if p.file(f)?.is_none() {
            return Ok(None);
        }
        let Some(element) = self.elements.iter().position(|e| e.tag == [f.element]) else {
            return Ok(None);
        };
        let e = &self.elements[element];
        let field = idx(e, f.field).ok_or_else(|| template("file field vanished"))?;
        let (file, start) = self.node(&[element, field])?;
        let at = self.spans[element].start;
        Ok(Some(VarFile {
            element,
            field,
            span: start..start + file.encoded_len(),
            element_header: at..at + e.header_len(),
            element_content: e.content_len(),
        }))
    }
}

impl Plan {
    /// Work out the plan of a package, checking it is a usable template.
    pub(crate) fn new(p: &Package) -> Result<Self, PackageError> {
        p.check_template()?;
        let elements = p.elements();
        let bytes = p.encode();
        let mut spans = Vec::with_capacity(elements.len());
        let mut at = 0;
        for e in elements {
            let len = e.encoded_len();
            spans.push(at..at + len);
            at += len;
        }
        let loc = Locator {
            elements,
            spans: &spans,
        };
        let header = idx(&elements[0], 0x83).ok_or_else(|| template("no header iccid"))?;
        let header_iccid = loc.value(&[0, header])?;
        let [ef_iccid, ef_imsi, ef_acc] =
            [EF_ICCID, EF_IMSI, EF_ACC].map(|f| leading_path(elements, f).map(|p| loc.value(&p)));
        let mut plan = Self {
            header_iccid,
            ef_iccid: ef_iccid.ok_or_else(|| template("no EF.ICCID"))??,
            ef_imsi: ef_imsi.ok_or_else(|| template("no EF.IMSI"))??,
            ef_acc: ef_acc.ok_or_else(|| template("no EF.ACC"))??,
            aka: Vec::new(),
            codes: Vec::new(),
            msisdn: loc.var_file(p, EF_MSISDN),
            impi: loc.var_file(p, EF_IMPI),
            impu: loc.var_file(p, EF_IMPU),
            bytes: Vec::new(),
            spans: Vec::new(),
        };
        for (i, e) in elements.iter().enumerate() {
            match e.tag.as_slice() {
                [pe::AKA] => {
                    let a1 =
                        idx(e, 0xa1).ok_or_else(|| template("AKA without algoConfiguration"))?;
                    let algo = &e.children()[a1];
                    let params = algo
                        .children()
                        .iter()
                        .position(|c| Tlv::is_constructed_tag(&c.tag))
                        .ok_or_else(|| template("AKA without algoParameter"))?;
                    let node = &algo.children()[params];
                    let slot = |tag| {
                        let c = idx(node, tag).ok_or_else(|| template("AKA without key/OPc"))?;
                        loc.value(&[i, a1, params, c])
                    };
                    plan.aka.push((slot(0x82)?, slot(0x83)?));
                }
                [pe::PIN_CODES] => {
                    if let Some(a1) = idx(e, 0xa1) {
                        if let Some(a0) = idx(&e.children()[a1], 0xa0) {
                            let configs = &e.children()[a1].children()[a0];
                            plan.add_codes(&loc, configs, &[i, a1, a0], false)?;
                        }
                    }
                }
                [pe::PUK_CODES] => {
                    if let Some(a1) = idx(e, 0xa1) {
                        plan.add_codes(&loc, &e.children()[a1], &[i, a1], true)?;
                    }
                }
                _ => {}
            }
        }
        plan.bytes = bytes;
        plan.spans = spans;
        Ok(plan)
    }

    /// Record the entries of a pinCodes/pukCodes list at `path`.
    fn add_codes(
        &mut self,
        loc: &Locator<'_>,
        configs: &Tlv,
        path: &[usize],
        puk: bool,
    ) -> Result<(), PackageError> {
        for (k, c) in configs.children().iter().enumerate() {
            let Some(reference) = c
                .child(&[0x80])
                .and_then(Tlv::bytes)
                .and_then(enc::decode_uint)
            else {
                continue;
            };
            let value = match idx(c, 0x81) {
                Some(v) if c.children()[v].bytes().map(<[u8]>::len) == Some(8) => {
                    let mut p = path.to_vec();
                    p.extend([k, v]);
                    Some(loc.value(&p)?)
                }
                _ => None,
            };
            self.codes.push(CodeSlot {
                puk,
                reference,
                value,
            });
        }
        Ok(())
    }

    /// The value slots of the code with this kind and key reference.
    pub(crate) fn code_slots(
        &self,
        puk: bool,
        reference: usize,
    ) -> impl Iterator<Item = &CodeSlot> + '_ {
        self.codes
            .iter()
            .filter(move |c| c.puk == puk && c.reference == reference)
    }
}

/// Path to a file's leading content: element, field, content child.
fn leading_path(elements: &[Tlv], f: FileRef) -> Option<Vec<usize>> {
    let e = elements.iter().position(|e| e.tag == [f.element])?;
    let field = idx(&elements[e], f.field)?;
    let file = &elements[e].children()[field];
    let c = file
        .children()
        .iter()
        .position(|c| c.tag == [0x83] || c.tag == [0x82])
        .filter(|c| file.children()[*c].tag == [0x83])?;
    Some(vec![e, field, c])
}

/// Overwrite `range` of `out` with `value`, which has the slot's length
/// (the plan only records slots of the sizes the values have).
pub(crate) fn put(out: &mut [u8], range: &Range<usize>, value: &[u8]) -> Result<(), PackageError> {
    match out.get_mut(range.clone()) {
        Some(slot) if slot.len() == value.len() => {
            slot.copy_from_slice(value);
            Ok(())
        }
        _ => Err(template("a value does not have the size of its slot")),
    }
}
