//! The call model: who calls whom, when, and how each call goes (answered,
//! missed, rejected, busy, cancelled, failed, interrupted; one-to-one or
//! group with invitations), with the injected anomalies applied. A call
//! comes out as a family-neutral plan: its steps in time, each naming the
//! legacy event it is reported as and, where the IM-style callbacks report
//! it, the member-change action. `encode` turns plans into callbacks.

use super::anomaly::{Anomaly, AnomalyKind, PLATFORMS};
use super::rng::Rng;
use super::{Family, SimOptions};

/// Shares of the platforms in [`PLATFORMS`] order (Android, iOS, Web,
/// miniProgram): mobile dominates TUICallKit traffic.
const PLATFORM_SHARES: [f64; 4] = [0.45, 0.35, 0.12, 0.08];
/// How a one-to-one call goes when no anomaly applies, with its share.
/// The example rules' thresholds were tuned on these shares.
const OUTCOMES: [Outcome; 6] = [
    Outcome::Answered,
    Outcome::NotAnswer,
    Outcome::Reject,
    Outcome::Cancel,
    Outcome::Busy,
    Outcome::Ignore,
];
const OUTCOME_WEIGHTS: [f64; 6] = [0.70, 0.12, 0.07, 0.05, 0.04, 0.01];
/// Calls that fail to start on healthy traffic.
const BASE_FAIL_P: f64 = 0.01;
/// Answered one-to-one calls that drop on healthy traffic.
const BASE_INTERRUPT_P: f64 = 0.02;
const GROUP_CALL_P: f64 = 0.08;
/// Group calls in which someone invites one more person mid-call.
const INVITE_P: f64 = 0.25;
/// In `--family mixed`, the share of calls reported the IM-style way.
const FAMILY_B_SHARE: f64 = 0.25;
/// How long TUICallKit rings before giving up.
const RING_TIMEOUT: f64 = 30.0;
/// While a user is offline, the share of calls that go to them (people
/// retry someone who does not pick up).
const OFFLINE_CALLEE_P: f64 = 0.15;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    Answered,
    NotAnswer,
    Reject,
    Cancel,
    Busy,
    Ignore,
}

/// One simulated user: account, platform (index into [`PLATFORMS`]), IP.
pub(crate) struct User {
    pub name: String,
    pub platform: usize,
    pub ip: String,
}

impl User {
    pub fn platform(&self) -> &'static str {
        PLATFORMS[self.platform]
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Role {
    Caller,
    Callee,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Caller => "caller",
            Role::Callee => "callee",
        }
    }
}

/// How a call ended, as the call-status callback (legacy) and the end-call
/// record (IM style) report it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Ending {
    Cancel,
    Reject,
    NotAnswer,
    NormalEnd,
    CallBusy,
    Interrupt,
    /// The call never got going (legacy `call_failed`).
    Failed,
}

impl Ending {
    /// The legacy call-status command; a failed call has none.
    pub fn status_command(self) -> Option<&'static str> {
        Some(match self {
            Ending::Cancel => "cancel",
            Ending::Reject => "reject",
            Ending::NotAnswer => "not_answer",
            Ending::NormalEnd => "normal_end",
            Ending::CallBusy => "call_busy",
            Ending::Interrupt => "interrupt",
            Ending::Failed => return None,
        })
    }

    /// The IM-style `CallResult`. That family has no "failed": a call that
    /// could not be set up ends as `Offline`.
    pub fn b_result(self) -> &'static str {
        match self {
            Ending::Cancel => "Cancel",
            Ending::Reject => "Reject",
            Ending::NotAnswer => "NotAnswer",
            Ending::NormalEnd => "NormalEnd",
            Ending::CallBusy => "CallBusy",
            Ending::Interrupt => "Interrupt",
            Ending::Failed => "Offline",
        }
    }
}

