//! Writing a value into a file definition, and growing the file when the
//! value needs more room than the template gave it.
//!
//! A file field is its createFCP (`A1`) followed by fill instructions:
//! fillFileContent (`83`, bytes written at the current offset) and
//! fillFileOffset (`82`, bytes skipped). Personalisation writes at offset 0.
//!
//! Growing, as an SM-DP+ back end does for long IMS identities:
//!
//! - a transparent file (EF.IMPI) gets a larger file size (FCP `80`);
//! - a linear fixed file (EF.IMPU) gets a larger record length (bytes 3–4
//!   of the file descriptor, FCP `82`) and a file size of as many records of
//!   the new length; the content of every record keeps its offset within
//!   its record, so the fill offsets between records are recomputed.
//!
//! A value that fits never changes the file's FCP.

use crate::encoding as enc;
use crate::package::{self, FileRef};
use crate::tlv::Tlv;

/// Longest record a linear fixed file can have: one READ RECORD returns at
/// most 255 bytes (ETSI TS 102 221).
pub const MAX_RECORD_LEN: usize = 255;
/// Largest transparent file: the FCP's file size is two bytes here.
pub const MAX_FILE_SIZE: usize = 0xffff;

/// Why a value could not be written into a file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum WriteError {
    /// The value does not fit, even grown: the input's fault.
    TooLong(String),
    /// The file's layout is not one this crate writes into: the template's.
    Layout(String),
}

fn is_content(t: &Tlv) -> bool {
    t.tag == [0x83] || t.tag == [0x82]
}

/// Write `data` at offset 0 of a transparent file, growing its size when needed.
pub(crate) fn write_transparent(
    file: &mut Tlv,
    data: Vec<u8>,
    f: FileRef,
) -> Result<(), WriteError> {
    if let Some(size) = package::file_size(file) {
        if data.len() > size {
            grow_transparent(file, size, data.len(), f)?;
        }
    }
    let capacity = package::file_size(file).unwrap_or(data.len());
    write_leading(file, data, capacity, f)
}

/// Write `data` as record 1 of a linear fixed file, growing every record when needed.
pub(crate) fn write_record(file: &mut Tlv, data: Vec<u8>, f: FileRef) -> Result<(), WriteError> {
    if let Some(len) = package::record_len(file) {
        if data.len() > len {
            grow_records(file, len, data.len(), f)?;
        }
    }
    let capacity = package::record_len(file).unwrap_or(data.len());
    write_leading(file, data, capacity, f)
}

/// Give a transparent file of `size` bytes a size of `needed`. Only a file
/// whose content is at most one leading fill can grow: later content would
/// have to move.
fn grow_transparent(
    file: &mut Tlv,
    size: usize,
    needed: usize,
    f: FileRef,
) -> Result<(), WriteError> {
    if needed > MAX_FILE_SIZE {
        return Err(WriteError::TooLong(format!(
            "{} can grow to at most {MAX_FILE_SIZE} bytes, the value needs {needed}",
            f.name
        )));
    }
    let fills = file.children().iter().filter(|c| is_content(c)).count();
    if fills > 1 {
        return Err(WriteError::TooLong(format!(
            "{} holds at most {size} bytes and cannot grow (more content follows the value), the value needs {needed}",
            f.name
        )));
    }
    set_fcp_number(file, 0x80, needed, f)
}

