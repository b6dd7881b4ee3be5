//! Anomalies `callwatch simulate` can inject, and their command-line
//! spelling (`offline:user=u0042:from=600:to=1500`): parsing with errors
//! that name the bad part, and the normalised form printed in summaries.

use std::fmt;
use std::str::FromStr;

/// The client platforms TUICallKit reports in `optplatform`, as sent.
pub const PLATFORMS: [&str; 4] = ["Android", "iOS", "Web", "miniProgram"];

/// One injected problem, active from `from` to `to` seconds after the
/// trace's start (a call belongs to it when it starts in `[from, to)`).
#[derive(Debug, Clone, PartialEq)]
pub struct Anomaly {
    pub kind: AnomalyKind,
    /// Seconds after `--start` (default 0).
    pub from: f64,
    /// Seconds after `--start` (default: the end of the trace).
    pub to: f64,
}

/// What an [`Anomaly`] does to the calls it covers.
#[derive(Debug, Clone, PartialEq)]
pub enum AnomalyKind {
    /// `user` answers nothing: every call to them goes unanswered, and
    /// callers try them more often (as people do with someone who does
    /// not pick up).
    Offline { user: String },
    /// Answered calls with a party on `platform` (any platform if `None`)
    /// are interrupted with probability `p`.
    Interrupt { platform: Option<String>, p: f64 },
    /// Calls fail to start with probability `p`.
    Fail { p: f64 },
    /// Calls placed from `platform` are rejected with probability `p`.
    Reject { platform: Option<String>, p: f64 },
    /// Callees of calls placed from `platform` answer `secs` later.
    Slow { platform: Option<String>, secs: f64 },
    /// No call starts at all; calls due then start after it.
    Outage,
}

impl AnomalyKind {
    pub fn name(&self) -> &'static str {
        match self {
            AnomalyKind::Offline { .. } => "offline",
            AnomalyKind::Interrupt { .. } => "interrupt",
            AnomalyKind::Fail { .. } => "fail",
            AnomalyKind::Reject { .. } => "reject",
            AnomalyKind::Slow { .. } => "slow",
            AnomalyKind::Outage => "outage",
        }
    }
}

impl Anomaly {
    /// Whether a call starting `offset` seconds after the start is covered.
    pub fn covers(&self, offset: f64) -> bool {
        self.from <= offset && offset < self.to
    }
}

/// The keys each kind takes: (required, optional besides `from`/`to`).
fn keys(kind: &str) -> Option<(&'static [&'static str], &'static [&'static str])> {
    Some(match kind {
        "offline" => (&["user"], &[]),
        "interrupt" | "reject" => (&["p"], &["platform"]),
        "fail" => (&["p"], &[]),
        "slow" => (&["secs"], &["platform"]),
        "outage" => (&[], &[]),
        _ => return None,
    })
}

/// `android` → `Android`; anything not a TUICallKit platform is an error.
fn platform(value: &str) -> Result<String, String> {
    PLATFORMS
        .iter()
        .find(|p| p.eq_ignore_ascii_case(value))
        .map(|p| p.to_string())
        .ok_or_else(|| format!("platform={value:?} is not one of {}", PLATFORMS.join(", ")))
}

fn number(key: &str, value: &str) -> Result<f64, String> {
    match value.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err(format!("{key}={value:?} is not a non-negative number")),
    }
}

fn probability(value: &str) -> Result<f64, String> {
    let p = number("p", value)?;
    if p > 1.0 {
        return Err(format!("p={value} is not a probability (0 to 1)"));
    }
    Ok(p)
}

impl FromStr for Anomaly {
    type Err = String;

