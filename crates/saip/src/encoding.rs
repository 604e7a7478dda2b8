//! How SIM file contents encode identifiers and codes.
//!
//! - The profile header's ICCID is BCD in reading order, padded with `F`.
//! - EF.ICCID (2FE2) is the same digits nibble-swapped (3GPP TS 31.102 / ETSI TS 102 221).
//! - EF.IMSI (6F07) is a length byte, then the digits nibble-swapped behind a
//!   parity nibble (`9` for an odd number of digits, `1` for even), padded with `F`.
//! - EF.ACC (6F78) holds one bit for the access class equal to the IMSI's last digit.
//! - EF.MSISDN (6F40) records end in 14 bytes: BCD length, TON/NPI, ten bytes
//!   of swapped digits, capability and extension identifiers.
//! - EF.IMPI / EF.IMPU (ISIM) hold a `80` TLV with the UTF-8 NAI or URI.
//! - PIN, PUK and ADM values are 8 bytes: ASCII digits padded with `FF`.

/// Why a value cannot be encoded; the caller names the field.
pub type Reason = String;

fn digits(s: &str, what: &str, min: usize, max: usize) -> Result<Vec<u8>, Reason> {
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{what} must contain only digits"));
    }
    if s.len() < min || s.len() > max {
        return Err(format!(
            "{what} must have {min} to {max} digits, got {}",
            s.len()
        ));
    }
    Ok(s.bytes().map(|b| b - b'0').collect())
}

/// Pack nibbles two to a byte, first nibble high (`swap = false`) or low (`swap = true`), padding with F.
fn pack(nibbles: &[u8], swap: bool, len: usize) -> Vec<u8> {
    let mut out = vec![0xffu8; len];
    for (i, pair) in nibbles.chunks(2).enumerate() {
        let (a, b) = (pair[0], pair.get(1).copied().unwrap_or(0xf));
        out[i] = if swap { (b << 4) | a } else { (a << 4) | b };
    }
    out
}

/// Unpack nibbles until the first F.
fn unpack(bytes: &[u8], swap: bool) -> String {
    let mut s = String::new();
    for b in bytes {
        let (first, second) = if swap {
            (b & 0x0f, b >> 4)
        } else {
            (b >> 4, b & 0x0f)
        };
        for n in [first, second] {
            if n > 9 {
                return s;
            }
            s.push((b'0' + n) as char);
        }
    }
    s
}

/// ICCID for the profile header: 10 bytes, BCD in reading order.
pub fn iccid_header(iccid: &str) -> Result<Vec<u8>, Reason> {
    Ok(pack(&digits(iccid, "ICCID", 18, 20)?, false, 10))
}

/// ICCID for EF.ICCID: 10 bytes, nibble-swapped BCD.
pub fn iccid_ef(iccid: &str) -> Result<Vec<u8>, Reason> {
    Ok(pack(&digits(iccid, "ICCID", 18, 20)?, true, 10))
}

/// Read the header ICCID back.
pub fn decode_iccid_header(bytes: &[u8]) -> String {
    unpack(bytes, false)
}

/// Read EF.ICCID back.
pub fn decode_iccid_ef(bytes: &[u8]) -> String {
    unpack(bytes, true)
}

/// EF.IMSI contents (9 bytes).
pub fn imsi_ef(imsi: &str) -> Result<Vec<u8>, Reason> {
    let d = digits(imsi, "IMSI", 6, 15)?;
    let mut nibbles = vec![if d.len() % 2 == 1 { 9 } else { 1 }];
    nibbles.extend(&d);
    let body = nibbles.len().div_ceil(2);
    let mut out = vec![body as u8];
    out.extend(pack(&nibbles, true, 8));
    Ok(out)
}

/// Read EF.IMSI back; `None` when the length byte is not plausible.
pub fn decode_imsi_ef(bytes: &[u8]) -> Option<String> {
    let (&len, rest) = bytes.split_first()?;
    let body = rest.get(..len as usize)?;
    let (&first, tail) = body.split_first()?;
    let mut s = String::new();
    let d0 = first >> 4;
    if d0 <= 9 {
        s.push((b'0' + d0) as char);
    }
    s.push_str(&unpack(tail, true));
    Some(s)
}