/// One thing that happens in a call, at time `t` (simulated Unix seconds).
#[derive(Debug, Clone)]
pub(crate) struct Step {
    pub t: f64,
    pub user: u32,
    pub role: Role,
    /// The legacy event (`accept_call`); its command is `<role>_<event>`
    /// except for `invite_user` and `join_in_group_call`.
    pub event: &'static str,
    /// The legacy `CallResult` ("" while the call goes on).
    pub result: &'static str,
    /// `StartCallTs`, `AcceptTs`, `EndTs` on records that carry them.
    pub ts: Option<[f64; 3]>,
    /// The IM-style member-change `ActionType`, if that family reports
    /// this step as one.
    pub action: Option<&'static str>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Room {
    Text(u64),
    Number(u64),
}

/// A planned call: everything the encoders need.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub id: String,
    pub room: Room,
    pub video: bool,
    pub group: bool,
    pub family: Family,
    pub t0: f64,
    pub caller: u32,
    /// Callees rung when the call started.
    pub callees: Vec<u32>,
    /// Users invited later (group calls).
    pub invited: Vec<u32>,
    pub steps: Vec<Step>,
    pub ending: Ending,
    /// When the call-status callback / end-call record is sent.
    pub record_t: f64,
    pub accept_t: Option<f64>,
    pub end_t: f64,
    /// Picks one of Tencent's spellings where its documents disagree
    /// (`Answer`/`Accept`, `Hangup`/`Hang Up`...), per call.
    pub spelling: bool,
}

impl Call {
    /// Everyone in the call: caller, callees rung at the start, invitees.
    pub fn total(&self) -> usize {
        1 + self.callees.len() + self.invited.len()
    }
}

/// What the anomalies did, per anomaly (same order as the options).
#[derive(Debug, Clone, Default)]
pub(crate) struct Effects {
    pub affected: Vec<u64>,
}

/// Generates calls one after another, in start order.
pub(crate) struct Model<'o> {
    opts: &'o SimOptions,
    rng: Rng,
    pub users: Vec<User>,
    t: f64,
    pub made: u64,
    /// An outage without end stopped the calls early.
    exhausted: bool,
    pub effects: Effects,
    /// User index of each offline anomaly's user (parallel to anomalies).
    offline_user: Vec<Option<u32>>,
}

impl<'o> Model<'o> {
    pub fn new(opts: &'o SimOptions) -> Model<'o> {
        let mut rng = Rng::new(opts.seed);
        let mut users: Vec<User> = Vec::with_capacity(opts.users as usize);
        let new_user = |rng: &mut Rng, name: String| User {
            name,
            platform: rng.pick(&PLATFORM_SHARES),
            ip: format!(
                "10.{}.{}.{}",
                rng.below(256),
                rng.below(256),
                rng.range(1, 255)
            ),
        };
        for i in 1..=opts.users {
            users.push(new_user(&mut rng, format!("u{i:04}")));
        }
        // An offline user the population does not have joins it, so the
        // anomaly names whoever the operator wants to see alerted.
        let mut offline_user = Vec::with_capacity(opts.anomalies.len());
        for a in &opts.anomalies {
            offline_user.push(match &a.kind {
                AnomalyKind::Offline { user } => {
                    let i = match users.iter().position(|u| &u.name == user) {
                        Some(i) => i,
                        None => {
                            users.push(new_user(&mut rng, user.clone()));
                            users.len() - 1
                        }
                    };
                    Some(i as u32)
                }
                _ => None,
            });
        }
        Model {
            opts,
            rng,
            users,
            t: opts.start as f64,
            made: 0,
            exhausted: false,
            effects: Effects {
                affected: vec![0; opts.anomalies.len()],
            },
            offline_user,
        }
    }

    pub fn anomalies(&self) -> &'o [Anomaly] {
        &self.opts.anomalies
    }

    /// The first anomaly covering `offset` for which `pick` says yes.
    fn active<T>(&self, offset: f64, pick: impl Fn(&Anomaly) -> Option<T>) -> Option<(usize, T)> {
        self.opts
            .anomalies
            .iter()
            .enumerate()
            .filter(|(_, a)| a.covers(offset))
            .find_map(|(i, a)| pick(a).map(|v| (i, v)))
    }

