//! SIM lifecycle: the status machine, the ECC subscription state and the
//! transitions each operation asks for.

use serde::{Deserialize, Serialize};

/// The SIM status: INVENTORY → ACTIVATED ⇄ SUSPENDED → RETIRED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SimStatus {
    /// Loaded from the SIM vendor, never used.
    Inventory,
    /// In service.
    Activated,
    /// Temporarily out of service.
    Suspended,
    /// Permanently out of service; terminal.
    Retired,
}

impl SimStatus {
    /// Wire name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inventory => "INVENTORY",
            Self::Activated => "ACTIVATED",
            Self::Suspended => "SUSPENDED",
            Self::Retired => "RETIRED",
        }
    }

    /// Parse a stored or wire name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Inventory,
            Self::Activated,
            Self::Suspended,
            Self::Retired,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// A requested status change that the state machine refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IllegalTransition {
    /// The state the SIM is in.
    pub current: SimStatus,
    /// The state that was asked for.
    pub target: SimStatus,
}

/// Apply one of the four lifecycle verbs to `current`.
pub fn transition(current: SimStatus, target: SimStatus) -> Result<SimStatus, IllegalTransition> {
    use SimStatus::*;
    let legal = matches!(
        (current, target),
        (Inventory, Activated)
            | (Activated, Suspended)
            | (Suspended, Activated)
            | (Suspended, Retired)
    );
    if legal {
        Ok(target)
    } else {
        Err(IllegalTransition { current, target })
    }
}

/// ECC subscription state: BEFORE_FIRST_USE → IN_USE, never back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SubscriptionState {
    /// Created, not yet used.
    BeforeFirstUse,
    /// In use; final.
    InUse,
}

impl SubscriptionState {
    /// Wire name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BeforeFirstUse => "BEFORE_FIRST_USE",
            Self::InUse => "IN_USE",
        }
    }

    /// Parse a stored or wire name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::BeforeFirstUse, Self::InUse]
            .into_iter()
            .find(|v| v.as_str() == s)
    }

    /// Whether moving from `self` to `to` is allowed (only forward, and not to itself).
    pub fn can_move_to(self, to: Self) -> bool {
        matches!((self, to), (Self::BeforeFirstUse, Self::InUse))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use SimStatus::*;

    const ALL: [SimStatus; 4] = [Inventory, Activated, Suspended, Retired];

    #[test]
    fn legal_and_illegal_edges() {
        assert_eq!(transition(Inventory, Activated), Ok(Activated));
        assert_eq!(transition(Activated, Suspended), Ok(Suspended));
        assert_eq!(transition(Suspended, Activated), Ok(Activated));
        assert_eq!(transition(Suspended, Retired), Ok(Retired));
        assert!(
            transition(Activated, Retired).is_err(),
            "retire needs SUSPENDED first"
        );
        assert!(transition(Inventory, Suspended).is_err());
        assert!(transition(Activated, Activated).is_err());
        for t in ALL {
            assert!(transition(Retired, t).is_err(), "RETIRED is terminal");
        }
    }

    #[test]
    fn names_roundtrip() {
        for s in ALL {
            assert_eq!(SimStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(
            SubscriptionState::parse("IN_USE"),
            Some(SubscriptionState::InUse)
        );
        assert_eq!(SimStatus::parse("active"), None);
    }

    proptest! {
        /// Any sequence of requests keeps the machine inside its graph:
        /// INVENTORY is never re-entered, RETIRED is never left.
        #[test]
        fn random_walk_respects_graph(targets in proptest::collection::vec(0usize..4, 0..64)) {
            let mut state = Inventory;
            let mut left_inventory = false;
            for t in targets {
                let before = state;
                if let Ok(next) = transition(state, ALL[t]) {
                    prop_assert_ne!(before, Retired);
                    prop_assert_ne!(next, Inventory);
                    state = next;
                }
                if state != Inventory { left_inventory = true; }
                if left_inventory { prop_assert_ne!(state, Inventory); }
            }
        }

        #[test]
        fn subscription_state_never_goes_back(seq in proptest::collection::vec(any::<bool>(), 0..16)) {
            let mut s = SubscriptionState::BeforeFirstUse;
            let mut seen_in_use = false;
            for to_in_use in seq {
                let to = if to_in_use { SubscriptionState::InUse } else { SubscriptionState::BeforeFirstUse };
                if s.can_move_to(to) { s = to; }
                if s == SubscriptionState::InUse { seen_in_use = true; }
                if seen_in_use { prop_assert_eq!(s, SubscriptionState::InUse); }
            }
        }
    }
}
