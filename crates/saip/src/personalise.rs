//! Personalising a template: writing one subscriber's values into a copy.
//!
//! Only the bytes that carry the values change, and the lengths of the
//! elements that enclose them when a value's length differs from the
//! template's. Everything else is kept as the template encodes it. The one
//! exception is a file too small for its value (a long IMPI or IMPU): it
//! grows, as [`crate::files`] describes, so its FCP changes too.

use std::ops::Range;

use thiserror::Error;

use crate::encoding as enc;
use crate::files::{self, WriteError};
use crate::package::{
    self, key_ref, pe, FileRef, Package, PackageError, EF_ACC, EF_ICCID, EF_IMPI, EF_IMPU, EF_IMSI,
    EF_MSISDN,
};
use crate::patch::{put, VarFile};
use crate::tlv::Tlv;

/// One subscriber's values. Secrets (Ki, OPc, codes) are not printed by `Debug`.
#[derive(Clone, Default)]
pub struct Inputs {
    /// ICCID, 18–20 digits.
    pub iccid: String,
    /// IMSI, 6–15 digits.
    pub imsi: String,
    /// Subscriber key.
    pub ki: [u8; 16],
    /// OPc (derive it from OP with [`crate::derive_opc`]). `None` keeps the
    /// template's value: conformance-test profiles run the test algorithm, which has no OPc.
    pub opc: Option<[u8; 16]>,
    /// MSISDN digits (a leading `+` is allowed), written to EF.MSISDN record 1.
    pub msisdn: Option<String>,
    /// IMS private identity, written to EF.IMPI.
    pub impi: Option<String>,
    /// IMS public identity, written to EF.IMPU record 1.
    pub impu: Option<String>,
    /// PIN1, 4–8 digits.
    pub pin1: Option<String>,
    /// PUK1, 8 digits.
    pub puk1: Option<String>,
    /// PIN2, 4–8 digits.
    pub pin2: Option<String>,
    /// PUK2, 8 digits.
    pub puk2: Option<String>,
    /// ADM1, 8 digits or 16 hex digits.
    pub adm1: Option<String>,
}

impl std::fmt::Debug for Inputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inputs")
            .field("iccid", &self.iccid)
            .field("imsi", &self.imsi)
            .field("msisdn", &self.msisdn)
            .field("impi", &self.impi)
            .field("impu", &self.impu)
            .finish_non_exhaustive()
    }
}

/// Why personalisation failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PersonaliseError {
    /// The template is not a usable profile package.
    #[error("template: {0}")]
    Template(#[from] PackageError),
    /// An input value cannot be encoded.
    #[error("{field}: {reason}")]
    Input {
        /// The input field (`iccid`, `imsi`, `pin1`, ...).
        field: &'static str,
        /// Why.
        reason: String,
    },
}

impl PersonaliseError {
    /// A stable code: `template_invalid` or `invalid_value`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Template(_) => "template_invalid",
            Self::Input { .. } => "invalid_value",
        }
    }

    /// The input field to blame, if any.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Self::Input { field, .. } => Some(field),
            Self::Template(_) => None,
        }
    }
}

fn input(field: &'static str) -> impl Fn(String) -> PersonaliseError {
    move |reason| PersonaliseError::Input { field, reason }
}

fn bad_template(reason: String) -> PersonaliseError {
    PersonaliseError::Template(PackageError::Template(reason))
}

/// The error of a failed write, blaming `field` when the value is too long.
fn blame(e: WriteError, field: &'static str) -> PersonaliseError {
    match e {
        WriteError::TooLong(reason) => PersonaliseError::Input { field, reason },
        WriteError::Layout(reason) => bad_template(reason),
    }
}

/// Personalise template bytes.
pub fn personalise(template: &[u8], inputs: &Inputs) -> Result<Vec<u8>, PersonaliseError> {
    let (package, _) = Package::parse_template(template)?;
    personalise_package(&package, inputs)
}