/// EF.ACC contents: the access class bit of the IMSI's last digit.
pub fn acc_ef(imsi: &str) -> Result<Vec<u8>, Reason> {
    let d = digits(imsi, "IMSI", 6, 15)?;
    let last = *d.last().unwrap_or(&0);
    Ok((1u16 << last).to_be_bytes().to_vec())
}

/// An EF.MSISDN record of `record_len` bytes (alpha identifier left blank).
pub fn msisdn_record(msisdn: &str, record_len: usize) -> Result<Vec<u8>, Reason> {
    let d = digits(msisdn.trim_start_matches('+'), "MSISDN", 1, 20)?;
    if record_len < 14 {
        return Err(format!(
            "EF.MSISDN records of {record_len} bytes cannot hold a number"
        ));
    }
    let mut out = vec![0xffu8; record_len - 14];
    out.push(1 + d.len().div_ceil(2) as u8);
    // The platform keeps MSISDNs as E.164 digits: type of number international, ISDN plan.
    out.push(0x91);
    out.extend(pack(&d, true, 10));
    out.extend([0xff, 0xff]);
    Ok(out)
}

/// Read the number of an EF.MSISDN record; `None` for an empty record.
pub fn decode_msisdn_record(record: &[u8]) -> Option<String> {
    let tail = record.get(record.len().checked_sub(14)?..)?;
    let len = tail[0];
    if len == 0xff || len < 2 {
        return None;
    }
    let n = (len as usize - 1).min(10);
    Some(unpack(&tail[2..2 + n], true))
}

/// The `80` TLV an ISIM file holds for an IMPI or IMPU.
pub fn nai_tlv(value: &str, what: &str) -> Result<Vec<u8>, Reason> {
    if value.is_empty() || value.len() > 127 || value.chars().any(char::is_control) {
        return Err(format!("{what} must be 1 to 127 bytes of printable text"));
    }
    let mut out = vec![0x80, value.len() as u8];
    out.extend_from_slice(value.as_bytes());
    Ok(out)
}

/// Read an ISIM `80` TLV back.
pub fn decode_nai_tlv(bytes: &[u8]) -> Option<String> {
    if bytes.first() != Some(&0x80) {
        return None;
    }
    let len = *bytes.get(1)? as usize;
    String::from_utf8(bytes.get(2..2 + len)?.to_vec()).ok()
}

/// A PIN, PUK or ADM value: `min`..=8 digits, ASCII, padded with FF to 8 bytes.
/// ADM1 may also be given as 16 hex digits (8 raw bytes).
pub fn code_value(code: &str, what: &str, min: usize, allow_hex: bool) -> Result<Vec<u8>, Reason> {
    if allow_hex && code.len() == 16 && code.bytes().all(|b| b.is_ascii_hexdigit()) {
        return (0..8)
            .map(|i| u8::from_str_radix(&code[2 * i..2 * i + 2], 16).map_err(|e| e.to_string()))
            .collect();
    }
    let d = digits(code, what, min, 8)?;
    let mut out: Vec<u8> = d.iter().map(|n| b'0' + n).collect();
    out.resize(8, 0xff);
    Ok(out)
}

