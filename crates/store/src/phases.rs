//! Where a store call's time goes, logged at debug level
//! (`SIMBATCH_LOG=simbatch_store=debug`): the hot paths name their steps
//! and the log line lists the milliseconds each one took.

use std::time::Instant;

/// Time charged to named steps, in the order they first ran.
#[derive(Debug)]
pub(crate) struct Phases {
    last: Instant,
    spent: Vec<(&'static str, f64)>,
}

impl Phases {
    /// Start timing now.
    pub fn start() -> Self {
        Self {
            last: Instant::now(),
            spent: Vec::with_capacity(12),
        }
    }

    /// Charge the time since the previous mark (or the start) to `step`;
    /// a step marked again (one per part of a chunk) adds up.
    pub fn mark(&mut self, step: &'static str) {
        let now = Instant::now();
        let ms = (now - self.last).as_secs_f64() * 1e3;
        self.last = now;
        match self.spent.iter_mut().find(|(s, _)| *s == step) {
            Some((_, total)) => *total += ms,
            None => self.spent.push((step, ms)),
        }
    }

    /// Log the steps of `call` over `items` items.
    pub fn log(&self, call: &'static str, items: usize) {
        tracing::debug!(call, items, phases_ms = ?self.spent, "phases");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_keep_their_order_and_repeated_steps_add_up() {
        let mut p = Phases::start();
        p.mark("pick");
        std::thread::sleep(std::time::Duration::from_millis(2));
        p.mark("exec");
        p.mark("pick");
        let names: Vec<&str> = p.spent.iter().map(|(s, _)| *s).collect();
        assert_eq!(names, ["pick", "exec"]);
        assert!(p.spent[1].1 >= 2.0, "{:?}", p.spent);
        assert!(p.spent.iter().all(|(_, ms)| *ms >= 0.0));
    }
}
