//! chmpx node status: the bit layout and strings of yahoojapan/chmpx
//! lib/chmstructure.h (`CHMPXSTS_*`, `STR_CHMPXSTS_FULL`).
//!
//! `0x21(SAFE -> [SERVICE IN][UP][n/a][Nothing][NoSuspend])`

/// Place on the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ring {
    /// `[SLAVE]` (not on the ring).
    Slave,
    /// `[SERVICE OUT]`.
    Out,
    /// `[SERVICE IN]`.
    In,
}

/// Pending membership change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `[n/a]`.
    NoAct,
    /// `[ADD]`.
    Add,
    /// `[DELETE]`.
    Delete,
}

/// Merge progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `[Nothing]`.
    Nothing,
    /// `[Pending]`.
    Pending,
    /// `[Doing]`.
    Doing,
    /// `[Done]`.
    Done,
}

/// One node's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// Ring.
    pub ring: Ring,
    /// `[UP]` or `[DOWN]`.
    pub up: bool,
    /// Action.
    pub action: Action,
    /// Operation.
    pub op: Op,
    /// `[Suspend]`: no k2hdkc attached to this server's chmpx.
    pub suspend: bool,
}

impl Status {
    /// Builds a status.
    pub const fn new(ring: Ring, up: bool, action: Action, op: Op, suspend: bool) -> Status {
        Status { ring, up, action, op, suspend }
    }

    /// A server just started: `0x10011 [SERVICE OUT][UP][n/a][Nothing][Suspend]`.
    pub const STARTED: Status = Status::new(Ring::Out, true, Action::NoAct, Op::Nothing, true);
    /// A slave: `0x1 [SLAVE][UP][n/a][Nothing][NoSuspend]`.
    pub const SLAVE_UP: Status = Status::new(Ring::Slave, true, Action::NoAct, Op::Nothing, false);
    /// A server that never answered: `0x10 [SERVICE OUT][DOWN][n/a][Nothing][NoSuspend]`.
    pub const OUT_DOWN: Status = Status::new(Ring::Out, false, Action::NoAct, Op::Nothing, false);

    /// The numeric form.
    pub fn code(&self) -> u64 {
        let mut c = u64::from(self.up);
        c |= match self.ring {
            Ring::Slave => 0,
            Ring::Out => 0x10,
            Ring::In => 0x20,
        };
        c |= match self.action {
            Action::NoAct => 0,
            Action::Add => 0x100,
            Action::Delete => 0x200,
        };
        c |= match self.op {
            Op::Nothing => 0,
            Op::Pending => 0x1000,
            Op::Doing => 0x2000,
            Op::Done => 0x3000,
        };
        if self.suspend {
            c |= 0x10000;
        }
        c
    }

    /// From the numeric form.
    pub fn from_code(c: u64) -> Option<Status> {
        if c & !0x1_3331 != 0 {
            return None;
        }
        let ring = match c & 0x30 {
            0 => Ring::Slave,
            0x10 => Ring::Out,
            0x20 => Ring::In,
            _ => return None,
        };
        let action = match c & 0x300 {
            0 => Action::NoAct,
            0x100 => Action::Add,
            0x200 => Action::Delete,
            _ => return None,
        };
        let op = match c & 0x3000 {
            0 => Op::Nothing,
            0x1000 => Op::Pending,
            0x2000 => Op::Doing,
            _ => Op::Done,
        };
        Some(Status {
            ring,
            up: c & 1 == 1,
            action,
            op,
            suspend: c & 0x10000 != 0,
        })
    }

    /// chmpx's `IS_SAFE_CHMPXSTS`: one of the consistent combinations.
    pub fn is_safe(&self) -> bool {
        use {Action::*, Op::*, Ring::*};
        matches!(
            (self.ring, self.up, self.action, self.op),
            (Slave, _, NoAct, Nothing)
                | (In, true, NoAct, _)
                | (In, true, Add, Pending | Doing | Done)
                | (In, true, Delete, Pending | Doing | Done)
                | (In, false, NoAct, Nothing)
                | (In, false, Delete, Pending | Done)
                | (Out, _, NoAct, Nothing)
        )
    }

