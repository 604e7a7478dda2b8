//! SIMalliance/TCA interoperable profile packages (SAIP) for simbatch.
//!
//! A template is an unprotected profile package, DER: the sequence of
//! ProfileElements an SM-DP+ binds into a bound profile package. This crate:
//!
//! - decodes and re-encodes it byte for byte ([`tlv`]), so personalising
//!   changes only the bytes that hold the personal values;
//! - checks that a file is a profile package and that it has what
//!   personalisation writes to ([`Package::parse_template`]);
//! - personalises a copy with one subscriber's ICCID, IMSI, Ki, OPc and,
//!   where given and present, MSISDN, IMPI, IMPU and PIN/PUK/ADM codes
//!   ([`personalise`]), patching the template's bytes ([`patch`]) and
//!   growing a file a value does not fit ([`files`]); and reads them back
//!   ([`Package::values`]);
//! - derives OPc from OP ([`derive_opc`]).
//!
//! It is pure (no I/O) and CPU-bound; callers run it off async executors.

pub mod encoding;
pub mod files;
pub mod opc;
pub mod package;
pub mod patch;
pub mod personalise;
pub mod tlv;

pub use opc::derive_opc;
pub use package::{Package, PackageError, ProfileValues, TemplateSummary};
pub use personalise::{
    personalise, personalise_package, personalise_reference, Inputs, PersonaliseError,
};
