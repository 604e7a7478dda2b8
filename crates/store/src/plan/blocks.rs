//! Event blocks: the events of one tenant and type that one transaction
//! writes, kept together as one outbox row.
//!
//! A block's text has one line per event, `event_id TAB payload NEWLINE`.
//! Payloads are compact JSON, which never holds a raw newline (JSON escapes
//! it inside strings, and compact output puts none between tokens), so a
//! line always ends where its event does.

use std::collections::HashMap;

use super::EventWrite;
use crate::{Result, StoreError};

/// Most events in one block. A 1,000-item chunk writes one block per type.
pub const MAX_BLOCK_EVENTS: usize = 1024;

/// Events of one tenant and type, in the order they were planned.
#[derive(Debug)]
pub struct EventBlock<'a> {
    /// Owner of every event in the block.
    pub tenant_id: &'a str,
    /// Type of every event in the block.
    pub kind: &'static str,
    /// The events, in order.
    pub events: Vec<&'a EventWrite>,
}

impl EventBlock<'_> {
    /// The block's stored text: a line per event.
    pub fn text(&self) -> String {
        let len = self
            .events
            .iter()
            .map(|e| e.event_id.len() + e.data.len() + 2)
            .sum();
        let mut text = String::with_capacity(len);
        for e in &self.events {
            text.push_str(&e.event_id);
            text.push('\t');
            if e.data.contains('\n') {
                // Only whitespace between JSON tokens can be a raw newline.
                text.push_str(&e.data.replace('\n', " "));
            } else {
                text.push_str(&e.data);
            }
            text.push('\n');
        }
        text
    }
}

/// Group `events` into blocks of one tenant and type, of at most `max`
/// events each, in the order each group first appears.
///
/// Within a type the planned order is kept; across types it is not. A chunk
/// completion plans its batch events last, so they stay after the item
/// events of the same transaction.
pub fn event_blocks(events: &[EventWrite], max: usize) -> Vec<EventBlock<'_>> {
    let max = max.max(1);
    let mut blocks: Vec<EventBlock<'_>> = Vec::new();
    let mut open: HashMap<(&str, &str), usize> = HashMap::new();
    for e in events {
        let key = (e.tenant_id.as_str(), e.kind);
        let slot = match open.get(&key) {
            Some(&i) if blocks[i].events.len() < max => i,
            _ => {
                blocks.push(EventBlock {
                    tenant_id: &e.tenant_id,
                    kind: e.kind,
                    events: Vec::new(),
                });
                open.insert(key, blocks.len() - 1);
                blocks.len() - 1
            }
        };
        blocks[slot].events.push(e);
    }
    blocks
}

/// A stored block's text, split into its events without copying.
#[derive(Debug)]
pub struct BlockLines {
    text: String,
    /// Byte offset where each line starts, and one past the last line's end.
    starts: Vec<usize>,
}

impl BlockLines {
    /// Split `text`, which must hold exactly `count` lines.
    pub fn parse(text: String, count: i64) -> Result<Self> {
        let mut starts = Vec::with_capacity(usize::try_from(count).unwrap_or(0) + 1);
        starts.push(0);
        for (i, b) in text.bytes().enumerate() {
            if b == b'\n' {
                starts.push(i + 1);
            }
        }
        if starts.last() != Some(&text.len()) || i64::try_from(starts.len() - 1) != Ok(count) {
            return Err(StoreError::Corrupt(format!(
                "outbox block holds {} complete lines, expected {count}",
                starts.len() - 1
            )));
        }
        Ok(Self { text, starts })
    }

    /// How many events the block holds.
    pub fn len(&self) -> usize {
        self.starts.len() - 1
    }

    /// Whether the block holds no event.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Event `i`: its id and its payload text.
    pub fn get(&self, i: usize) -> Result<(&str, &str)> {
        let (Some(&start), Some(&end)) = (self.starts.get(i), self.starts.get(i + 1)) else {
            return Err(StoreError::Corrupt(format!(
                "outbox block has no event {i} of {}",
                self.len()
            )));
        };
        let line = &self.text[start..end - 1];
        line.split_once('\t')
            .ok_or_else(|| StoreError::Corrupt("outbox block line without a tab".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn ev(tenant: &str, kind: &'static str, n: i64) -> EventWrite {
        EventWrite::new(tenant, kind, json!({ "n": n }))
    }

    fn ns(b: &EventBlock<'_>) -> Vec<String> {
        b.events.iter().map(|e| e.data.clone()).collect()
    }

    #[test]
    fn groups_by_tenant_and_type_in_order_of_first_appearance() {
        let events = vec![
            ev("a", "order.completed", 1),
            ev("a", "sim.status_changed", 1),
            ev("b", "order.completed", 2),
            ev("a", "order.completed", 3),
            ev("a", "batch.completed", 4),
        ];
        let blocks = event_blocks(&events, 10);
        let keys: Vec<_> = blocks.iter().map(|b| (b.tenant_id, b.kind)).collect();
        assert_eq!(
            keys,
            [
                ("a", "order.completed"),
                ("a", "sim.status_changed"),
                ("b", "order.completed"),
                ("a", "batch.completed")
            ]
        );
        assert_eq!(ns(&blocks[0]), [r#"{"n":1}"#, r#"{"n":3}"#]);
    }

    #[test]
    fn a_full_block_starts_another() {
        let events: Vec<_> = (0..5).map(|n| ev("a", "order.completed", n)).collect();
        let sizes: Vec<_> = event_blocks(&events, 2)
            .iter()
            .map(|b| b.events.len())
            .collect();
        assert_eq!(sizes, [2, 2, 1]);
        assert!(event_blocks(&[], 2).is_empty());
    }

    #[test]
    fn text_reads_back_line_by_line() {
        let mut odd = ev("a", "x", 0);
        odd.data = "{\n\"k\":\t\"v\"}".into();
        let events = [ev("a", "x", 1), odd];
        let blocks = event_blocks(&events, 10);
        let lines = BlockLines::parse(blocks[0].text(), 2).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines.get(0).unwrap(),
            (events[0].event_id.as_str(), r#"{"n":1}"#)
        );
        let (id, data) = lines.get(1).unwrap();
        assert_eq!(id, events[1].event_id);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(data).unwrap(),
            json!({"k": "v"})
        );
        assert!(lines.get(2).is_err());
    }

    #[test]
    fn a_block_whose_lines_do_not_match_its_count_is_corrupt() {
        assert!(BlockLines::parse("a\t{}\n".into(), 2).is_err());
        assert!(BlockLines::parse("a\t{}\nb\t{}".into(), 2).is_err());
        assert!(BlockLines::parse(String::new(), 0).unwrap().is_empty());
        let no_tab = BlockLines::parse("a{}\n".into(), 1).unwrap();
        assert!(no_tab.get(0).is_err());
    }

    proptest! {
        #[test]
        fn any_payload_round_trips(values in proptest::collection::vec(any::<String>(), 0..20)) {
            let events: Vec<_> = values
                .iter()
                .map(|v| EventWrite::new("t", "k", json!({ "v": v })))
                .collect();
            let blocks = event_blocks(&events, MAX_BLOCK_EVENTS);
            let text = blocks.first().map(EventBlock::text).unwrap_or_default();
            let lines = BlockLines::parse(text, events.len() as i64).unwrap();
            for (i, e) in events.iter().enumerate() {
                let (id, data) = lines.get(i).unwrap();
                prop_assert_eq!(id, e.event_id.as_str());
                let back: serde_json::Value = serde_json::from_str(data).unwrap();
                prop_assert_eq!(&back["v"], &json!(values[i]));
            }
        }
    }
}