/// The input values, encoded as the files hold them.
struct Encoded<'a> {
    inputs: &'a Inputs,
    iccid_header: Vec<u8>,
    iccid_ef: Vec<u8>,
    imsi: Vec<u8>,
    acc: Vec<u8>,
    impi: Option<Vec<u8>>,
    impu: Option<Vec<u8>>,
    codes: Vec<(&'static CodeSpec, Vec<u8>)>,
}

impl<'a> Encoded<'a> {
    fn new(inputs: &'a Inputs) -> Result<Self, PersonaliseError> {
        let nai = |v: &Option<String>, what, field| {
            v.as_deref()
                .map(|s| enc::nai_tlv(s, what).map_err(input(field)))
                .transpose()
        };
        let mut codes = Vec::new();
        for c in &CODES {
            if let Some(v) = (c.value)(inputs) {
                let bytes = enc::code_value(v, &c.field.to_uppercase(), c.min, c.hex_ok)
                    .map_err(input(c.field))?;
                codes.push((c, bytes));
            }
        }
        Ok(Self {
            inputs,
            iccid_header: enc::iccid_header(&inputs.iccid).map_err(input("iccid"))?,
            iccid_ef: enc::iccid_ef(&inputs.iccid).map_err(input("iccid"))?,
            imsi: enc::imsi_ef(&inputs.imsi).map_err(input("imsi"))?,
            acc: enc::acc_ef(&inputs.imsi).map_err(input("imsi"))?,
            impi: nai(&inputs.impi, "IMPI", "impi")?,
            impu: nai(&inputs.impu, "IMPU", "impu")?,
            codes,
        })
    }

    /// Whether the inputs give a value for the variable-size file `f`.
    fn gives(&self, f: FileRef) -> bool {
        match f {
            EF_MSISDN => self.inputs.msisdn.is_some(),
            EF_IMPI => self.impi.is_some(),
            EF_IMPU => self.impu.is_some(),
            _ => false,
        }
    }

    /// Write the value of a variable-size file (EF.MSISDN, EF.IMPI, EF.IMPU)
    /// into its file field, growing the file if the value needs it.
    fn write_variable(&self, file: &mut Tlv, f: FileRef) -> Result<(), PersonaliseError> {
        match f {
            EF_MSISDN => {
                let Some(m) = &self.inputs.msisdn else {
                    return Ok(());
                };
                let len = package::record_len(file)
                    .ok_or_else(|| bad_template("EF.MSISDN has no record length".into()))?;
                let rec = enc::msisdn_record(m, len).map_err(input("msisdn"))?;
                files::write_leading(file, rec, len, f).map_err(|e| blame(e, "msisdn"))
            }
            EF_IMPI => match &self.impi {
                Some(tlv) => {
                    files::write_transparent(file, tlv.clone(), f).map_err(|e| blame(e, "impi"))
                }
                None => Ok(()),
            },
            EF_IMPU => match &self.impu {
                Some(tlv) => {
                    files::write_record(file, tlv.clone(), f).map_err(|e| blame(e, "impu"))
                }
                None => Ok(()),
            },
            _ => Ok(()),
        }
    }
}

/// The files whose values may change their size or shape.
const VARIABLE: [FileRef; 3] = [EF_MSISDN, EF_IMPI, EF_IMPU];