/// Give a linear fixed file of `len`-byte records records of `needed` bytes.
fn grow_records(file: &mut Tlv, len: usize, needed: usize, f: FileRef) -> Result<(), WriteError> {
    if needed > MAX_RECORD_LEN {
        return Err(WriteError::TooLong(format!(
            "{} records can grow to at most {MAX_RECORD_LEN} bytes, the value needs {needed}",
            f.name
        )));
    }
    if len == 0 {
        return Err(WriteError::Layout(format!(
            "{} has a record length of 0",
            f.name
        )));
    }
    if let Some(size) = package::file_size(file) {
        if size % len != 0 {
            return Err(WriteError::Layout(format!(
                "{} has a size of {size} bytes, not a whole number of {len}-byte records",
                f.name
            )));
        }
        let grown = size / len * needed;
        if grown > MAX_FILE_SIZE {
            return Err(WriteError::TooLong(format!(
                "{} cannot grow to {} records of {needed} bytes (at most {MAX_FILE_SIZE} bytes in all)",
                f.name,
                size / len
            )));
        }
        set_fcp_number(file, 0x80, grown, f)?;
    }
    let descriptor = package::file_fcp_mut(file)
        .and_then(|fcp| fcp.child_mut(&[0x82]))
        .and_then(|d| d.bytes().map(<[u8]>::to_vec).map(|b| (d, b)));
    let Some((d, mut bytes)) = descriptor else {
        return Err(WriteError::Layout(format!(
            "{} has no file descriptor",
            f.name
        )));
    };
    bytes[2..4].copy_from_slice(&(needed as u16).to_be_bytes());
    d.set_bytes(bytes);
    relayout_records(file, len, needed);
    Ok(())
}

/// Set a number in the FCP (file size `80`), keeping at least its old width.
fn set_fcp_number(file: &mut Tlv, tag: u8, value: usize, f: FileRef) -> Result<(), WriteError> {
    let slot = package::file_fcp_mut(file)
        .and_then(|fcp| fcp.child_mut(&[tag]))
        .ok_or_else(|| WriteError::Layout(format!("{} has no FCP tag {tag:02X}", f.name)))?;
    let width = slot.bytes().map_or(0, <[u8]>::len);
    slot.set_bytes(be_number(value, width));
    Ok(())
}

/// `value` big-endian in at least `width` bytes (and as few as it needs beyond that).
fn be_number(value: usize, width: usize) -> Vec<u8> {
    let full = value.to_be_bytes();
    let needed = full
        .iter()
        .position(|b| *b != 0)
        .map_or(1, |i| full.len() - i);
    full[full.len() - needed.max(width).min(full.len())..].to_vec()
}

/// Move every record's content from `old`-byte to `new`-byte records: a fill
/// at offset `o` of record `r` goes to offset `o` of record `r` in the new
/// layout. A fill that runs over a record boundary is split at it. The fill
/// offsets (`82`) are rewritten to reach each fill's new position.
fn relayout_records(file: &mut Tlv, old: usize, new: usize) {
    let Some(kids) = file.children_mut() else {
        return;
    };
    let map = |p: usize| p / old * new + p % old;
    let mut out = Vec::with_capacity(kids.len() + 2);
    // Offsets in the old file and in the new one.
    let (mut pos, mut npos) = (0usize, 0usize);
    let mut skipped = false;
    for c in kids.drain(..) {
        if c.tag == [0x82] {
            pos += c.bytes().and_then(enc::decode_uint).unwrap_or(0);
            skipped = true;
            continue;
        }
        if c.tag != [0x83] {
            out.push(c);
            continue;
        }
        let data = c.bytes().unwrap_or_default();
        let single = data.len() <= old - pos % old;
        let mut rest = data;
        let mut pieces = Vec::new();
        while !rest.is_empty() {
            let take = rest.len().min(old - pos % old);
            let target = map(pos);
            if target > npos {
                pieces.push(Tlv::primitive(&[0x82], enc::uint(target - npos)));
            }
            pieces.push(Tlv::primitive(&[0x83], rest[..take].to_vec()));
            npos = target + take;
            pos += take;
            rest = &rest[take..];
        }
        if single && pieces.last().is_some() {
            // Keep the fill element itself (its own length encoding).
            pieces.pop();
            pieces.push(c.clone());
        }
        out.extend(pieces);
        skipped = false;
    }
    if skipped && map(pos) > npos {
        out.push(Tlv::primitive(&[0x82], enc::uint(map(pos) - npos)));
    }
    *kids = out;
}

