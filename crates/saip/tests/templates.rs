//! The TS.48 templates in `shared/profile-templates/` and the golden vectors
//! in `shared/test-vectors/saip/`: byte-identical personalisation, read-back
//! and decode/encode round trips for all 18 templates.

mod common;

use common::{h16, shared, templates};
use serde_json::Value;
use sha2::{Digest, Sha256};
use simbatch_saip::{personalise, personalise_reference, Inputs, Package, PersonaliseError};

#[test]
fn golden_vectors_byte_for_byte() {
    let dir = shared().join("test-vectors/saip");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let vectors = manifest["vectors"].as_array().unwrap();
    assert_eq!(vectors.len(), 5);
    for v in vectors {
        let s = |k: &str| v[k].as_str().unwrap().to_owned();
        let template =
            std::fs::read(shared().join("profile-templates").join(s("template"))).unwrap();
        let expected = std::fs::read(dir.join(s("expected"))).unwrap();
        assert_eq!(hex::encode(Sha256::digest(&expected)), s("sha256"));
        let inputs = Inputs {
            iccid: s("iccid"),
            imsi: s("imsi"),
            ki: h16(&s("ki")),
            opc: Some(h16(&s("opc"))),
            ..Default::default()
        };
        // The fast path (patching bytes) and the reference (editing a tree).
        let (parsed, _) = Package::parse_template(&template).unwrap();
        let reference = personalise_reference(&parsed, &inputs).unwrap();
        for (how, out) in [
            ("fast", personalise(&template, &inputs).unwrap()),
            ("reference", reference),
        ] {
            assert_eq!(out.len(), expected.len(), "{how}: {}", s("expected"));
            if let Some(i) = out.iter().zip(&expected).position(|(a, b)| a != b) {
                panic!("{how}: {}: first difference at byte {i}", s("expected"));
            }
        }
    }
}