/// Personalise an already parsed template: the fast path when one template
/// serves many items (see [`crate::patch`]). Copies the template's bytes,
/// overwrites the fixed-size values in place and splices in the re-encoded
/// file fields of MSISDN, IMPI and IMPU.
pub fn personalise_package(
    template: &Package,
    inputs: &Inputs,
) -> Result<Vec<u8>, PersonaliseError> {
    let plan = template.plan()?;
    let v = Encoded::new(inputs)?;
    let mut out = plan.bytes.clone();
    put(&mut out, &plan.header_iccid, &v.iccid_header)?;
    put(&mut out, &plan.ef_iccid, &v.iccid_ef)?;
    put(&mut out, &plan.ef_imsi, &v.imsi)?;
    put(&mut out, &plan.ef_acc, &v.acc)?;
    for (ki, opc) in &plan.aka {
        put(&mut out, ki, &inputs.ki)?;
        if let Some(value) = &inputs.opc {
            put(&mut out, opc, value)?;
        }
    }
    for (c, bytes) in &v.codes {
        let mut n = 0;
        for slot in plan.code_slots(c.puk, c.reference) {
            let range = slot.value.as_ref().ok_or_else(|| no_8_byte_value(c))?;
            put(&mut out, range, bytes)?;
            n += 1;
        }
        if n == 0 {
            return Err(no_code(c));
        }
    }
    // Variable files: edit a copy of each file field, splice it in, and give
    // its element the length octets of its new size.
    let mut splices: Vec<(Range<usize>, Vec<u8>)> = Vec::new();
    let mut resized: Vec<(&VarFile, isize)> = Vec::new();
    for (f, at) in VARIABLE.iter().zip([&plan.msisdn, &plan.impi, &plan.impu]) {
        if !v.gives(*f) {
            continue;
        }
        let Some(vf) = at.as_ref().map_err(Clone::clone)? else {
            continue;
        };
        let mut file = template.elements()[vf.element].children()[vf.field].clone();
        v.write_variable(&mut file, *f)?;
        let bytes = file.encode();
        let delta = bytes.len() as isize - vf.span.len() as isize;
        match resized.iter_mut().find(|(g, _)| g.element == vf.element) {
            Some((_, d)) => *d += delta,
            None => resized.push((vf, delta)),
        }
        splices.push((vf.span.clone(), bytes));
    }
    for (vf, delta) in resized {
        if delta != 0 {
            let content = vf.element_content.saturating_add_signed(delta);
            let header = template.elements()[vf.element].header_for(content);
            splices.push((vf.element_header.clone(), header));
        }
    }
    // Later ranges first, so earlier ones stay where the plan has them.
    splices.sort_by_key(|(r, _)| std::cmp::Reverse(r.start));
    for (range, bytes) in splices {
        out.splice(range, bytes);
    }
    Ok(out)
}

/// The same result as [`personalise_package`], computed the plain way: copy
/// the whole tree, edit it, encode it. About ten times slower; kept as the
/// reference the fast path is tested against.
pub fn personalise_reference(
    template: &Package,
    inputs: &Inputs,
) -> Result<Vec<u8>, PersonaliseError> {
    let v = Encoded::new(inputs)?;
    let mut p = template.clone();
    let header = &mut p.elements_mut()[0];
    header
        .child_mut(&[0x83])
        .ok_or_else(|| bad_template("the ProfileHeader has no iccid".into()))?
        .set_bytes(v.iccid_header.clone());
    write_required(&mut p, EF_ICCID, v.iccid_ef.clone())?;
    write_required(&mut p, EF_IMSI, v.imsi.clone())?;
    write_required(&mut p, EF_ACC, v.acc.clone())?;
    set_aka(&mut p, &inputs.ki, inputs.opc.as_ref())?;
    for f in VARIABLE {
        if v.gives(f) {
            if let Some(file) = p.file_mut(f)? {
                v.write_variable(file, f)?;
            }
        }
    }
    for (c, bytes) in &v.codes {
        set_code(&mut p, c, bytes)?;
    }
    Ok(p.encode())
}

fn no_code(c: &CodeSpec) -> PersonaliseError {
    PersonaliseError::Input {
        field: c.field,
        reason: format!(
            "the template defines no {} with key reference {:02X}",
            c.field.to_uppercase(),
            c.reference
        ),
    }
}

fn no_8_byte_value(c: &CodeSpec) -> PersonaliseError {
    bad_template(format!("the {} entry has no 8-byte value", c.field))
}

/// A PIN, PUK or ADM code personalisation can set.
struct CodeSpec {
    field: &'static str,
    value: fn(&Inputs) -> Option<&str>,
    min: usize,
    hex_ok: bool,
    reference: usize,
    puk: bool,
}