/// Write `data` at offset 0 of a file field, keeping any later content where it was.
///
/// - No content yet: a fillFileContent is added after the FCP.
/// - A leading fillFileContent followed by a fillFileOffset: the content is
///   replaced and the offset adjusted so the next content starts where it did.
/// - A leading fillFileContent alone: replaced; a shorter value is padded with
///   `FF` to the old length, a longer one may grow up to `capacity`.
pub(crate) fn write_leading(
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
    let Some(i) = kids.iter().position(is_content) else {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::{EF_IMPI, EF_IMPU, EF_MSISDN};

    fn file(children: Vec<Tlv>) -> Tlv {
        file_with(vec![Tlv::primitive(&[0x83], vec![0x6f, 0x04])], children)
    }

    fn file_with(fcp: Vec<Tlv>, children: Vec<Tlv>) -> Tlv {
        let mut kids = vec![Tlv::constructed(&[0xa1], fcp)];
        kids.extend(children);
        Tlv::constructed(&[0xa4], kids)
    }

    fn content(t: &Tlv) -> Vec<(u8, Vec<u8>)> {
        t.children()[1..]
            .iter()
            .map(|c| (c.tag[0], c.bytes().unwrap().to_vec()))
            .collect()
    }

    /// A linear fixed file of `n` records of `len` bytes.
    fn records(len: u16, n: usize, children: Vec<Tlv>) -> Tlv {
        let mut d = vec![0x42, 0x21];
        d.extend(len.to_be_bytes());
        file_with(
            vec![
                Tlv::primitive(&[0x82], d),
                Tlv::primitive(&[0x83], vec![0x6f, 0x04]),
                Tlv::primitive(&[0x80], be_number(len as usize * n, 1)),
            ],
            children,
        )
    }

    fn p(tag: u8, b: Vec<u8>) -> Tlv {
        Tlv::primitive(&[tag], b)
    }

    #[test]
    fn writes_keep_later_content_in_place() {
        // 83 (5 bytes) + skip 3, then record 2: a shorter value moves the skip.
        let mut f = file(vec![
            p(0x83, vec![1; 5]),
            p(0x82, vec![3]),
            p(0x83, vec![2; 8]),
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
        let mut f = file(vec![p(0x83, vec![1; 6])]);
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
        let mut packed = file(vec![p(0x83, vec![1; 2]), p(0x83, vec![2; 2])]);
        assert!(matches!(
            write_leading(&mut packed, vec![0; 3], 4, EF_IMPU),
            Err(WriteError::TooLong(_))
        ));
        // A file that starts with an offset is a layout this crate refuses.
        let mut offset_first = file(vec![p(0x82, vec![4]), p(0x83, vec![2; 2])]);
        assert!(matches!(
            write_leading(&mut offset_first, vec![0; 2], 4, EF_IMPU),
            Err(WriteError::Layout(_))
        ));
    }

    #[test]
    fn numbers_keep_their_width() {
        assert_eq!(be_number(0x33, 1), vec![0x33]);
        assert_eq!(be_number(0x33, 2), vec![0x00, 0x33]);
        assert_eq!(be_number(0x183, 1), vec![0x01, 0x83]);
        assert_eq!(be_number(0, 1), vec![0x00]);
        assert_eq!(be_number(0xd8, 0), vec![0xd8]);
    }

    #[test]
    fn a_transparent_file_grows_its_size() {
        let fcp = vec![
            Tlv::primitive(&[0x83], vec![0x6f, 0x02]),
            Tlv::primitive(&[0x80], vec![0x20]),
        ];
        let mut f = file_with(fcp.clone(), vec![p(0x83, vec![1; 32])]);
        // A value that fits keeps the size.
        write_transparent(&mut f, vec![5; 20], EF_IMPI).unwrap();
        assert_eq!(package::file_size(&f), Some(32));
        assert_eq!(content(&f)[0].1.len(), 32);
        // One that does not grows the file to exactly its length.
        write_transparent(&mut f, vec![6; 51], EF_IMPI).unwrap();
        assert_eq!(package::file_size(&f), Some(51));
        assert_eq!(content(&f), vec![(0x83, vec![6; 51])]);
        // Past 255 bytes the size takes two bytes.
        write_transparent(&mut f, vec![7; 300], EF_IMPI).unwrap();
        let size = package::file_fcp(&f).unwrap().child(&[0x80]).unwrap();
        assert_eq!(size.bytes(), Some(&[0x01, 0x2c][..]));
        // Beyond the largest file, or with content after the value: refused.
        assert!(matches!(
            write_transparent(&mut f, vec![0; MAX_FILE_SIZE + 1], EF_IMPI),
            Err(WriteError::TooLong(m)) if m.contains("at most 65535")
        ));
        let mut two = file_with(
            fcp,
            vec![p(0x83, vec![1; 8]), p(0x82, vec![8]), p(0x83, vec![2; 16])],
        );
        assert!(matches!(
            write_transparent(&mut two, vec![0; 40], EF_IMPI),
            Err(WriteError::TooLong(m)) if m.contains("cannot grow")
        ));
        // An empty file gets its first content, grown.
        let mut empty = file_with(vec![Tlv::primitive(&[0x80], vec![0x04])], vec![]);
        write_transparent(&mut empty, vec![3; 6], EF_IMPI).unwrap();
        assert_eq!(package::file_size(&empty), Some(6));
        assert_eq!(content(&empty), vec![(0x83, vec![3; 6])]);
    }

    #[test]
    fn records_grow_and_keep_their_contents() {
        // 3 records of 8: record 1 (5 bytes), record 2 (8 bytes), record 3 (2 bytes).
        let mut f = records(
            8,
            3,
            vec![
                p(0x83, vec![1; 5]),
                p(0x82, vec![3]),
                p(0x83, vec![2; 8]),
                p(0x83, vec![3; 2]),
            ],
        );
        // Fits: nothing but record 1 changes.
        write_record(&mut f, vec![9; 8], EF_IMPU).unwrap();
        assert_eq!(package::record_len(&f), Some(8));
        assert_eq!(package::file_size(&f), Some(24));
        // Needs 11: every record becomes 11 bytes, contents keep their record.
        write_record(&mut f, vec![7; 11], EF_IMPU).unwrap();
        assert_eq!(package::record_len(&f), Some(11));
        assert_eq!(package::file_size(&f), Some(33));
        assert_eq!(
            content(&f),
            vec![
                (0x83, vec![7; 11]),
                (0x82, vec![0]),
                (0x83, vec![2; 8]),
                (0x82, vec![3]),
                (0x83, vec![3; 2]),
            ]
        );
        let d = package::file_fcp(&f).unwrap().child(&[0x82]).unwrap();
        assert_eq!(d.bytes(), Some(&[0x42, 0x21, 0x00, 0x0b][..]));
        // Past the longest record: refused.
        assert!(matches!(
            write_record(&mut f, vec![0; 256], EF_IMPU),
            Err(WriteError::TooLong(m)) if m.contains("at most 255")
        ));
    }

    #[test]
    fn a_fill_over_several_records_is_split() {
        // One fill writes records 1 and 2 of 4 bytes; a trailing offset skips record 3.
        let mut f = records(
            4,
            3,
            vec![p(0x83, vec![1, 2, 3, 4, 5, 6]), p(0x82, vec![6])],
        );
        write_record(&mut f, vec![8; 6], EF_IMPU).unwrap();
        assert_eq!(package::file_size(&f), Some(18));
        assert_eq!(
            content(&f),
            vec![
                (0x83, vec![8; 6]),
                (0x82, vec![0]),
                (0x83, vec![5, 6]),
                (0x82, vec![10]),
            ]
        );
    }

    #[test]
    fn odd_record_layouts_are_the_templates_fault() {
        let mut zero = records(0, 1, vec![]);
        assert!(matches!(
            write_record(&mut zero, vec![1; 3], EF_IMPU),
            Err(WriteError::Layout(_))
        ));
        let mut uneven = records(8, 3, vec![p(0x83, vec![1; 8])]);
        package::file_fcp_mut(&mut uneven)
            .unwrap()
            .child_mut(&[0x80])
            .unwrap()
            .set_bytes(vec![25]);
        assert!(matches!(
            write_record(&mut uneven, vec![1; 9], EF_IMPU),
            Err(WriteError::Layout(m)) if m.contains("whole number")
        ));
    }
}
