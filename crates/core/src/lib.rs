//! simbatch core: the domain model, pure and free of I/O.
//!
//! - [`ids`]: identifier newtypes that parse (ICCID, EID, IMSI, IMEI, MSISDN, Ki, OPc).
//! - [`activation`]: SGP.22 activation codes and matching IDs.
//! - [`lifecycle`]: the SIM status machine and the ECC subscription state.
//! - [`operation`]: the operation catalogue and the item parser.
//! - [`execute`]: applying an order to a SIM.
//! - [`profile`]: the SGP.22 profile lifecycle and the ES2+ rules.
//! - [`batch`]: batch and item states, modes and counters.

pub mod activation;
pub mod batch;
pub mod execute;
pub mod ids;
pub mod lifecycle;
pub mod operation;
pub mod profile;

pub use batch::{BatchMode, BatchStatus, Counts, ItemStatus};
pub use execute::{execute, Context, Failure, NewProfile, Outcome, Sim};
pub use ids::{Eid, Iccid, IdError, Imei, Imsi, Ki, Msisdn, Op, Opc, ValidationProfile};
pub use lifecycle::{SimStatus, SubscriptionState};
pub use operation::{parse_item, Operation, Order, ParsedItem, Rejection};
pub use profile::{ProfileEvent, ProfileState};
