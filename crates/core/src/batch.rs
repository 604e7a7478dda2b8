//! Batch and item states, batch modes, and the counters that make batch status O(1).

use serde::{Deserialize, Serialize};

/// How a batch's items are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BatchMode {
    /// Items run concurrently (ECC `single`); one ICCID's items still apply in order.
    #[default]
    Parallel,
    /// An ICCID's items run one after another; a failure stops that ICCID's rest (ECC `multi`).
    SequentialPerIccid,
}

impl BatchMode {
    /// Wire name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Parallel => "parallel",
            Self::SequentialPerIccid => "sequential_per_iccid",
        }
    }
    /// Parse a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Parallel, Self::SequentialPerIccid]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

/// Batch status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BatchStatus {
    /// Items are still being received and checked.
    Initialising,
    /// Items are being executed.
    Processing,
    /// Every item completed.
    Completed,
    /// Every item is terminal and at least one was rejected, failed or canceled.
    PartiallyCompleted,
    /// Cancelled by the client; unclaimed items were canceled.
    Cancelled,
}

impl BatchStatus {
    /// All states, for metrics and filters.
    pub const ALL: [BatchStatus; 5] = [
        Self::Initialising,
        Self::Processing,
        Self::Completed,
        Self::PartiallyCompleted,
        Self::Cancelled,
    ];

    /// Wire name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initialising => "INITIALISING",
            Self::Processing => "PROCESSING",
            Self::Completed => "COMPLETED",
            Self::PartiallyCompleted => "PARTIALLY_COMPLETED",
            Self::Cancelled => "CANCELLED",
        }
    }
    /// Parse a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
    /// Whether no more work will happen.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::PartiallyCompleted | Self::Cancelled
        )
    }
    /// The outbox event emitted when a batch reaches this terminal state.
    pub fn event_type(self) -> Option<&'static str> {
        match self {
            Self::Completed => Some("batch.completed"),
            Self::PartiallyCompleted => Some("batch.partially_completed"),
            Self::Cancelled => Some("batch.cancelled"),
            _ => None,
        }
    }
}

/// Item status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ItemStatus {
    /// Valid, waiting to run.
    Approved,
    /// Refused at submission (bad input); never runs.
    Rejected,
    /// Claimed by a worker.
    Processing,
    /// Applied.
    Completed,
    /// Ran and failed (e.g. `illegal_status`).
    Failed,
    /// Never ran: the batch was cancelled or an earlier item for the ICCID failed.
    Canceled,
}

impl ItemStatus {
    /// All states.
    pub const ALL: [ItemStatus; 6] = [
        Self::Approved,
        Self::Rejected,
        Self::Processing,
        Self::Completed,
        Self::Failed,
        Self::Canceled,
    ];

    /// Wire name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approved => "APPROVED",
            Self::Rejected => "REJECTED",
            Self::Processing => "PROCESSING",
            Self::Completed => "COMPLETED",
            Self::Failed => "FAILED",
            Self::Canceled => "CANCELED",
        }
    }
    /// Parse a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
    /// Whether the item will not change again.
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Approved | Self::Processing)
    }
}

/// Per-state item counts, kept on the batch row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Counts {
    /// All items, rejected ones included.
    pub total: i64,
    /// Waiting to run.
    pub approved: i64,
    /// Refused at submission.
    pub rejected: i64,
    /// Running now.
    pub processing: i64,
    /// Applied.
    pub completed: i64,
    /// Ran and failed.
    pub failed: i64,
    /// Never ran.
    pub canceled: i64,
}

impl Counts {
    /// Whether every item is terminal.
    pub fn all_terminal(&self) -> bool {
        self.approved == 0 && self.processing == 0
    }

    /// The terminal status a batch with these counts ends in (when not cancelled).
    pub fn final_status(&self) -> BatchStatus {
        if self.rejected == 0 && self.failed == 0 && self.canceled == 0 {
            BatchStatus::Completed
        } else {
            BatchStatus::PartiallyCompleted
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_status_rules() {
        let mut c = Counts {
            total: 2,
            completed: 2,
            ..Default::default()
        };
        assert_eq!(c.final_status(), BatchStatus::Completed);
        c.completed = 1;
        c.rejected = 1;
        assert_eq!(c.final_status(), BatchStatus::PartiallyCompleted);
        assert!(c.all_terminal());
        c.processing = 1;
        assert!(!c.all_terminal());
    }

    #[test]
    fn names_roundtrip() {
        for s in BatchStatus::ALL {
            assert_eq!(BatchStatus::parse(s.as_str()), Some(s));
        }
        for s in ItemStatus::ALL {
            assert_eq!(ItemStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(
            BatchMode::parse("sequential_per_iccid"),
            Some(BatchMode::SequentialPerIccid)
        );
        assert_eq!(BatchStatus::Cancelled.event_type(), Some("batch.cancelled"));
    }
}
