//! Planned calls as callbacks: the legacy call-event family (one flat body
//! per step, plus a call-status callback when the call ends) and the
//! IM-style family (start-call, member-change and end-call records), each
//! written straight as the query and body of a recorded-callback line.
//! JSON is written by hand: this is the simulator's hot path, and every
//! value here is a number or a string escaped below.

use super::model::{Call, Room, Step, User};
use super::Family;

/// Simulated time → the times written into callbacks: `start` stays, the
/// rest is compressed by `speed` (1 for files; `--speed` when posting, so
/// event times track the wall clock).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    pub start: f64,
    pub speed: f64,
}

impl Clock {
    pub fn at(&self, t: f64) -> f64 {
        self.start + (t - self.start) / self.speed
    }

    pub fn secs(&self, t: f64) -> i64 {
        self.at(t).floor() as i64
    }

    pub fn millis(&self, t: f64) -> i64 {
        (self.at(t) * 1000.0).floor() as i64
    }
}

/// One callback before delivery: when it is sent (simulated seconds),
/// its command (for the summary) and the line's tail: everything after
/// `{"received_at":N,`, newline included.
pub(crate) struct Callback {
    pub t: f64,
    pub command: &'static str,
    pub tail: Vec<u8>,
}

pub(crate) const START_CALL: &str = "Call.CallbackAfterStartCall";
pub(crate) const END_CALL: &str = "Call.CallbackAfterEndCall";
pub(crate) const MEMBER_CHANGED: &str = "Call.CallbackAfterMemberChanged";

pub(crate) struct Encoder<'u> {
    pub users: &'u [User],
    pub sdkappid: &'u str,
    pub clock: Clock,
}