static CODES: [CodeSpec; 5] = [
    CodeSpec {
        field: "pin1",
        value: |i| i.pin1.as_deref(),
        min: 4,
        hex_ok: false,
        reference: key_ref::PIN1,
        puk: false,
    },
    CodeSpec {
        field: "pin2",
        value: |i| i.pin2.as_deref(),
        min: 4,
        hex_ok: false,
        reference: key_ref::PIN2,
        puk: false,
    },
    CodeSpec {
        field: "adm1",
        value: |i| i.adm1.as_deref(),
        min: 8,
        hex_ok: true,
        reference: key_ref::ADM1,
        puk: false,
    },
    CodeSpec {
        field: "puk1",
        value: |i| i.puk1.as_deref(),
        min: 8,
        hex_ok: false,
        reference: key_ref::PIN1,
        puk: true,
    },
    CodeSpec {
        field: "puk2",
        value: |i| i.puk2.as_deref(),
        min: 8,
        hex_ok: false,
        reference: key_ref::PIN2,
        puk: true,
    },
];

fn write_required(p: &mut Package, f: FileRef, data: Vec<u8>) -> Result<(), PersonaliseError> {
    let len = data.len();
    let file = p
        .file_mut(f)?
        .ok_or_else(|| bad_template(format!("the template has no {}", f.name)))?;
    // Fixed-size values of a checked template always fit.
    files::write_leading(file, data, len, f).map_err(|e| match e {
        WriteError::TooLong(r) | WriteError::Layout(r) => bad_template(r),
    })
}

fn set_aka(p: &mut Package, ki: &[u8; 16], opc: Option<&[u8; 16]>) -> Result<(), PersonaliseError> {
    let mut n = 0;
    for e in p.elements_mut().iter_mut().filter(|e| e.tag == [pe::AKA]) {
        let params = e
            .child_mut(&[0xa1])
            .and_then(|c| {
                c.children_mut()?
                    .iter_mut()
                    .find(|c| Tlv::is_constructed_tag(&c.tag))
            })
            .ok_or_else(|| bad_template("an AKA parameter element has no algoParameter".into()))?;
        for (tag, value, what) in [(0x82u8, Some(ki), "key"), (0x83, opc, "OPc")] {
            let slot = params
                .child_mut(&[tag])
                .filter(|s| s.bytes().map(<[u8]>::len) == Some(16))
                .ok_or_else(|| {
                    bad_template(format!("an AKA parameter element has no 16-byte {what}"))
                })?;
            if let Some(v) = value {
                slot.set_bytes(v.to_vec());
            }
        }
        n += 1;
    }
    if n == 0 {
        return Err(bad_template(
            "the template has no AKA parameter element".into(),
        ));
    }
    Ok(())
}

fn set_code(p: &mut Package, c: &CodeSpec, value: &[u8]) -> Result<(), PersonaliseError> {
    let element = if c.puk { pe::PUK_CODES } else { pe::PIN_CODES };
    let mut n = 0;
    for e in p.elements_mut().iter_mut().filter(|e| e.tag == [element]) {
        let configs = if c.puk {
            e.child_mut(&[0xa1]).and_then(Tlv::children_mut)
        } else {
            e.child_mut(&[0xa1])
                .and_then(|c| c.child_mut(&[0xa0]))
                .and_then(Tlv::children_mut)
        };
        for config in configs.into_iter().flatten() {
            let r = config
                .child(&[0x80])
                .and_then(Tlv::bytes)
                .and_then(enc::decode_uint);
            if r != Some(c.reference) {
                continue;
            }
            let slot = config
                .child_mut(&[0x81])
                .filter(|s| s.bytes().map(<[u8]>::len) == Some(8))
                .ok_or_else(|| no_8_byte_value(c))?;
            slot.set_bytes(value.to_vec());
            n += 1;
        }
    }
    if n == 0 {
        return Err(no_code(c));
    }
    Ok(())
}
