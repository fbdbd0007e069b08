//! What swapoff, swapon and hibernate cycles did: one structured record per
//! event for report.json's `swap_events`, and its one-line text for the
//! summary (`Display`, unchanged from the text-only reports).

use serde::{Deserialize, Serialize};
use std::fmt;

/// What happened.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SwapEventKind {
    /// A swapoff started (`slots_in_use` slots to read back).
    SwapoffBegin,
    /// A swapoff finished (`ticks`, `entries_read_back`).
    SwapoffDone,
    /// A running swapoff failed (`reason`).
    SwapoffFailed,
    /// A swapoff was refused before it started (`reason`).
    SwapoffRefused,
    /// A device was swapped on again.
    Swapon,
    /// A swapon was refused (`reason`).
    SwaponRefused,
    /// A hibernate cycle froze the tasks.
    HibernateBegin,
    /// A hibernate cycle completed (`pages`, `ticks`, `mismatches`).
    HibernateDone,
    /// A hibernate cycle failed (`reason`).
    HibernateFailed,
    /// A hibernate cycle was refused before it started (`reason`).
    HibernateRefused,
}

/// One swap event. Figures a kind has no use for are absent (`None`) and
/// left out of report.json.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SwapEvent {
    /// The tick it happened in.
    pub tick: u64,
    /// What happened.
    pub kind: SwapEventKind,
    /// Index of the `[[swap]]` entry, when known.
    pub device: Option<u32>,
    /// Swap type, only where the `[[swap]]` entry is not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap_type: Option<u32>,
    /// The process whose op asked for it (refusals of a workload op).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Started by fault injection (`fault.swapoff_at_tick`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub injected: bool,
    /// Slots in use when a swapoff began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots_in_use: Option<u64>,
    /// Ticks a swapoff or a hibernate cycle took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticks: Option<u64>,
    /// Entries a swapoff read back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entries_read_back: Option<u64>,
    /// Image pages a hibernate cycle wrote and read back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pages: Option<u64>,
    /// Image pages read back different from what was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mismatches: Option<u64>,
    /// Why it was refused or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl SwapEvent {
    /// An event of `kind` on `[[swap]]` entry `device` at `tick`, with no
    /// figures yet (set them with struct update syntax or field writes).
    pub fn new(tick: u64, kind: SwapEventKind, device: Option<u32>) -> SwapEvent {
        SwapEvent {
            tick,
            kind,
            device,
            swap_type: None,
            pid: None,
            injected: false,
            slots_in_use: None,
            ticks: None,
            entries_read_back: None,
            pages: None,
            mismatches: None,
            reason: None,
        }
    }

    /// The event with `reason`.
    pub fn because(mut self, reason: impl Into<String>) -> SwapEvent {
        self.reason = Some(reason.into());
        self
    }

    /// The device's name: `swap[i]`, or `type N` when only its type is
    /// known.
    fn name(&self) -> String {
        match (self.device, self.swap_type) {
            (Some(d), _) => format!("swap[{d}]"),
            (None, Some(t)) => format!("type {t}"),
            (None, None) => "swap[?]".into(),
        }
    }

    /// The op's verb and preposition (`swapoff of`), for refusals.
    fn verb(&self) -> &'static str {
        use SwapEventKind::*;
        match self.kind {
            SwapoffBegin | SwapoffDone | SwapoffFailed | SwapoffRefused => "swapoff of",
            Swapon | SwaponRefused => "swapon of",
            HibernateBegin | HibernateDone | HibernateFailed | HibernateRefused => "hibernate to",
        }
    }
}

/// The summary's line: `tick N: what happened`.
impl fmt::Display for SwapEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use SwapEventKind::*;
        let n = |x: Option<u64>| x.unwrap_or(0);
        let why = self.reason.as_deref().unwrap_or("");
        let name = self.name();
        write!(f, "tick {}: ", self.tick)?;
        match self.kind {
            SwapoffBegin => write!(
                f,
                "swapoff of {name} begins, {} slots in use",
                n(self.slots_in_use)
            ),
            SwapoffDone => write!(
                f,
                "swapoff of {name} done in {} ticks, {} entries read back",
                n(self.ticks),
                n(self.entries_read_back)
            ),
            SwapoffFailed => write!(f, "swapoff of {name} failed: {why}"),
            Swapon => write!(f, "swapon of {name}"),
            HibernateBegin => write!(f, "hibernate to {name}: tasks frozen"),
            HibernateDone => write!(
                f,
                "hibernate to {name}: {} pages written and read back in {} ticks, \
                 {} mismatches; tasks thawed",
                n(self.pages),
                n(self.ticks),
                n(self.mismatches)
            ),
            HibernateFailed => write!(f, "hibernate to {name} failed: {why}; tasks thawed"),
            SwapoffRefused | SwaponRefused | HibernateRefused => match self.pid {
                Some(pid) => write!(f, "pid {pid}: {} {name} refused: {why}", self.verb()),
                None if self.injected => {
                    write!(f, "{} {name} (injected) refused: {why}", self.verb())
                }
                None => write!(f, "{} {name} refused: {why}", self.verb()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_the_old_line_and_json_has_only_used_figures() {
        let mut e = SwapEvent::new(407, SwapEventKind::SwapoffDone, Some(0));
        e.ticks = Some(107);
        e.entries_read_back = Some(10361);
        assert_eq!(
            e.to_string(),
            "tick 407: swapoff of swap[0] done in 107 ticks, 10361 entries read back"
        );
        let v = serde_json::to_value(&e).unwrap_or_default();
        assert_eq!(v["kind"], "swapoff_done");
        assert_eq!(v["entries_read_back"], 10361);
        assert!(v.get("pages").is_none(), "{v}");
        let mut r = SwapEvent::new(9, SwapEventKind::SwapoffRefused, Some(1)).because("busy");
        r.injected = true;
        assert_eq!(
            r.to_string(),
            "tick 9: swapoff of swap[1] (injected) refused: busy"
        );
        r.pid = Some(3);
        assert_eq!(
            r.to_string(),
            "tick 9: pid 3: swapoff of swap[1] refused: busy"
        );
    }
}
