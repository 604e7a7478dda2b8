//! Profile packages: a sequence of ProfileElements.
//!
//! An unprotected profile package (SIMalliance/TCA interoperable profile,
//! "SAIP") is a plain concatenation of DER-encoded `ProfileElement`s, a CHOICE
//! with automatic tags: each element's tag is context-specific and
//! constructed, `[0]` the ProfileHeader (`A0`) first and `[10]` PE-End
//! (`AA`) last. [`Package::parse`] checks that shape, keeping every byte;
//! [`Package::check_template`] also checks that the elements personalisation
//! writes to are there; [`Package::values`] reads the personal values back.
//!
//! Within the elements this module knows the few fields it needs, by their
//! automatic tags in the ASN.1 module:
//!
//! | element | field | tag path |
//! |---|---|---|
//! | ProfileHeader `A0` | iccid | `83` |
//! | PE-MF `B0` | ef-iccid (2FE2) | `A4` |
//! | PE-USIM `B3` | ef-imsi (6F07), ef-acc (6F78) | `A3`, `B2` |
//! | PE-OPT-USIM `B4` | ef-msisdn (6F40) | `A7` |
//! | PE-ISIM `B5` | ef-impi (6F02), ef-impu (6F04) | `A3`, `A4` |
//! | PE-AKAParameter `A4` | algoConfiguration / algoParameter key, opc | `A1` / any / `82`, `83` |
//! | PE-PINCodes `A2` | pinconfig: keyReference, pinValue | `A1` / `A0` / `30` / `80`, `81` |
//! | PE-PUKCodes `A3` | pukCodes: keyReference, pukValue | `A1` / `30` / `80`, `81` |
//!
//! A file field is a sequence of `A1` (createFCP, whose `83` is the file ID),
//! `83` (fillFileContent) and `82` (fillFileOffset, bytes to skip).

use std::sync::OnceLock;

use thiserror::Error;

use crate::encoding as enc;
use crate::patch::Plan;
use crate::tlv::{self, Tlv, TlvError};

/// Tags of the top-level ProfileElements used here.
pub mod pe {
    /// ProfileHeader.
    pub const HEADER: u8 = 0xa0;
    /// PE-PINCodes.
    pub const PIN_CODES: u8 = 0xa2;
    /// PE-PUKCodes.
    pub const PUK_CODES: u8 = 0xa3;
    /// PE-AKAParameter.
    pub const AKA: u8 = 0xa4;
    /// PE-End.
    pub const END: u8 = 0xaa;
    /// PE-MF.
    pub const MF: u8 = 0xb0;
    /// PE-USIM.
    pub const USIM: u8 = 0xb3;
    /// PE-OPT-USIM.
    pub const OPT_USIM: u8 = 0xb4;
    /// PE-ISIM.
    pub const ISIM: u8 = 0xb5;
}

/// A file this crate reads or writes: which element, which field, which file ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileRef {
    /// Display name, e.g. `EF.IMSI`.
    pub name: &'static str,
    /// Tag of the ProfileElement holding it.
    pub element: u8,
    /// Tag of the field within that element.
    pub field: u8,
    /// The file ID its FCP must carry, when it has one.
    pub fid: [u8; 2],
}

/// EF.ICCID in the MF.
pub const EF_ICCID: FileRef = FileRef {
    name: "EF.ICCID",
    element: pe::MF,
    field: 0xa4,
    fid: [0x2f, 0xe2],
};
/// EF.IMSI in ADF.USIM.
pub const EF_IMSI: FileRef = FileRef {
    name: "EF.IMSI",
    element: pe::USIM,
    field: 0xa3,
    fid: [0x6f, 0x07],
};
/// EF.ACC in ADF.USIM.
pub const EF_ACC: FileRef = FileRef {
    name: "EF.ACC",
    element: pe::USIM,
    field: 0xb2,
    fid: [0x6f, 0x78],
};
/// EF.MSISDN in ADF.USIM (optional files).
pub const EF_MSISDN: FileRef = FileRef {
    name: "EF.MSISDN",
    element: pe::OPT_USIM,
    field: 0xa7,
    fid: [0x6f, 0x40],
};
/// EF.IMPI in ADF.ISIM.
pub const EF_IMPI: FileRef = FileRef {
    name: "EF.IMPI",
    element: pe::ISIM,
    field: 0xa3,
    fid: [0x6f, 0x02],
};
/// EF.IMPU in ADF.ISIM.
pub const EF_IMPU: FileRef = FileRef {
    name: "EF.IMPU",
    element: pe::ISIM,
    field: 0xa4,
    fid: [0x6f, 0x04],
};