/// Read a PIN/PUK/ADM value back as text (digits, or hex when not ASCII digits).
pub fn decode_code_value(bytes: &[u8]) -> String {
    let trimmed: Vec<u8> = bytes.iter().copied().take_while(|b| *b != 0xff).collect();
    if trimmed.iter().all(u8::is_ascii_digit) {
        String::from_utf8(trimmed).unwrap_or_default()
    } else {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A non-negative ASN.1 INTEGER in its minimal encoding.
pub fn uint(v: usize) -> Vec<u8> {
    let mut out: Vec<u8> = v
        .to_be_bytes()
        .into_iter()
        .skip_while(|b| *b == 0)
        .collect();
    if out.first().is_none_or(|b| b & 0x80 != 0) {
        out.insert(0, 0);
    }
    out
}

/// Read a small non-negative INTEGER.
pub fn decode_uint(bytes: &[u8]) -> Option<usize> {
    if bytes.is_empty() || bytes.len() > 4 {
        return None;
    }
    Some(bytes.iter().fold(0usize, |acc, b| (acc << 8) | *b as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iccid_both_ways() {
        assert_eq!(
            hex::encode(iccid_header("8944000000000000019").unwrap()),
            "8944000000000000019f"
        );
        assert_eq!(
            hex::encode(iccid_ef("8944000000000000019").unwrap()),
            "984400000000000010f9"
        );
        assert_eq!(
            decode_iccid_ef(&iccid_ef("89000123456789012341").unwrap()),
            "89000123456789012341"
        );
        assert_eq!(
            decode_iccid_header(&hex::decode("8944000000000007774f").unwrap()),
            "8944000000000007774"
        );
        assert!(iccid_ef("89440000000000000x9")
            .unwrap_err()
            .contains("digits"));
        assert!(iccid_ef("8944").unwrap_err().contains("18 to 20"));
    }

    #[test]
    fn imsi_and_acc() {
        assert_eq!(
            hex::encode(imsi_ef("001010000000001").unwrap()),
            "080910100000000010"
        );
        assert_eq!(
            hex::encode(imsi_ef("310260123456789").unwrap()),
            "083901621032547698"
        );
        // Even length: parity nibble 1 and an F filler.
        assert_eq!(
            hex::encode(imsi_ef("31026012345678").unwrap()),
            "0831016210325476f8"
        );
        for imsi in ["001010000000001", "31026012345678", "123456"] {
            assert_eq!(
                decode_imsi_ef(&imsi_ef(imsi).unwrap()).as_deref(),
                Some(imsi)
            );
        }
        assert_eq!(acc_ef("001010000000001").unwrap(), vec![0x00, 0x02]);
        assert_eq!(acc_ef("310260123456789").unwrap(), vec![0x02, 0x00]);
        assert_eq!(acc_ef("310260123456780").unwrap(), vec![0x00, 0x01]);
        assert!(imsi_ef("1234567890123456").is_err());
    }

    #[test]
    fn msisdn_records() {
        let r = msisdn_record("46708421488", 39).unwrap();
        assert_eq!(r.len(), 39);
        assert!(r[..25].iter().all(|b| *b == 0xff));
        assert_eq!(hex::encode(&r[25..]), "07916407481284f8ffffffffffff");
        assert_eq!(decode_msisdn_record(&r).as_deref(), Some("46708421488"));
        assert_eq!(decode_msisdn_record(&[0xff; 39]), None);
        assert!(msisdn_record("123", 10).is_err());
    }

    #[test]
    fn codes_and_nai() {
        assert_eq!(
            hex::encode(code_value("1234", "PIN1", 4, false).unwrap()),
            "31323334ffffffff"
        );
        assert_eq!(
            hex::encode(code_value("0102030405060708", "ADM1", 8, true).unwrap()),
            "0102030405060708"
        );
        assert!(code_value("12", "PIN1", 4, false).is_err());
        assert!(code_value("123456789", "PIN1", 4, false).is_err());
        assert_eq!(
            decode_code_value(&hex::decode("30303030ffffffff").unwrap()),
            "0000"
        );
        let t = nai_tlv("user@ims.example", "IMPI").unwrap();
        assert_eq!(decode_nai_tlv(&t).as_deref(), Some("user@ims.example"));
        assert!(nai_tlv("", "IMPI").is_err());
        assert_eq!(uint(9), vec![9]);
        assert_eq!(uint(0x81), vec![0, 0x81]);
        assert_eq!(uint(0), vec![0]);
        assert_eq!(decode_uint(&[0, 0x81]), Some(0x81));
    }
}