fn int(out: &mut Vec<u8>, v: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// A JSON string. Simulated values never need escaping, but user names
/// come from the command line (`offline:user=...`).
fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    if s.bytes()
        .all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b < 0x7f)
    {
        out.extend_from_slice(s.as_bytes());
    } else {
        for c in s.chars() {
            match c {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                c if (c as u32) < 0x20 => {
                    out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
                }
                c => {
                    let mut buf = [0; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
    }
    out.push(b'"');
}

/// `"key":` (keys are constants here, never escaped).
fn key(out: &mut Vec<u8>, k: &str) {
    out.push(b'"');
    out.extend_from_slice(k.as_bytes());
    out.extend_from_slice(b"\":");
}

fn room(out: &mut Vec<u8>, r: Room) {
    match r {
        Room::Text(n) => {
            out.push(b'"');
            int(out, n);
            out.push(b'"');
        }
        Room::Number(n) => int(out, n),
    }
}

/// A legacy command: the event with its role prefix, except the two
/// group-call commands Tencent sends without one.
fn a_command(step: &Step) -> &'static str {
    macro_rules! both {
        ($($e:literal),*) => {
            match (step.role.as_str(), step.event) {
                $(("caller", $e) => concat!("caller_", $e), ("callee", $e) => concat!("callee_", $e),)*
                (_, other) => other,
            }
        };
    }
    both!(
        "start_call",
        "call_accepted",
        "call_missed",
        "call_rejected",
        "call_busy",
        "cancel_call",
        "call_failed",
        "call_end",
        "call_interrupted",
        "receive_call",
        "accept_call",
        "not_answer_call",
        "reject_call",
        "ignore_call",
        "call_canceled"
    )
}

impl Encoder<'_> {
    /// Every callback of one call, in the call's family.
    pub fn encode(&self, call: &Call, out: &mut Vec<Callback>) {
        match call.family {
            Family::B => self.family_b(call, out),
            _ => self.family_a(call, out),
        }
    }

    /// The query, then the body's opening. The families spell the same
    /// parameters differently: `keys` are sdkappid, command, client IP and
    /// platform in the family's spelling.
    fn query(&self, out: &mut Vec<u8>, keys: [&str; 4], command: &str, user: &User) {
        out.extend_from_slice(b"\"query\":{");
        key(out, keys[0]);
        string(out, self.sdkappid);
        out.push(b',');
        key(out, keys[1]);
        string(out, command);
        out.extend_from_slice(b",\"contenttype\":\"json\",");
        key(out, keys[2]);
        string(out, &user.ip);
        out.push(b',');
        key(out, keys[3]);
        string(out, user.platform());
        out.extend_from_slice(b"},\"body\":{");
    }

    fn a_query(&self, out: &mut Vec<u8>, command: &str, user: &User) {
        self.query(
            out,
            ["sdkappid", "command", "clientip", "optplatform"],
            command,
            user,
        );
    }

    /// The legacy body's fields shared by call events and call status.
    fn a_common(&self, out: &mut Vec<u8>, call: &Call, user: &User) {
        key(out, "UserId");
        string(out, &user.name);
        out.extend_from_slice(b",\"RoomId\":");
        room(out, call.room);
        out.extend_from_slice(b",\"TotalNum\":");
        int(out, call.total());
        out.extend_from_slice(if call.video {
            b",\"MediaType\":\"video\""
        } else {
            b",\"MediaType\":\"audio\""
        });
        out.extend_from_slice(if call.group {
            b",\"CallType\":\"group\",\"CallId\":"
        } else {
            b",\"CallType\":\"single\",\"CallId\":"
        });
        string(out, &call.id);
    }

    fn ts(&self, out: &mut Vec<u8>, start: f64, accept: Option<f64>, end: f64) {
        out.extend_from_slice(b",\"StartCallTs\":");
        int(out, self.clock.secs(start));
        if let Some(a) = accept {
            out.extend_from_slice(b",\"AcceptTs\":");
            int(out, self.clock.secs(a));
        }
        out.extend_from_slice(b",\"EndTs\":");
        int(out, self.clock.secs(end));
    }

    fn family_a(&self, call: &Call, out: &mut Vec<Callback>) {
        for step in &call.steps {
            let user = &self.users[step.user as usize];
            let command = a_command(step);
            let mut b = Vec::with_capacity(400);
            self.a_query(&mut b, command, user);
            self.a_common(&mut b, call, user);
            b.extend_from_slice(b",\"Role\":\"");
            b.extend_from_slice(step.role.as_str().as_bytes());
            b.extend_from_slice(b"\",\"Event\":\"");
            b.extend_from_slice(step.event.as_bytes());
            b.extend_from_slice(b"\",\"CallResult\":\"");
            b.extend_from_slice(step.result.as_bytes());
            b.extend_from_slice(b"\",\"EventTime\":");
            int(&mut b, self.clock.secs(step.t));
            if let Some([s, a, e]) = step.ts {
                self.ts(&mut b, s, Some(a), e);
            }
            b.extend_from_slice(b"}}\n");
            out.push(Callback {
                t: step.t,
                command,
                tail: b,
            });
        }
        // The call-status callback: the command is the result, and the
        // body has no `Event` (so rules see the result as the event name).
        if let Some(status) = call.ending.status_command() {
            let caller = &self.users[call.caller as usize];
            let mut b = Vec::with_capacity(400);
            self.a_query(&mut b, status, caller);
            self.a_common(&mut b, call, caller);
            b.extend_from_slice(b",\"Role\":\"caller\",\"CallResult\":\"");
            b.extend_from_slice(status.as_bytes());
            b.extend_from_slice(b"\",\"EventTime\":");
            int(&mut b, self.clock.secs(call.record_t));
            self.ts(&mut b, call.t0, call.accept_t, call.end_t);
            b.extend_from_slice(b"}}\n");
            out.push(Callback {
                t: call.record_t,
                command: status,
                tail: b,
            });
        }
    }

    /// The IM-style query, and the body's opening with its command.
    fn b_query(&self, out: &mut Vec<u8>, command: &str, user: &User) {
        let keys = ["SdkAppid", "CallbackCommand", "ClientIP", "OptPlatform"];
        self.query(out, keys, command, user);
        key(out, "CallbackCommand");
        string(out, command);
        out.push(b',');
    }

    fn accounts<'c>(&self, out: &mut Vec<u8>, users: impl Iterator<Item = &'c u32>) {
        out.push(b'[');
        for (i, u) in users.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            string(out, &self.users[*u as usize].name);
        }
        out.push(b']');
    }

    fn event_time_ms(&self, out: &mut Vec<u8>, t: f64) {
        out.extend_from_slice(b"\"EventTime\":");
        int(out, self.clock.millis(t));
        out.extend_from_slice(b"}}\n");
    }

    fn family_b(&self, call: &Call, out: &mut Vec<Callback>) {
        let caller = &self.users[call.caller as usize];
        let media = if call.video { "Video" } else { "Audio" };
        let room_type = match call.room {
            Room::Number(_) => 1,
            Room::Text(_) => 2,
        };
        for step in &call.steps {
            let user = &self.users[step.user as usize];
            if step.event == "start_call" {
                let mut b = Vec::with_capacity(500);
                self.b_query(&mut b, START_CALL, user);
                b.extend_from_slice(b"\"CallInfo\":{\"CallId\":");
                string(&mut b, &call.id);
                b.extend_from_slice(b",\"CallMediaType\":\"");
                b.extend_from_slice(media.as_bytes());
                b.extend_from_slice(b"\",\"ChatGroupId\":\"");
                if call.group {
                    b.extend_from_slice(b"@TGS#");
                    match call.room {
                        Room::Text(n) | Room::Number(n) => int(&mut b, n),
                    }
                }
                b.extend_from_slice(b"\",\"RoomId\":");
                room(&mut b, call.room);
                b.extend_from_slice(b",\"RoomIdType\":");
                int(&mut b, room_type);
                b.extend_from_slice(b"},\"UserList\":[{\"User_Account\":");
                string(&mut b, &caller.name);
                b.extend_from_slice(b",\"Status\":\"Calling\"}");
                for c in &call.callees {
                    b.extend_from_slice(b",{\"User_Account\":");
                    string(&mut b, &self.users[*c as usize].name);
                    b.extend_from_slice(b",\"Status\":\"Waiting\"}");
                }
                b.extend_from_slice(b"],");
                self.event_time_ms(&mut b, step.t);
                out.push(Callback {
                    t: step.t,
                    command: START_CALL,
                    tail: b,
                });
            } else if let Some(action) = step.action {
                let mut b = Vec::with_capacity(400);
                self.b_query(&mut b, MEMBER_CHANGED, user);
                b.extend_from_slice(b"\"CallId\":");
                string(&mut b, &call.id);
                b.extend_from_slice(b",\"UserList\":");
                let all = std::iter::once(&call.caller)
                    .chain(&call.callees)
                    .chain(&call.invited);
                self.accounts(&mut b, all);
                b.extend_from_slice(b",\"ChangedUserList\":[{\"User_Account\":");
                string(&mut b, &user.name);
                b.extend_from_slice(b",\"ActionType\":\"");
                b.extend_from_slice(action.as_bytes());
                b.extend_from_slice(b"\"}],");
                self.event_time_ms(&mut b, step.t);
                out.push(Callback {
                    t: step.t,
                    command: MEMBER_CHANGED,
                    tail: b,
                });
            }
        }
        let mut b = Vec::with_capacity(500);
        self.b_query(&mut b, END_CALL, caller);
        b.extend_from_slice(b"\"CallRecord\":{\"CallId\":");
        string(&mut b, &call.id);
        b.extend_from_slice(b",\"Caller_Account\":");
        string(&mut b, &caller.name);
        b.extend_from_slice(b",\"MediaType\":\"");
        b.extend_from_slice(media.as_bytes());
        b.extend_from_slice(if call.group {
            b"\",\"CallType\":\"MultiCall\",\"StartTime\":"
        } else {
            b"\",\"CallType\":\"SingleCall\",\"StartTime\":"
        });
        int(&mut b, self.clock.secs(call.t0));
        b.extend_from_slice(b",\"AcceptTime\":");
        // Tencent sends 0 for a call nobody answered.
        int(&mut b, call.accept_t.map_or(0, |a| self.clock.secs(a)));
        b.extend_from_slice(b",\"EndTime\":");
        int(&mut b, self.clock.secs(call.end_t));
        b.extend_from_slice(b",\"CallResult\":\"");
        b.extend_from_slice(call.ending.b_result().as_bytes());
        b.extend_from_slice(b"\",\"CalleeList_Account\":");
        self.accounts(&mut b, call.callees.iter().chain(&call.invited));
        b.extend_from_slice(b",\"RoomId\":");
        room(&mut b, call.room);
        b.extend_from_slice(b",\"RoomIdType\":");
        int(&mut b, room_type);
        b.extend_from_slice(b"},");
        self.event_time_ms(&mut b, call.record_t);
        out.push(Callback {
            t: call.record_t,
            command: END_CALL,
            tail: b,
        });
    }
}