#[test]
fn all_templates_roundtrip_and_check() {
    let all = templates();
    assert_eq!(all.len(), 18);
    for (name, bytes) in &all {
        let (p, summary) = Package::parse_template(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(p.encode(), *bytes, "{name} must re-encode byte for byte");
        assert_eq!(summary.iccid.len(), 20, "{name}");
        assert_eq!(
            v_iccid(&p),
            summary.iccid,
            "{name}: header and EF.ICCID agree"
        );
        assert_eq!(summary.aka_parameters, 2, "{name}");
        assert!(
            summary.has_msisdn && summary.has_impi && summary.has_impu,
            "{name}"
        );
        let v = p.values();
        assert_eq!(v.imsi.as_deref(), Some("001010123456063"), "{name}");
        assert_eq!(v.pins.first(), Some(&(1, "0000".to_owned())), "{name}");
    }
}

fn v_iccid(p: &Package) -> String {
    p.values().ef_iccid.unwrap()
}

fn full_inputs(n: u32) -> Inputs {
    Inputs {
        iccid: format!("89882{n:014}"),
        imsi: format!("99999{n:010}"),
        ki: [n as u8; 16],
        opc: Some([0xa5 ^ n as u8; 16]),
        msisdn: Some(format!("4670{n:07}")),
        impi: Some(format!("{n:04}@ims.example.org")),
        impu: Some(format!("sip:+4670{n:07}@ims.mnc999.mcc999.3gppnetwork.org")),
        pin1: Some("1234".into()),
        puk1: Some("12345678".into()),
        pin2: Some("98765".into()),
        puk2: Some("87654321".into()),
        adm1: Some("0102030405060708".into()),
    }
}

#[test]
fn all_templates_personalise_and_read_back() {
    for (k, (name, bytes)) in templates().iter().enumerate() {
        let inputs = full_inputs(k as u32 + 1);
        let out = personalise(bytes, &inputs).unwrap_or_else(|e| panic!("{name}: {e}"));
        let p = Package::parse(&out).unwrap();
        assert_eq!(p.encode(), out, "{name}: personalised package round-trips");
        let v = p.values();
        assert_eq!(v.header_iccid, inputs.iccid, "{name}");
        assert_eq!(v.ef_iccid.as_deref(), Some(inputs.iccid.as_str()), "{name}");
        assert_eq!(v.imsi.as_deref(), Some(inputs.imsi.as_str()), "{name}");
        let last = inputs.imsi.as_bytes().last().unwrap() - b'0';
        assert_eq!(v.acc, Some((1u16 << last).to_be_bytes().to_vec()), "{name}");
        assert_eq!(v.aka.len(), 2);
        assert!(v
            .aka
            .iter()
            .all(|(ki, opc)| ki[..] == inputs.ki && opc[..] == inputs.opc.unwrap()));
        assert_eq!(v.msisdn, inputs.msisdn, "{name}");
        assert_eq!(v.impi, inputs.impi, "{name}");
        assert_eq!(v.impu, inputs.impu, "{name}");
        assert!(v.pins.contains(&(0x01, "1234".into())), "{name}");
        assert!(
            v.pins.contains(&(0x0a, "0102030405060708".into())),
            "{name}"
        );
        assert!(v
            .pins
            .iter()
            .filter(|(r, _)| *r == 0x81)
            .all(|(_, val)| val == "98765"));
        assert!(v.puks.contains(&(0x01, "12345678".into())), "{name}");
        assert!(v.puks.contains(&(0x81, "87654321".into())), "{name}");
        // Untouched codes stay (ADM2 = key reference 0B).
        assert!(v.pins.contains(&(0x0b, "66666666".into())), "{name}");
        // The other IMPU records are still there, at their positions.
        let impu = p.file(simbatch_saip::package::EF_IMPU).unwrap().unwrap();
        let kids: Vec<_> = impu.children().iter().map(|c| c.tag[0]).collect();
        assert_eq!(kids, vec![0xa1, 0x83, 0x82, 0x83, 0x82, 0x83], "{name}");
        let first = impu.children()[1].bytes().unwrap().len();
        let skip = impu.children()[2].bytes().unwrap();
        assert_eq!(first + *skip.last().unwrap() as usize, 64, "{name}");
    }
}

#[test]
fn only_the_value_bytes_change() {
    // The template's own values written back: the only bytes that change are
    // EF.ACC's, because the TS.48 template's ACC (0001) is not derived from
    // its IMSI's last digit (3 → 0008).
    let (_, bytes) = &templates()[0];
    let inputs = Inputs {
        iccid: "89000123456789012341".into(),
        imsi: "001010123456063".into(),
        ki: h16("000102030405060708090a0b0c0d0e0f"),
        opc: Some([0; 16]),
        ..Default::default()
    };
    let out = personalise(bytes, &inputs).unwrap();
    assert_eq!(out.len(), bytes.len());
    let diff: Vec<usize> = (0..out.len()).filter(|i| out[*i] != bytes[*i]).collect();
    assert_eq!(diff.len(), 1, "{diff:?}");
    let i = diff[0];
    assert_eq!(
        (&bytes[i - 3..=i], &out[i - 3..=i]),
        (&[0x83, 2, 0, 1][..], &[0x83, 2, 0, 8][..])
    );
}

#[test]
fn without_opc_the_template_value_stays() {
    let (_, bytes) = &templates()[3];
    let mut inputs = full_inputs(7);
    inputs.opc = None;
    let before = Package::parse(bytes).unwrap().values().aka;
    let after = Package::parse(&personalise(bytes, &inputs).unwrap())
        .unwrap()
        .values()
        .aka;
    for ((_, old_opc), (ki, opc)) in before.iter().zip(&after) {
        assert_eq!((ki.as_slice(), opc), (&inputs.ki[..], old_opc));
    }
}

#[test]
fn bad_inputs_name_their_field() {
    let (_, bytes) = &templates()[0];
    let base = full_inputs(1);
    let cases: Vec<(Inputs, &str)> = vec![
        (
            Inputs {
                iccid: "123".into(),
                ..base.clone()
            },
            "iccid",
        ),
        (
            Inputs {
                imsi: "31026A123".into(),
                ..base.clone()
            },
            "imsi",
        ),
        (
            Inputs {
                msisdn: Some("+46-70".into()),
                ..base.clone()
            },
            "msisdn",
        ),
        (
            Inputs {
                pin1: Some("12".into()),
                ..base.clone()
            },
            "pin1",
        ),
        (
            Inputs {
                puk2: Some("1234".into()),
                ..base.clone()
            },
            "puk2",
        ),
        (
            Inputs {
                adm1: Some("abc".into()),
                ..base.clone()
            },
            "adm1",
        ),
        // Longer than an `80` TLV with a one-byte length holds: no file
        // size can help. (Shorter ones grow the file: see growth.rs.)
        (
            Inputs {
                impi: Some("x".repeat(128)),
                ..base.clone()
            },
            "impi",
        ),
        (
            Inputs {
                impu: Some("sip:".to_owned() + &"\u{e9}".repeat(62)),
                ..base.clone()
            },
            "impu",
        ),
    ];
    for (inputs, field) in cases {
        let e = personalise(bytes, &inputs).unwrap_err();
        assert_eq!(e.field(), Some(field), "{e}");
        assert_eq!(e.code(), "invalid_value");
    }
    let e = personalise(b"not a package", &base).unwrap_err();
    assert!(matches!(e, PersonaliseError::Template(_)));
    assert_eq!(e.code(), "template_invalid");
}

mod damaged {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        /// A damaged template (bytes changed, cut or inserted anywhere) is
        /// refused or personalised, never a panic; what parses re-encodes
        /// to the same bytes.
        #[test]
        fn damaged_templates_never_panic(
            which in 0usize..18,
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
        ) {
            let (_, mut bytes) = templates().swap_remove(which);
            for (at, byte, kind) in edits {
                let i = at.index(bytes.len());
                match kind {
                    0 => bytes[i] = byte,
                    1 => { bytes.remove(i); }
                    _ => bytes.insert(i, byte),
                }
            }
            if let Ok(p) = Package::parse(&bytes) {
                prop_assert_eq!(p.encode(), bytes.clone());
                let _ = p.values();
            }
            let _ = personalise(&bytes, &full_inputs(3));
        }
    }
}