/// Key references of the codes personalisation can set.
pub mod key_ref {
    /// PIN1 / PUK1.
    pub const PIN1: usize = 0x01;
    /// PIN2 / PUK2 (local PIN of an application).
    pub const PIN2: usize = 0x81;
    /// ADM1.
    pub const ADM1: usize = 0x0a;
}

/// Why bytes are not a usable profile package.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PackageError {
    /// Not BER-TLV at all.
    #[error("not a BER-TLV encoding: {0}")]
    Tlv(#[from] TlvError),
    /// Empty input.
    #[error("the file is empty")]
    Empty,
    /// A top-level element that cannot be a ProfileElement.
    #[error("element {index} has tag {tag}, which is not a ProfileElement (context-specific, constructed)")]
    NotProfileElement {
        /// Position of the element (0-based).
        index: usize,
        /// Its tag, hex.
        tag: String,
    },
    /// The first element is not a ProfileHeader.
    #[error("the package must start with a ProfileHeader (tag A0), found {0}")]
    NoHeader(String),
    /// The last element is not PE-End.
    #[error("the package must end with a PE-End element (tag AA)")]
    NoEnd,
    /// Something personalisation needs is missing or malformed.
    #[error("{0}")]
    Template(String),
}

/// A parsed profile package; encodes back to exactly the bytes it came from.
///
/// The first personalisation of a package works out where its fixed-size
/// values sit in its encoding (see [`crate::patch`]) and keeps that, so later
/// ones only copy and patch bytes.
#[derive(Clone)]
pub struct Package {
    elements: Vec<Tlv>,
    plan: OnceLock<Result<Plan, PackageError>>,
}

impl PartialEq for Package {
    fn eq(&self, other: &Self) -> bool {
        self.elements == other.elements
    }
}

impl Eq for Package {}

impl std::fmt::Debug for Package {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Package")
            .field("elements", &self.elements)
            .finish_non_exhaustive()
    }
}

/// What a template is, for listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateSummary {
    /// SAIP major.minor version from the header.
    pub version: String,
    /// The header's profileType, if any.
    pub profile_type: Option<String>,
    /// The template's own ICCID.
    pub iccid: String,
    /// Number of ProfileElements.
    pub elements: usize,
    /// Number of AKA parameter elements (each gets Ki and OPc).
    pub aka_parameters: usize,
    /// Whether EF.MSISDN, EF.IMPI and EF.IMPU are present (personalised when given).
    pub has_msisdn: bool,
    /// EF.IMPI present.
    pub has_impi: bool,
    /// EF.IMPU present.
    pub has_impu: bool,
}

/// Personal values read back from a package.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProfileValues {
    /// ICCID in the ProfileHeader.
    pub header_iccid: String,
    /// ICCID in EF.ICCID.
    pub ef_iccid: Option<String>,
    /// IMSI in EF.IMSI.
    pub imsi: Option<String>,
    /// EF.ACC contents.
    pub acc: Option<Vec<u8>>,
    /// (Ki, OPc) of every AKA parameter element, in order. Secret.
    pub aka: Vec<(Vec<u8>, Vec<u8>)>,
    /// Number in EF.MSISDN record 1.
    pub msisdn: Option<String>,
    /// EF.IMPI.
    pub impi: Option<String>,
    /// EF.IMPU record 1.
    pub impu: Option<String>,
    /// Every PIN (key reference, value), in order. Secret.
    pub pins: Vec<(usize, String)>,
    /// Every PUK (key reference, value), in order. Secret.
    pub puks: Vec<(usize, String)>,
}

