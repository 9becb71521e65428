//! An uplink's health from its probes: a fresh uplink is usable at its
//! first answer; after a failure it takes `failures` answers in a row, and
//! `failures` unanswered probes in a row make it unhealthy.

#[derive(Debug, Default)]
pub struct Health {
    ok_streak: u32,
    fail_streak: u32,
    pub healthy: bool,
    /// Healthy at least once: from then on, recovering takes `failures`
    /// answers in a row.
    ever_healthy: bool,
}

impl Health {
    /// One probe's outcome; `need` is the probe's `failures`.
    pub fn result(&mut self, ok: bool, need: u32, uplink: &str) {
        let need = need.max(1);
        if ok {
            self.ok_streak += 1;
            self.fail_streak = 0;
            // The first answer makes a fresh uplink usable (its first probe
            // may have gone unanswered while the gateway's MAC was being
            // resolved); after a failure it takes `failures` answers in a row.
            if !self.healthy && (self.ok_streak >= need || !self.ever_healthy) {
                self.set(true, uplink);
            }
        } else {
            self.fail_streak += 1;
            self.ok_streak = 0;
            if self.healthy && self.fail_streak >= need {
                self.set(false, uplink);
            }
        }
    }

    /// Nothing to probe with (link down, no address): unhealthy at once.
    pub fn down(&mut self, need: u32, uplink: &str) {
        self.fail_streak = self.fail_streak.max(need);
        self.ok_streak = 0;
        self.set(false, uplink);
    }

    fn set(&mut self, h: bool, uplink: &str) {
        self.ever_healthy |= h;
        if self.healthy != h {
            tracing::info!(uplink = %uplink, healthy = h, "uplink health changed");
        }
        self.healthy = h;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_answer_then_streaks() {
        let mut h = Health::default();
        h.result(true, 3, "u");
        assert!(h.healthy);
        h.result(false, 3, "u");
        h.result(false, 3, "u");
        assert!(h.healthy);
        h.result(false, 3, "u");
        assert!(!h.healthy);
        h.result(true, 3, "u");
        h.result(true, 3, "u");
        assert!(!h.healthy);
        h.result(true, 3, "u");
        assert!(h.healthy);
        h.down(3, "u");
        assert!(!h.healthy);
    }
}