    /// Parses `KIND:key=value:...`; the error names what is wrong and
    /// what the kind takes, and never includes the whole spec twice.
    fn from_str(spec: &str) -> Result<Anomaly, String> {
        let mut parts = spec.split(':');
        let kind = parts.next().unwrap_or_default().trim();
        let Some((required, optional)) = keys(kind) else {
            return Err(format!(
                "anomaly {spec:?}: unknown kind {kind:?} (expected offline, interrupt, fail, reject, slow or outage)"
            ));
        };
        let usage = || {
            let mut k: Vec<String> = required.iter().map(|k| format!("{k}=…")).collect();
            k.extend(optional.iter().map(|k| format!("[{k}=…]")));
            k.push("[from=S]".into());
            k.push("[to=S]".into());
            format!("{kind}:{}", k.join(":"))
        };
        let fail = |msg: String| format!("anomaly {spec:?}: {msg} (usage: {})", usage());
        let mut given: Vec<(&str, &str)> = Vec::new();
        for part in parts {
            let Some((key, value)) = part.split_once('=') else {
                return Err(fail(format!("{part:?} is not key=value")));
            };
            let key = key.trim();
            if !(required.contains(&key) || optional.contains(&key) || key == "from" || key == "to")
            {
                return Err(fail(format!("{kind} takes no {key:?}")));
            }
            if given.iter().any(|(k, _)| *k == key) {
                return Err(fail(format!("{key} given twice")));
            }
            given.push((key, value));
        }
        let get = |key: &str| given.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
        if let Some(missing) = required.iter().find(|k| get(k).is_none()) {
            return Err(fail(format!("{missing}= is required")));
        }
        let from = get("from")
            .map_or(Ok(0.0), |v| number("from", v))
            .map_err(fail)?;
        let to = get("to")
            .map_or(Ok(f64::INFINITY), |v| number("to", v))
            .map_err(fail)?;
        if to <= from {
            return Err(fail(format!("to={to} must be after from={from}")));
        }
        let plat = || get("platform").map(platform).transpose().map_err(fail);
        let req = |key: &str| get(key).unwrap_or_default();
        let kind = match kind {
            "offline" => {
                let user = req("user").trim();
                if user.is_empty() {
                    return Err(fail("user= is empty".into()));
                }
                AnomalyKind::Offline { user: user.into() }
            }
            "interrupt" => AnomalyKind::Interrupt {
                platform: plat()?,
                p: probability(req("p")).map_err(fail)?,
            },
            "fail" => AnomalyKind::Fail {
                p: probability(req("p")).map_err(fail)?,
            },
            "reject" => AnomalyKind::Reject {
                platform: plat()?,
                p: probability(req("p")).map_err(fail)?,
            },
            "slow" => AnomalyKind::Slow {
                platform: plat()?,
                secs: number("secs", req("secs")).map_err(fail)?,
            },
            _ => AnomalyKind::Outage,
        };
        Ok(Anomaly { kind, from, to })
    }
}

/// The normalised spec: parsing it again gives the same anomaly.
impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.name())?;
        let platform = |f: &mut fmt::Formatter<'_>, p: &Option<String>| match p {
            Some(p) => write!(f, ":platform={p}"),
            None => Ok(()),
        };
        match &self.kind {
            AnomalyKind::Offline { user } => write!(f, ":user={user}")?,
            AnomalyKind::Interrupt { platform: pl, p }
            | AnomalyKind::Reject { platform: pl, p } => {
                platform(f, pl)?;
                write!(f, ":p={p}")?;
            }
            AnomalyKind::Fail { p } => write!(f, ":p={p}")?,
            AnomalyKind::Slow { platform: pl, secs } => {
                platform(f, pl)?;
                write!(f, ":secs={secs}")?;
            }
            AnomalyKind::Outage => {}
        }
        write!(f, ":from={}", self.from)?;
        if self.to.is_finite() {
            write!(f, ":to={}", self.to)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Anomaly, String> {
        s.parse()
    }

    #[test]
    fn every_kind_parses_and_prints_back() {
        for spec in [
            "offline:user=u0042:from=600:to=1500",
            "interrupt:platform=Android:p=0.3:from=600:to=1800",
            "interrupt:p=0.3:from=0",
            "fail:p=0.5:from=900:to=1000",
            "reject:platform=Web:p=1:from=300:to=1200",
            "slow:platform=iOS:secs=30:from=300:to=1200",
            "outage:from=2000:to=2600",
        ] {
            let a = parse(spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
            assert_eq!(parse(&a.to_string()), Ok(a.clone()), "{spec} -> {a}");
        }
        let a = parse("interrupt:platform=android:from=1:to=2:p=0.25").expect("parses");
        assert_eq!(
            a.kind,
            AnomalyKind::Interrupt {
                platform: Some("Android".into()),
                p: 0.25
            }
        );
        assert!(a.covers(1.0) && a.covers(1.5) && !a.covers(2.0) && !a.covers(0.5));
        assert_eq!(parse("outage").expect("parses").to, f64::INFINITY);
    }

    #[test]
    fn errors_name_the_problem() {
        for (spec, words) in [
            ("flood:from=1", &["unknown kind", "flood"][..]),
            ("offline:from=1:to=2", &["user= is required", "usage"]),
            ("offline:user=:from=1", &["user= is empty"]),
            ("interrupt:platform=Symbian:p=0.1", &["Symbian", "Android"]),
            ("interrupt:platform=iOS:p=1.5", &["p=1.5", "probability"]),
            ("fail:p=x", &["p=\"x\"", "number"]),
            ("fail:p=0.1:from=5:to=5", &["to=5 must be after from=5"]),
            ("fail:p=0.1:from=-5", &["from=\"-5\""]),
            ("fail:p=0.1:p=0.2", &["p given twice"]),
            ("fail:p=0.1:user=u1", &["fail takes no \"user\""]),
            ("slow:platform=iOS:secs", &["\"secs\" is not key=value"]),
            ("outage:from=10:to=NaN", &["to=\"NaN\""]),
        ] {
            let err = parse(spec).expect_err(spec);
            for w in words {
                assert!(err.contains(w), "{spec}: {err:?} should mention {w:?}");
            }
        }
    }
}
