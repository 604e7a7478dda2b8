//! Long IMS identities on all 18 TS.48 templates: a value that fits leaves
//! EF.IMPI / EF.IMPU as the template defines them; a longer one grows the
//! file (EF.IMPI's size, EF.IMPU's record length and size) and keeps every
//! other record's content in its record; the result re-parses, reads back
//! and round-trips. And the fast path gives the reference path's bytes for
//! any inputs.

mod common;

use std::sync::OnceLock;

use common::templates;
use proptest::prelude::*;
use simbatch_saip::package::{file_fcp, file_image, file_size, record_len, EF_IMPI, EF_IMPU};
use simbatch_saip::{personalise_package, personalise_reference, Inputs, Package};

/// The seed's identities (Simlessly generateByBatch example): 51 and 55 bytes as TLVs.
const SEED_IMPI: &str = "260036614799000@ims.mnc006.mcc260.3gppnetwork.org";
const SEED_IMPU: &str = "sip:260036614799000@ims.mnc006.mcc260.3gppnetwork.org";

fn parsed() -> &'static [(String, Package)] {
    static ALL: OnceLock<Vec<(String, Package)>> = OnceLock::new();
    ALL.get_or_init(|| {
        templates()
            .into_iter()
            .map(|(n, b)| {
                let p = Package::parse_template(&b).unwrap().0;
                (n, p)
            })
            .collect()
    })
}

fn inputs(impi: &str, impu: &str) -> Inputs {
    Inputs {
        iccid: "8944000000000000019".into(),
        imsi: "001010000000001".into(),
        ki: [7; 16],
        opc: Some([9; 16]),
        impi: Some(impi.into()),
        impu: Some(impu.into()),
        ..Default::default()
    }
}

/// A text of `n` bytes that looks like an identity.
fn ident(prefix: &str, n: usize) -> String {
    let mut s = prefix.to_owned();
    while s.len() < n {
        s.push(char::from(b'a' + (s.len() % 26) as u8));
    }
    s
}

struct Isim<'a> {
    impi: &'a simbatch_saip::tlv::Tlv,
    impu: &'a simbatch_saip::tlv::Tlv,
}

fn isim(p: &Package) -> Isim<'_> {
    Isim {
        impi: p.file(EF_IMPI).unwrap().unwrap(),
        impu: p.file(EF_IMPU).unwrap().unwrap(),
    }
}

#[test]
fn values_that_fit_keep_the_files_as_they_are() {
    assert_eq!(parsed().len(), 18);
    for (name, t) in parsed() {
        let before = isim(t);
        // Exactly the template's room: 32 bytes of EF.IMPI, 64-byte IMPU records.
        let (impi, impu) = (ident("a@", 30), ident("sip:b@", 62));
        let out = personalise_package(t, &inputs(&impi, &impu)).unwrap();
        let p = Package::parse(&out).unwrap();
        assert_eq!(p.encode(), out, "{name}: round trip");
        let after = isim(&p);
        for (b, a) in [(before.impi, after.impi), (before.impu, after.impu)] {
            assert_eq!(
                file_fcp(b).unwrap().encode(),
                file_fcp(a).unwrap().encode(),
                "{name}: FCP unchanged"
            );
        }
        let v = p.values();
        assert_eq!((v.impi.unwrap(), v.impu.unwrap()), (impi, impu), "{name}");
    }
}

#[test]
fn long_values_grow_the_files() {
    for (name, t) in parsed() {
        let before = isim(t);
        let (old_size, old_rec) = (
            file_size(before.impi).unwrap(),
            record_len(before.impu).unwrap(),
        );
        let records = file_size(before.impu).unwrap() / old_rec;
        assert_eq!((old_size, old_rec, records), (32, 64, 3), "{name}");
        for (impi_len, impu_len) in [(33, 65), (51, 55), (90, 101), (127, 127)] {
            let (impi, impu) = (ident("i@", impi_len), ident("sip:u@", impu_len));
            let out = personalise_package(t, &inputs(&impi, &impu)).unwrap();
            let p = Package::parse(&out).unwrap();
            assert_eq!(p.encode(), out, "{name}: round trip");
            let v = p.values();
            assert_eq!((v.impi, v.impu), (Some(impi), Some(impu)), "{name}");
            let after = isim(&p);
            // EF.IMPI: exactly the TLV's length, or the old size if it fitted.
            assert_eq!(
                file_size(after.impi),
                Some((impi_len + 2).max(32)),
                "{name}"
            );
            // EF.IMPU: records of the TLV's length (or 64), as many as before.
            let rec = (impu_len + 2).max(64);
            assert_eq!(record_len(after.impu), Some(rec), "{name}");
            assert_eq!(file_size(after.impu), Some(rec * records), "{name}");
            // Records 2 and 3 keep their content at the start of their record.
            let old = file_image(before.impu, old_rec * records);
            let new = file_image(after.impu, rec * records);
            for r in 1..records {
                let (o, n) = (&old[r * old_rec..][..old_rec], &new[r * rec..][..rec]);
                assert_eq!(&n[..old_rec], o, "{name}: record {}", r + 1);
                assert!(n[old_rec..].iter().all(|b| *b == 0xff), "{name}");
            }
            // Every other FCP byte is the template's.
            for (b, a) in [(before.impi, after.impi), (before.impu, after.impu)] {
                let (fb, fa) = (file_fcp(b).unwrap(), file_fcp(a).unwrap());
                for (cb, ca) in fb.children().iter().zip(fa.children()) {
                    if cb.tag != [0x80] && cb.tag != [0x82] {
                        assert_eq!(cb, ca, "{name}");
                    }
                }
                let d = fa.child(&[0x82]).unwrap().bytes().unwrap();
                let d0 = fb.child(&[0x82]).unwrap().bytes().unwrap();
                assert_eq!(d[..2], d0[..2], "{name}: descriptor kind unchanged");
            }
            // Every element but PE-ISIM is what short values give.
            let short = personalise_package(t, &inputs("s@x", "sip:s@x")).unwrap();
            let short = Package::parse(&short).unwrap();
            for (a, b) in p.elements().iter().zip(short.elements()) {
                if a.tag != [0xb5] {
                    assert_eq!(a, b, "{name}");
                }
            }
        }
    }
}