    fn on_platform(&self, wanted: &Option<String>, user: u32) -> bool {
        wanted
            .as_deref()
            .is_none_or(|p| p == self.users[user as usize].platform())
    }

    /// The offline anomaly (index) covering `user` at `offset`, if any.
    fn offline(&self, offset: f64, user: u32) -> Option<usize> {
        self.opts
            .anomalies
            .iter()
            .zip(&self.offline_user)
            .position(|(a, u)| *u == Some(user) && a.covers(offset))
    }

    fn random_user(&mut self) -> u32 {
        self.rng.below(self.users.len() as u64) as u32
    }

    /// The next call, or `None` once `--calls` have been made.
    pub fn next_call(&mut self) -> Option<Call> {
        if self.exhausted || self.made >= self.opts.calls {
            return None;
        }
        let start = self.opts.start as f64;
        self.t += self.rng.exp(1.0 / self.opts.rate);
        // An outage pushes every call due during it to just after it.
        while let Some((i, to)) = self.active(self.t - start, |a| {
            matches!(a.kind, AnomalyKind::Outage).then_some(a.to)
        }) {
            self.effects.affected[i] += 1;
            if !to.is_finite() {
                // An outage to the end of time: no more calls at all.
                self.exhausted = true;
                return None;
            }
            self.t = start + to + self.rng.exp(1.0 / self.opts.rate);
        }
        let n = self.made;
        self.made += 1;
        let offset = self.t - start;
        let id = format!("{:016x}-{n:08x}", self.rng.u64());
        let room_no = self.rng.range(100_000_000, 1_000_000_000);
        let room = if self.rng.chance(0.7) {
            Room::Text(room_no)
        } else {
            Room::Number(room_no)
        };
        let video = self.rng.chance(0.4);
        let family = match self.opts.family {
            Family::A => Family::A,
            Family::B => Family::B,
            Family::Mixed if self.rng.chance(FAMILY_B_SHARE) => Family::B,
            Family::Mixed => Family::A,
        };
        let spelling = self.rng.chance(0.5);
        // Someone offline places no calls either.
        let mut caller = self.random_user();
        for _ in 0..self.users.len() {
            if self.offline(offset, caller).is_none() {
                break;
            }
            caller = (caller + 1) % self.users.len() as u32;
        }
        let mut call = Call {
            id,
            room,
            video,
            group: false,
            family,
            t0: self.t,
            caller,
            callees: Vec::new(),
            invited: Vec::new(),
            steps: Vec::with_capacity(8),
            ending: Ending::NormalEnd,
            record_t: self.t,
            accept_t: None,
            end_t: self.t,
            spelling,
        };
        if self.users.len() > 2 && self.rng.chance(GROUP_CALL_P) {
            self.group_call(&mut call, offset);
        } else {
            let offline_now: Vec<u32> = self
                .offline_user
                .iter()
                .zip(&self.opts.anomalies)
                .filter(|(u, a)| u.is_some() && a.covers(offset))
                .filter_map(|(u, _)| *u)
                .filter(|u| *u != caller)
                .collect();
            let callee = if !offline_now.is_empty() && self.rng.chance(OFFLINE_CALLEE_P) {
                offline_now[self.rng.below(offline_now.len() as u64) as usize]
            } else {
                let c = self.random_user();
                if c == caller {
                    (c + 1) % self.users.len() as u32
                } else {
                    c
                }
            };
            call.callees.push(callee);
            self.one_to_one(&mut call, offset);
        }
        call.record_t = call.end_t + self.rng.uniform(0.1, 1.0);
        Some(call)
    }