impl Package {
    /// Decode and check the ProfileElement sequence.
    pub fn parse(bytes: &[u8]) -> Result<Self, PackageError> {
        if bytes.is_empty() {
            return Err(PackageError::Empty);
        }
        let elements = tlv::decode_all(bytes)?;
        for (index, e) in elements.iter().enumerate() {
            if e.tag[0] & 0xe0 != 0xa0 {
                return Err(PackageError::NotProfileElement {
                    index,
                    tag: hex(&e.tag),
                });
            }
        }
        if elements[0].tag != [pe::HEADER] {
            return Err(PackageError::NoHeader(hex(&elements[0].tag)));
        }
        if elements.last().map(|e| e.tag.as_slice()) != Some(&[pe::END]) {
            return Err(PackageError::NoEnd);
        }
        Ok(Self {
            elements,
            plan: OnceLock::new(),
        })
    }

    /// Parse, and check that everything personalisation writes is present.
    pub fn parse_template(bytes: &[u8]) -> Result<(Self, TemplateSummary), PackageError> {
        let p = Self::parse(bytes)?;
        let s = p.check_template()?;
        Ok((p, s))
    }

    /// The elements, in order.
    pub fn elements(&self) -> &[Tlv] {
        &self.elements
    }

    /// The elements, for editing (which forgets the personalisation plan).
    pub(crate) fn elements_mut(&mut self) -> &mut [Tlv] {
        self.plan = OnceLock::new();
        &mut self.elements
    }