#[test]
fn the_simlessly_seed_identities_fit_after_growth() {
    for (name, t) in parsed() {
        let out = personalise_package(t, &inputs(SEED_IMPI, SEED_IMPU)).unwrap();
        let p = Package::parse(&out).unwrap();
        let after = isim(&p);
        assert_eq!(file_size(after.impi), Some(51), "{name}: EF.IMPI grown");
        assert_eq!(record_len(after.impu), Some(64), "{name}: 55 bytes fit");
        let v = p.values();
        assert_eq!(v.impi.as_deref(), Some(SEED_IMPI));
        assert_eq!(v.impu.as_deref(), Some(SEED_IMPU));
    }
}

#[test]
fn values_longer_than_any_file_are_refused() {
    let (_, t) = &parsed()[0];
    for (impi, impu, field) in [
        ("x".repeat(128), "sip:a".to_owned(), "impi"),
        ("a@b".to_owned(), ident("sip:", 200), "impu"),
    ] {
        let e = personalise_package(t, &inputs(&impi, &impu)).unwrap_err();
        assert_eq!((e.code(), e.field()), ("invalid_value", Some(field)));
        assert!(e.to_string().contains("1 to 127 bytes"), "{e}");
    }
}

/// Optional text of printable ASCII, `1..=max` bytes.
fn text(max: usize) -> impl Strategy<Value = Option<String>> {
    proptest::option::of(proptest::string::string_regex(&format!("[ -~]{{1,{max}}}")).unwrap())
}

fn digits(min: usize, max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[0-9]{{{min},{max}}}")).unwrap()
}

prop_compose! {
    fn any_inputs()(
        iccid in digits(18, 20),
        imsi in digits(6, 15),
        ki in any::<[u8; 16]>(),
        opc in proptest::option::of(any::<[u8; 16]>()),
        msisdn in proptest::option::of(digits(1, 20)),
        impi in text(140),
        impu in text(140),
        pin1 in proptest::option::of(digits(3, 9)),
        puk1 in proptest::option::of(digits(8, 8)),
        pin2 in proptest::option::of(digits(4, 8)),
        adm1 in proptest::option::of(digits(8, 8)),
    ) -> Inputs {
        Inputs { iccid, imsi, ki, opc, msisdn, impi, impu, pin1, puk1, pin2, puk2: None, adm1 }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Same bytes, or the same error, from both paths.
    #[test]
    fn fast_path_equals_reference(which in 0usize..18, i in any_inputs()) {
        let (name, t) = &parsed()[which];
        let fast = personalise_package(t, &i);
        let reference = personalise_reference(t, &i);
        match (&fast, &reference) {
            (Ok(a), Ok(b)) => prop_assert!(a == b, "{}: outputs differ", name),
            (Err(a), Err(b)) => prop_assert_eq!((a.code(), a.field()), (b.code(), b.field())),
            _ => prop_assert!(false, "{}: {:?} vs {:?}", name, fast.is_ok(), reference.is_ok()),
        }
        if let Ok(out) = fast {
            let p = Package::parse(&out).unwrap();
            prop_assert_eq!(p.encode(), out);
            let v = p.values();
            for (read, given) in [(&v.impi, &i.impi), (&v.impu, &i.impu), (&v.msisdn, &i.msisdn)] {
                if given.is_some() {
                    prop_assert_eq!(read, given);
                }
            }
        }
    }
}
