//! Personalising a template: writing one subscriber's values into a copy.
//!
//! Only the bytes that carry the values change, and the lengths of the
//! elements that enclose them when a value's length differs from the
//! template's. Everything else is kept as the template encodes it.

use thiserror::Error;

use crate::encoding as enc;
use crate::package::{
    self, key_ref, pe, FileRef, Package, PackageError, EF_ACC, EF_ICCID, EF_IMPI, EF_IMPU, EF_IMSI,
    EF_MSISDN,
};
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

/// Personalise template bytes.
pub fn personalise(template: &[u8], inputs: &Inputs) -> Result<Vec<u8>, PersonaliseError> {
    let (package, _) = Package::parse_template(template)?;
    personalise_package(&package, inputs)
}

/// Personalise an already parsed (and checked) template; the fast path when
/// one template serves many items.
pub fn personalise_package(
    template: &Package,
    inputs: &Inputs,
) -> Result<Vec<u8>, PersonaliseError> {
    let mut p = template.clone();
    let iccid_h = enc::iccid_header(&inputs.iccid).map_err(input("iccid"))?;
    let iccid_ef = enc::iccid_ef(&inputs.iccid).map_err(input("iccid"))?;
    let imsi = enc::imsi_ef(&inputs.imsi).map_err(input("imsi"))?;
    let acc = enc::acc_ef(&inputs.imsi).map_err(input("imsi"))?;

    let header = &mut p.elements_mut()[0];
    header
        .child_mut(&[0x83])
        .ok_or_else(|| bad_template("the ProfileHeader has no iccid".into()))?
        .set_bytes(iccid_h);
    write_required(&mut p, EF_ICCID, iccid_ef)?;
    write_required(&mut p, EF_IMSI, imsi)?;
    write_required(&mut p, EF_ACC, acc)?;
    set_aka(&mut p, &inputs.ki, inputs.opc.as_ref())?;

    if let Some(m) = &inputs.msisdn {
        if let Some(file) = p.file_mut(EF_MSISDN)? {
            let len = package::record_len(file)
                .ok_or_else(|| bad_template("EF.MSISDN has no record length".into()))?;
            let rec = enc::msisdn_record(m, len).map_err(input("msisdn"))?;
            write_leading(file, rec, len, EF_MSISDN).map_err(|e| e.blame("msisdn"))?;
        }
    }
    if let Some(impi) = &inputs.impi {
        let tlv = enc::nai_tlv(impi, "IMPI").map_err(input("impi"))?;
        if let Some(file) = p.file_mut(EF_IMPI)? {
            let cap = package::file_size(file).unwrap_or(tlv.len());
            write_leading(file, tlv, cap, EF_IMPI).map_err(|e| e.blame("impi"))?;
        }
    }
    if let Some(impu) = &inputs.impu {
        let tlv = enc::nai_tlv(impu, "IMPU").map_err(input("impu"))?;
        if let Some(file) = p.file_mut(EF_IMPU)? {
            let cap = package::record_len(file).unwrap_or(tlv.len());
            write_leading(file, tlv, cap, EF_IMPU).map_err(|e| e.blame("impu"))?;
        }
    }
    for c in CODES {
        if let Some(v) = (c.value)(inputs) {
            let bytes = enc::code_value(v, &c.field.to_uppercase(), c.min, c.hex_ok)
                .map_err(input(c.field))?;
            set_code(&mut p, c.puk, c.reference, bytes, c.field)?;
        }
    }
    Ok(p.encode())
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

const CODES: [CodeSpec; 5] = [
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

/// Why a value could not be written into a file.
enum WriteError {
    /// The value does not fit: the input's fault.
    TooLong(String),
    /// The file's layout is not one this crate writes into: the template's.
    Layout(String),
}

impl WriteError {
    /// The error, blaming `field` when the value is too long.
    fn blame(self, field: &'static str) -> PersonaliseError {
        match self {
            Self::TooLong(reason) => PersonaliseError::Input { field, reason },
            Self::Layout(reason) => bad_template(reason),
        }
    }
}

fn write_required(p: &mut Package, f: FileRef, data: Vec<u8>) -> Result<(), PersonaliseError> {
    let len = data.len();
    let file = p
        .file_mut(f)?
        .ok_or_else(|| bad_template(format!("the template has no {}", f.name)))?;
    // Fixed-size values of a checked template always fit.
    write_leading(file, data, len, f).map_err(|e| match e {
        WriteError::TooLong(r) | WriteError::Layout(r) => bad_template(r),
    })
}

/// Write `data` at offset 0 of a file field, keeping any later content where it was.
///
/// - No content yet: a fillFileContent is added after the FCP.
/// - A leading fillFileContent followed by a fillFileOffset: the content is
///   replaced and the offset adjusted so the next content starts where it did.
/// - A leading fillFileContent alone: replaced; a shorter value is padded with
///   `FF` to the old length, a longer one may grow up to `capacity`.
fn write_leading(
    file: &mut Tlv,
    data: Vec<u8>,
    capacity: usize,
    f: FileRef,
) -> Result<(), WriteError> {
    if data.len() > capacity {
        return Err(WriteError::TooLong(format!(
            "{} holds at most {capacity} bytes, the value needs {}",
            f.name,
            data.len()
        )));
    }
    let kids = file
        .children_mut()
        .ok_or_else(|| WriteError::Layout(format!("{} is not a file definition", f.name)))?;
    let Some(i) = kids.iter().position(|c| c.tag == [0x83] || c.tag == [0x82]) else {
        kids.push(Tlv::primitive(&[0x83], data));
        return Ok(());
    };
    if kids[i].tag == [0x82] {
        return Err(WriteError::Layout(format!(
            "{} starts with a fill offset; writing at offset 0 is not supported",
            f.name
        )));
    }
    let old_len = kids[i].bytes().map_or(0, <[u8]>::len);
    match kids.get(i + 1) {
        Some(next) if next.tag == [0x82] => {
            let skip = next.bytes().and_then(enc::decode_uint).unwrap_or(0);
            let end = old_len + skip;
            if data.len() > end {
                return Err(WriteError::TooLong(format!(
                    "{} holds at most {end} bytes before its next content, the value needs {}",
                    f.name,
                    data.len()
                )));
            }
            let new_skip = end - data.len();
            if new_skip != skip {
                kids[i + 1].set_bytes(enc::uint(new_skip));
            }
            kids[i].set_bytes(data);
        }
        Some(next) if next.tag == [0x83] && data.len() > old_len => {
            return Err(WriteError::TooLong(format!(
                "{} holds at most {old_len} bytes before its next content, the value needs {}",
                f.name,
                data.len()
            )));
        }
        _ => {
            let mut data = data;
            if data.len() < old_len {
                data.resize(old_len, 0xff);
            }
            kids[i].set_bytes(data);
        }
    }
    Ok(())
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

fn set_code(
    p: &mut Package,
    puk: bool,
    reference: usize,
    value: Vec<u8>,
    field: &'static str,
) -> Result<(), PersonaliseError> {
    let element = if puk { pe::PUK_CODES } else { pe::PIN_CODES };
    let mut n = 0;
    for e in p.elements_mut().iter_mut().filter(|e| e.tag == [element]) {
        let configs = if puk {
            e.child_mut(&[0xa1]).and_then(Tlv::children_mut)
        } else {
            e.child_mut(&[0xa1])
                .and_then(|c| c.child_mut(&[0xa0]))
                .and_then(Tlv::children_mut)
        };
        for c in configs.into_iter().flatten() {
            let r = c
                .child(&[0x80])
                .and_then(Tlv::bytes)
                .and_then(enc::decode_uint);
            if r != Some(reference) {
                continue;
            }
            let slot = c
                .child_mut(&[0x81])
                .filter(|s| s.bytes().map(<[u8]>::len) == Some(8))
                .ok_or_else(|| bad_template(format!("the {field} entry has no 8-byte value")))?;
            slot.set_bytes(value.clone());
            n += 1;
        }
    }
    if n == 0 {
        return Err(PersonaliseError::Input {
            field,
            reason: format!(
                "the template defines no {} with key reference {reference:02X}",
                field.to_uppercase()
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(children: Vec<Tlv>) -> Tlv {
        let fcp = Tlv::constructed(&[0xa1], vec![Tlv::primitive(&[0x83], vec![0x6f, 0x04])]);
        let mut kids = vec![fcp];
        kids.extend(children);
        Tlv::constructed(&[0xa4], kids)
    }

    fn content(t: &Tlv) -> Vec<(u8, Vec<u8>)> {
        t.children()[1..]
            .iter()
            .map(|c| (c.tag[0], c.bytes().unwrap().to_vec()))
            .collect()
    }

    #[test]
    fn writes_keep_later_content_in_place() {
        // 83 (5 bytes) + skip 3, then record 2: a shorter value moves the skip.
        let mut f = file(vec![
            Tlv::primitive(&[0x83], vec![1; 5]),
            Tlv::primitive(&[0x82], vec![3]),
            Tlv::primitive(&[0x83], vec![2; 8]),
        ]);
        assert!(write_leading(&mut f, vec![9; 2], 8, EF_IMPU).is_ok());
        assert_eq!(
            content(&f),
            vec![(0x83, vec![9; 2]), (0x82, vec![6]), (0x83, vec![2; 8])]
        );
        // Up to the full record, not beyond.
        assert!(write_leading(&mut f, vec![7; 8], 8, EF_IMPU).is_ok());
        assert_eq!(content(&f)[1], (0x82, vec![0]));
        assert!(matches!(
            write_leading(&mut f, vec![7; 9], 9, EF_IMPU),
            Err(WriteError::TooLong(_))
        ));
    }

    #[test]
    fn writes_pad_shrink_and_append() {
        let mut f = file(vec![Tlv::primitive(&[0x83], vec![1; 6])]);
        assert!(write_leading(&mut f, vec![5; 2], 6, EF_IMPI).is_ok());
        assert_eq!(
            content(&f),
            vec![(0x83, vec![5, 5, 0xff, 0xff, 0xff, 0xff])]
        );
        assert!(matches!(
            write_leading(&mut f, vec![5; 7], 6, EF_IMPI),
            Err(WriteError::TooLong(_))
        ));
        let mut empty = file(vec![]);
        assert!(write_leading(&mut empty, vec![3; 4], 4, EF_MSISDN).is_ok());
        assert_eq!(content(&empty), vec![(0x83, vec![3; 4])]);
        // Content directly followed by more content cannot grow.
        let mut packed = file(vec![
            Tlv::primitive(&[0x83], vec![1; 2]),
            Tlv::primitive(&[0x83], vec![2; 2]),
        ]);
        assert!(matches!(
            write_leading(&mut packed, vec![0; 3], 4, EF_IMPU),
            Err(WriteError::TooLong(_))
        ));
        // A file that starts with an offset is a layout this crate refuses.
        let mut offset_first = file(vec![
            Tlv::primitive(&[0x82], vec![4]),
            Tlv::primitive(&[0x83], vec![2; 2]),
        ]);
        assert!(matches!(
            write_leading(&mut offset_first, vec![0; 2], 4, EF_IMPU),
            Err(WriteError::Layout(_))
        ));
    }
}