    /// Merging (`[Doing]` or `[Done]`).
    pub fn operating(&self) -> bool {
        matches!(self.op, Op::Doing | Op::Done)
    }

    /// `SAFE -> [SERVICE IN][UP][n/a][Nothing][NoSuspend]`.
    pub fn full(&self) -> String {
        format!(
            "{} -> [{}][{}][{}][{}][{}]",
            if self.is_safe() { "SAFE" } else { "NOT SAFE" },
            match self.ring {
                Ring::Slave => "SLAVE",
                Ring::Out => "SERVICE OUT",
                Ring::In => "SERVICE IN",
            },
            if self.up { "UP" } else { "DOWN" },
            match self.action {
                Action::NoAct => "n/a",
                Action::Add => "ADD",
                Action::Delete => "DELETE",
            },
            match self.op {
                Op::Nothing => "Nothing",
                Op::Pending => "Pending",
                Op::Doing => "Doing",
                Op::Done => "Done",
            },
            if self.suspend { "Suspend" } else { "NoSuspend" },
        )
    }

    /// `0x21(SAFE -> [SERVICE IN][UP][n/a][Nothing][NoSuspend])`.
    pub fn line(&self) -> String {
        format!("0x{:x}({})", self.code(), self.full())
    }

    /// Reads the status from a `Server Status = 0x..(...)` line or a whole
    /// SELFSTATUS reply (by the numeric form).
    pub fn parse_reply(reply: &str) -> Option<Status> {
        let line = reply.lines().find(|l| l.contains("Server Status"))?;
        let hex = line.split("0x").nth(1)?;
        let digits: String = hex.chars().take_while(|c| c.is_ascii_hexdigit()).collect();
        Status::from_code(u64::from_str_radix(&digits, 16).ok()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_states_contracts_md_lists() {
        assert_eq!(Status::STARTED.line(), "0x10011(SAFE -> [SERVICE OUT][UP][n/a][Nothing][Suspend])");
        let serving = Status::new(Ring::In, true, Action::NoAct, Op::Nothing, false);
        assert_eq!(serving.line(), "0x21(SAFE -> [SERVICE IN][UP][n/a][Nothing][NoSuspend])");
        let no_k2hdkc = Status { suspend: true, ..serving };
        assert_eq!(no_k2hdkc.line(), "0x10021(SAFE -> [SERVICE IN][UP][n/a][Nothing][Suspend])");
        assert_eq!(Status::SLAVE_UP.line(), "0x1(SAFE -> [SLAVE][UP][n/a][Nothing][NoSuspend])");
        assert_eq!(Status::OUT_DOWN.line(), "0x10(SAFE -> [SERVICE OUT][DOWN][n/a][Nothing][NoSuspend])");
        let adding = Status::new(Ring::In, true, Action::Add, Op::Doing, false);
        assert!(adding.full().ends_with("[SERVICE IN][UP][ADD][Doing][NoSuspend]"));
        let gone = Status::new(Ring::In, false, Action::Delete, Op::Pending, false);
        assert_eq!(gone.line(), "0x1220(SAFE -> [SERVICE IN][DOWN][DELETE][Pending][NoSuspend])");
        assert!(!Status::new(Ring::Out, true, Action::Add, Op::Doing, false).is_safe());
    }

    #[test]
    fn round_trip() {
        for c in [0x1u64, 0x10, 0x11, 0x10011, 0x21, 0x10021, 0x1121, 0x2121, 0x3221, 0x1220] {
            assert_eq!(Status::from_code(c).unwrap().code(), c);
        }
        let reply = "Mode = Server\nStatus = {\n    Server Status         = 0x10021(SAFE -> [SERVICE IN][UP][n/a][Nothing][Suspend])\n}\n";
        assert_eq!(Status::parse_reply(reply).unwrap().code(), 0x10021);
        assert_eq!(Status::from_code(0x40), None);
    }
}