    fn step<'c>(
        call: &'c mut Call,
        t: f64,
        user: u32,
        role: Role,
        event: &'static str,
        result: &'static str,
    ) -> &'c mut Step {
        call.steps.push(Step {
            t,
            user,
            role,
            event,
            result,
            ts: None,
            action: None,
        });
        let last = call.steps.len() - 1;
        &mut call.steps[last]
    }

    fn fails(&mut self, offset: f64) -> bool {
        match self.active(offset, |a| match a.kind {
            AnomalyKind::Fail { p } => Some(p),
            _ => None,
        }) {
            Some((i, p)) => {
                let hit = self.rng.chance(p);
                self.effects.affected[i] += hit as u64;
                hit
            }
            None => self.rng.chance(BASE_FAIL_P),
        }
    }

    /// Extra ring seconds for calls placed by `caller` (slow anomaly).
    fn slowness(&mut self, offset: f64, caller: u32) -> f64 {
        match self.active(offset, |a| match &a.kind {
            AnomalyKind::Slow { platform, secs } if self.on_platform(platform, caller) => {
                Some(*secs)
            }
            _ => None,
        }) {
            Some((i, s)) => {
                self.effects.affected[i] += 1;
                s
            }
            None => 0.0,
        }
    }

    fn one_to_one(&mut self, call: &mut Call, offset: f64) {
        let (t0, caller, callee) = (call.t0, call.caller, call.callees[0]);
        let rng_outcome = |m: &mut Self| OUTCOMES[m.rng.pick(&OUTCOME_WEIGHTS)];
        Self::step(call, t0, caller, Role::Caller, "start_call", "");
        if self.fails(offset) {
            let t = t0 + self.rng.uniform(0.2, 3.0);
            Self::step(call, t, caller, Role::Caller, "call_failed", "");
            call.ending = Ending::Failed;
            call.end_t = t;
            return;
        }
        let mut outcome = rng_outcome(self);
        if let Some(i) = self.offline(offset, callee) {
            self.effects.affected[i] += 1;
            outcome = Outcome::NotAnswer;
        } else if outcome != Outcome::Busy {
            let reject = self.active(offset, |a| match &a.kind {
                AnomalyKind::Reject { platform, p } if self.on_platform(platform, caller) => {
                    Some(*p)
                }
                _ => None,
            });
            if let Some((i, p)) = reject {
                if self.rng.chance(p) {
                    self.effects.affected[i] += 1;
                    outcome = Outcome::Reject;
                }
            }
        }
        if outcome == Outcome::Busy {
            let t = t0 + self.rng.uniform(0.1, 1.0);
            Self::step(call, t, caller, Role::Caller, "call_busy", "call_busy");
            call.ending = Ending::CallBusy;
            call.end_t = t;
            return;
        }
        let t_recv = t0 + self.rng.uniform(0.1, 1.5);
        Self::step(call, t_recv, callee, Role::Callee, "receive_call", "");
        let ring = self.rng.uniform(2.0, 25.0);
        let (not_answer, answer) = if call.spelling {
            ("NotAnswer", "Answer")
        } else {
            ("NotAnswer", "Accept")
        };
        match outcome {
            Outcome::NotAnswer => {
                let t = t0 + RING_TIMEOUT;
                Self::step(
                    call,
                    t,
                    callee,
                    Role::Callee,
                    "not_answer_call",
                    "not_answer",
                )
                .action = Some(not_answer);
                let t2 = t + self.rng.uniform(0.0, 0.5);
                Self::step(call, t2, caller, Role::Caller, "call_missed", "not_answer");
                call.ending = Ending::NotAnswer;
                call.end_t = t2;
            }
            Outcome::Ignore => {
                Self::step(call, t_recv + ring, callee, Role::Callee, "ignore_call", "");
                let t = t0 + RING_TIMEOUT;
                Self::step(call, t, caller, Role::Caller, "call_missed", "not_answer");
                call.ending = Ending::NotAnswer;
                call.end_t = t;
            }
            Outcome::Reject => {
                Self::step(
                    call,
                    t0 + ring,
                    callee,
                    Role::Callee,
                    "reject_call",
                    "reject",
                )
                .action = Some("Reject");
                let t = t0 + ring + self.rng.uniform(0.0, 0.5);
                Self::step(call, t, caller, Role::Caller, "call_rejected", "reject");
                call.ending = Ending::Reject;
                call.end_t = t;
            }
            Outcome::Cancel => {
                Self::step(
                    call,
                    t0 + ring,
                    caller,
                    Role::Caller,
                    "cancel_call",
                    "cancel",
                );
                let t = t0 + ring + self.rng.uniform(0.0, 0.5);
                Self::step(call, t, callee, Role::Callee, "call_canceled", "cancel");
                call.ending = Ending::Cancel;
                call.end_t = t;
            }
            Outcome::Answered | Outcome::Busy => {
                let t_acc = t0 + ring + self.slowness(offset, caller);
                Self::step(call, t_acc, callee, Role::Callee, "accept_call", "").action =
                    Some(answer);
                let t = t_acc + self.rng.uniform(0.0, 0.5);
                Self::step(call, t, caller, Role::Caller, "call_accepted", "");
                call.accept_t = Some(t_acc);
                let talk = self.rng.exp(150.0).min(3600.0) + 1.0;
                let spike = self.active(offset, |a| match &a.kind {
                    AnomalyKind::Interrupt { platform, p }
                        if self.on_platform(platform, caller)
                            || self.on_platform(platform, callee) =>
                    {
                        Some(*p)
                    }
                    _ => None,
                });
                let p = spike.map_or(BASE_INTERRUPT_P, |(_, p)| p);
                if self.rng.chance(p) {
                    if let Some((i, _)) = spike {
                        self.effects.affected[i] += 1;
                    }
                    let caller_drops = self.rng.chance(0.5);
                    let t_end = t_acc + talk.min(self.rng.uniform(1.0, 90.0));
                    let ts = Some([t0, t_acc, t_end]);
                    let (dropped, dr, other, or) = if caller_drops {
                        (caller, Role::Caller, callee, Role::Callee)
                    } else {
                        (callee, Role::Callee, caller, Role::Caller)
                    };
                    let s = Self::step(call, t_end, dropped, dr, "call_interrupted", "interrupt");
                    s.ts = ts;
                    s.action = Some("Offline");
                    let t2 = t_end + self.rng.uniform(0.0, 2.0);
                    Self::step(call, t2, other, or, "call_end", "interrupt").ts = ts;
                    call.ending = Ending::Interrupt;
                    call.end_t = t_end;
                } else {
                    let t_end = t_acc + talk;
                    let ts = Some([t0, t_acc, t_end]);
                    Self::step(call, t_end, caller, Role::Caller, "call_end", "normal_end").ts = ts;
                    let t2 = t_end + self.rng.uniform(0.0, 0.5);
                    Self::step(call, t2, callee, Role::Callee, "call_end", "normal_end").ts = ts;
                    call.ending = Ending::NormalEnd;
                    call.end_t = t_end;
                }
            }
        }
    }

    /// Distinct users for a group call, none of them the caller.
    fn members(&mut self, caller: u32, k: usize) -> Vec<u32> {
        let mut out: Vec<u32> = Vec::with_capacity(k);
        while out.len() < k {
            let u = self.random_user();
            if u != caller && !out.contains(&u) {
                out.push(u);
            }
        }
        out
    }

    fn group_call(&mut self, call: &mut Call, offset: f64) {
        let (t0, caller) = (call.t0, call.caller);
        call.group = true;
        let k = (self.rng.range(2, 6) as usize).min(self.users.len() - 1);
        call.callees = self.members(caller, k);
        let extra = self.slowness(offset, caller);
        let (answer, hangup) = if call.spelling {
            ("Answer", "Hangup")
        } else {
            ("Accept", "Hang Up")
        };
        Self::step(call, t0, caller, Role::Caller, "start_call", "");
        // Who is in the call, from when.
        let mut joined: Vec<(u32, f64)> = Vec::new();
        for i in 0..call.callees.len() {
            let m = call.callees[i];
            let t = t0 + self.rng.uniform(0.1, 1.5);
            Self::step(call, t, m, Role::Callee, "receive_call", "");
            let offline = self.offline(offset, m);
            if let Some(a) = offline {
                self.effects.affected[a] += 1;
            }
            let r = self.rng.unit();
            if offline.is_none() && r < 0.8 {
                let t_acc = t + self.rng.uniform(2.0, 20.0) + extra;
                Self::step(call, t_acc, m, Role::Callee, "accept_call", "").action = Some(answer);
                joined.push((m, t_acc));
            } else if offline.is_none() && r < 0.85 {
                let t_rej = t + self.rng.uniform(2.0, 20.0);
                Self::step(call, t_rej, m, Role::Callee, "reject_call", "reject").action =
                    Some("Reject");
            } else {
                Self::step(
                    call,
                    t0 + RING_TIMEOUT,
                    m,
                    Role::Callee,
                    "not_answer_call",
                    "not_answer",
                )
                .action = Some("NotAnswer");
            }
        }
        let Some(first) = joined.iter().map(|(_, t)| *t).reduce(f64::min) else {
            let t = t0 + RING_TIMEOUT + self.rng.uniform(0.0, 0.5);
            Self::step(call, t, caller, Role::Caller, "call_missed", "not_answer");
            call.ending = Ending::NotAnswer;
            call.end_t = t;
            return;
        };
        call.accept_t = Some(first);
        // The talk starts once the last of the first round has answered.
        let last = joined.iter().map(|(_, t)| *t).fold(first, f64::max);
        let t_end = last + self.rng.exp(300.0).min(3600.0) + 1.0;
        // Someone not in the call is invited mid-call; they join, or the
        // caller withdraws the invitation while it rings.
        if self.rng.chance(INVITE_P) && self.users.len() > call.total() {
            let t_inv = first + self.rng.uniform(0.0, t_end - first) * 0.5;
            let invitee = loop {
                let u = self.random_user();
                if u != caller && !call.callees.contains(&u) {
                    break u;
                }
            };
            call.invited.push(invitee);
            let invite = if call.spelling { "Invite" } else { "Invited" };
            Self::step(call, t_inv, invitee, Role::Callee, "invite_user", "").action = Some(invite);
            let t = t_inv + self.rng.uniform(0.1, 1.5);
            Self::step(call, t, invitee, Role::Callee, "receive_call", "");
            if self.offline(offset, invitee).is_none() && self.rng.chance(0.7) {
                let t_join = t + self.rng.uniform(2.0, 15.0) + extra;
                if t_join < t_end {
                    Self::step(
                        call,
                        t_join,
                        invitee,
                        Role::Callee,
                        "join_in_group_call",
                        "",
                    )
                    .action = Some("Join");
                    joined.push((invitee, t_join));
                }
            } else {
                let t_cancel = t + self.rng.uniform(5.0, RING_TIMEOUT - 5.0);
                let cancel = if call.spelling {
                    "Cancel_Invite"
                } else {
                    "Canncel_Invite"
                };
                Self::step(
                    call,
                    t_cancel,
                    invitee,
                    Role::Callee,
                    "call_canceled",
                    "cancel",
                )
                .action = Some(cancel);
            }
        }
        let ts = |accept: f64, end: f64| Some([t0, accept, end]);
        Self::step(call, t_end, caller, Role::Caller, "call_end", "normal_end").ts =
            ts(first, t_end);
        for (m, t_acc) in joined {
            let t = t_end + self.rng.uniform(0.0, 2.0);
            let s = Self::step(call, t, m, Role::Callee, "call_end", "normal_end");
            s.ts = ts(t_acc, t);
            s.action = Some(hangup);
        }
        call.ending = Ending::NormalEnd;
        call.end_t = t_end;
    }
}