    /// Where personalisation writes in this package's encoding, worked out
    /// once; a template error if the package is not a usable template.
    pub(crate) fn plan(&self) -> Result<&Plan, PackageError> {
        self.plan
            .get_or_init(|| Plan::new(self))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The package's DER.
    pub fn encode(&self) -> Vec<u8> {
        tlv::encode_all(&self.elements)
    }

    /// Check the template's header, ICCID, IMSI, ACC and AKA elements.
    pub fn check_template(&self) -> Result<TemplateSummary, PackageError> {
        let t = |s: String| PackageError::Template(s);
        let header = &self.elements[0];
        let iccid = header
            .child(&[0x83])
            .and_then(Tlv::bytes)
            .filter(|b| b.len() == 10)
            .ok_or_else(|| t("the ProfileHeader has no 10-byte iccid".into()))?;
        let version = |tag| {
            header
                .child(&[tag])
                .and_then(Tlv::bytes)
                .and_then(enc::decode_uint)
        };
        let (Some(major), Some(minor)) = (version(0x80), version(0x81)) else {
            return Err(t("the ProfileHeader has no major/minor version".into()));
        };
        for (f, size) in [(EF_ICCID, 10), (EF_IMSI, 9), (EF_ACC, 2)] {
            let file = self.file(f)?.ok_or_else(|| {
                t(format!(
                    "the template has no {} (element {:02X}, field {:02X})",
                    f.name, f.element, f.field
                ))
            })?;
            match leading_content(file) {
                Some(c) if c.len() == size => {}
                _ => {
                    return Err(t(format!(
                        "{} must start with {size} bytes of content",
                        f.name
                    )))
                }
            }
        }
        let mut aka = 0;
        for e in self.elements.iter().filter(|e| e.tag == [pe::AKA]) {
            let params = aka_params(e)
                .ok_or_else(|| t("an AKA parameter element has no algoParameter".into()))?;
            for (tag, what) in [(0x82, "key"), (0x83, "OPc")] {
                if params.child(&[tag]).and_then(Tlv::bytes).map(<[u8]>::len) != Some(16) {
                    return Err(t(format!("an AKA parameter element has no 16-byte {what}")));
                }
            }
            aka += 1;
        }
        if aka == 0 {
            return Err(t("the template has no AKA parameter element".into()));
        }
        Ok(TemplateSummary {
            version: format!("{major}.{minor}"),
            profile_type: header
                .child(&[0x82])
                .and_then(Tlv::bytes)
                .map(|b| String::from_utf8_lossy(b).into_owned()),
            iccid: enc::decode_iccid_header(iccid),
            elements: self.elements.len(),
            aka_parameters: aka,
            has_msisdn: self.file(EF_MSISDN)?.is_some(),
            has_impi: self.file(EF_IMPI)?.is_some(),
            has_impu: self.file(EF_IMPU)?.is_some(),
        })
    }

    /// The file field `f`, if its element and field are present. An FCP with
    /// another file ID is an error: the template does not follow the format.
    pub fn file(&self, f: FileRef) -> Result<Option<&Tlv>, PackageError> {
        let Some(file) = self
            .elements
            .iter()
            .find(|e| e.tag == [f.element])
            .and_then(|e| e.child(&[f.field]))
        else {
            return Ok(None);
        };
        check_fid(file, f)?;
        Ok(Some(file))
    }

    /// The file field `f`, for editing.
    pub(crate) fn file_mut(&mut self, f: FileRef) -> Result<Option<&mut Tlv>, PackageError> {
        match self
            .elements_mut()
            .iter_mut()
            .find(|e| e.tag == [f.element])
        {
            Some(e) => file_in_mut(e, f),
            None => Ok(None),
        }
    }

    /// Read the personal values back.
    pub fn values(&self) -> ProfileValues {
        let content = |f| {
            self.file(f)
                .ok()
                .flatten()
                .and_then(leading_content)
                .map(<[u8]>::to_vec)
        };
        let mut v = ProfileValues {
            header_iccid: self.elements[0]
                .child(&[0x83])
                .and_then(Tlv::bytes)
                .map(enc::decode_iccid_header)
                .unwrap_or_default(),
            ef_iccid: content(EF_ICCID).map(|b| enc::decode_iccid_ef(&b)),
            imsi: content(EF_IMSI).and_then(|b| enc::decode_imsi_ef(&b)),
            acc: content(EF_ACC),
            msisdn: content(EF_MSISDN).and_then(|b| enc::decode_msisdn_record(&b)),
            impi: content(EF_IMPI).and_then(|b| enc::decode_nai_tlv(&b)),
            impu: content(EF_IMPU).and_then(|b| enc::decode_nai_tlv(&b)),
            ..Default::default()
        };
        for e in &self.elements {
            match e.tag.as_slice() {
                [pe::AKA] => {
                    if let Some(p) = aka_params(e) {
                        let get = |t| p.child(&[t]).and_then(Tlv::bytes).unwrap_or_default();
                        v.aka.push((get(0x82).to_vec(), get(0x83).to_vec()));
                    }
                }
                [pe::PIN_CODES] => v.pins.extend(codes(pin_configs(e))),
                [pe::PUK_CODES] => v.puks.extend(codes(puk_configs(e))),
                _ => {}
            }
        }
        v
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

fn check_fid(file: &Tlv, f: FileRef) -> Result<(), PackageError> {
    match file_fcp(file)
        .and_then(|fcp| fcp.child(&[0x83]))
        .and_then(Tlv::bytes)
    {
        Some(fid) if fid != f.fid => Err(PackageError::Template(format!(
            "{} (element {:02X}, field {:02X}) has file ID {}, expected {}",
            f.name,
            f.element,
            f.field,
            hex(fid),
            hex(&f.fid)
        ))),
        _ => Ok(()),
    }
}

/// The file field `f` of the element `e` (whose tag is `f.element`), for editing.
pub(crate) fn file_in_mut(e: &mut Tlv, f: FileRef) -> Result<Option<&mut Tlv>, PackageError> {
    let Some(file) = e.child_mut(&[f.field]) else {
        return Ok(None);
    };
    check_fid(file, f)?;
    Ok(Some(file))
}

/// A file field's createFCP, if any.
pub fn file_fcp(file: &Tlv) -> Option<&Tlv> {
    file.child(&[0xa1])
}

/// A file field's createFCP, for editing.
pub(crate) fn file_fcp_mut(file: &mut Tlv) -> Option<&mut Tlv> {
    file.child_mut(&[0xa1])
}

/// The file's contents as its fill instructions build them: `size` bytes of
/// `FF`, each fillFileContent written at the current offset, each
/// fillFileOffset moving it on. Content past `size` is cut off.
pub fn file_image(file: &Tlv, size: usize) -> Vec<u8> {
    let mut image = vec![0xffu8; size];
    let mut pos = 0usize;
    for c in file.children() {
        match (c.tag.as_slice(), c.bytes()) {
            ([0x83], Some(b)) => {
                for (i, x) in b.iter().enumerate() {
                    if let Some(slot) = image.get_mut(pos + i) {
                        *slot = *x;
                    }
                }
                pos += b.len();
            }
            ([0x82], Some(b)) => pos += enc::decode_uint(b).unwrap_or(0),
            _ => {}
        }
    }
    image
}

/// The content a file field writes at offset 0 (its first `83` before any `82`).
pub fn leading_content(file: &Tlv) -> Option<&[u8]> {
    file.children()
        .iter()
        .find(|c| c.tag == [0x83] || c.tag == [0x82])
        .filter(|c| c.tag == [0x83])
        .and_then(Tlv::bytes)
}

/// Record length from a linear fixed file's descriptor (`82` bytes 3–4).
pub fn record_len(file: &Tlv) -> Option<usize> {
    let d = file_fcp(file)?.child(&[0x82])?.bytes()?;
    (d.len() >= 4).then(|| u16::from_be_bytes([d[2], d[3]]) as usize)
}

/// File size of a transparent file (FCP `80`).
pub fn file_size(file: &Tlv) -> Option<usize> {
    enc::decode_uint(file_fcp(file)?.child(&[0x80])?.bytes()?)
}

/// An AKA element's algoParameter (the first constructed child of algoConfiguration).
pub(crate) fn aka_params(e: &Tlv) -> Option<&Tlv> {
    e.child(&[0xa1])?
        .children()
        .iter()
        .find(|c| Tlv::is_constructed_tag(&c.tag))
}

pub(crate) fn pin_configs(e: &Tlv) -> &[Tlv] {
    e.child(&[0xa1])
        .and_then(|c| c.child(&[0xa0]))
        .map(Tlv::children)
        .unwrap_or_default()
}

pub(crate) fn puk_configs(e: &Tlv) -> &[Tlv] {
    e.child(&[0xa1]).map(Tlv::children).unwrap_or_default()
}

fn codes(configs: &[Tlv]) -> impl Iterator<Item = (usize, String)> + '_ {
    configs.iter().filter_map(|c| {
        let r = enc::decode_uint(c.child(&[0x80])?.bytes()?)?;
        Some((r, enc::decode_code_value(c.child(&[0x81])?.bytes()?)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_package() {
        assert_eq!(Package::parse(b"").unwrap_err(), PackageError::Empty);
        assert!(matches!(
            Package::parse(b"hello").unwrap_err(),
            PackageError::Tlv(_)
        ));
        // A SEQUENCE is BER but not a ProfileElement.
        assert_eq!(
            Package::parse(&[0x30, 0x03, 0x02, 0x01, 0x00]).unwrap_err(),
            PackageError::NotProfileElement {
                index: 0,
                tag: "30".into()
            }
        );
        assert_eq!(
            Package::parse(&[0xb0, 0x00, 0xaa, 0x00]).unwrap_err(),
            PackageError::NoHeader("B0".into())
        );
        assert_eq!(
            Package::parse(&[0xa0, 0x00]).unwrap_err(),
            PackageError::NoEnd
        );
        let minimal = Package::parse(&[0xa0, 0x00, 0xaa, 0x00]).unwrap();
        let e = minimal.check_template().unwrap_err().to_string();
        assert!(e.contains("iccid"), "{e}");
    }
}
