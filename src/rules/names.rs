//! The names a rule may use: event names, event fields and the values of
//! enumerated fields, each checked with a "did you mean" suggestion when a
//! known name is close. Shared by load-time checks of `RULE` and run-time
//! field reads, so a typo gets the same message wherever it is made. It
//! owns the messages, not the lists (those belong to the event model).

use crate::event::{enumerated_values, EVENT_NAMES, FIELDS, PLATFORMS};

/// The known name closest to `word`, if one is close enough to be a typo:
/// same letters in another case, or a few edits away (one for short
/// words, up to three for long ones; a swap of neighbours is one edit).
pub fn closest<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = word.to_lowercase();
    let allowed = (word.chars().count() / 4).clamp(1, 3);
    known
        .into_iter()
        .map(|k| (strsim::damerau_levenshtein(&lower, &k.to_lowercase()), k))
        .filter(|(d, k)| *d <= allowed && *k != word)
        // On a tie, the name of the same length: "minutez" is "minutes".
        .min_by_key(|(d, k)| (*d, k.len().abs_diff(word.len())))
        .map(|(_, k)| k)
}

/// ` (did you mean "x"?)` when a known name is close, else `""`.
pub fn did_you_mean<'a>(word: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    closest(word, known)
        .map(|k| format!(" (did you mean \"{k}\"?)"))
        .unwrap_or_default()
}

/// Whether `name` is an event field: one of the event model's fields or
/// `extra.NAME`, a body field the decoder does not know.
pub fn is_field(name: &str) -> bool {
    FIELDS.contains(&name) || name.strip_prefix("extra.").is_some_and(|n| !n.is_empty())
}

/// `Err` with `unknown field "platfrom" (did you mean "platform"?)` unless
/// `name` is an event field (see [`is_field`]).
pub fn check_field(name: &str) -> Result<(), String> {
    if is_field(name) {
        return Ok(());
    }
    let hint = match closest(name, FIELDS.iter().copied()) {
        Some(k) => format!(" (did you mean \"{k}\"?)"),
        None => format!(
            " (fields: {}; other body fields are extra.NAME)",
            FIELDS.join(", ")
        ),
    };
    Err(format!("unknown field \"{name}\"{hint}"))
}

/// `Err` with `unknown event "call_rejectd" (did you mean "call_rejected"?)`
/// unless `name` is a value the `event` field takes. A command with its
/// role prefix (`callee_reject_call`) gets the event it becomes.
pub fn check_event(name: &str) -> Result<(), String> {
    if EVENT_NAMES.contains(&name) {
        return Ok(());
    }
    let bare = name
        .strip_prefix("caller_")
        .or_else(|| name.strip_prefix("callee_"))
        .filter(|b| EVENT_NAMES.contains(b));
    Err(match bare {
        Some(b) => format!(
            "unknown event \"{name}\": events are named without the role prefix \
             (did you mean \"{b}\"? `where: #{{ role: ... }}` picks the role)"
        ),
        None => format!(
            "unknown event \"{name}\"{}",
            did_you_mean(name, EVENT_NAMES.iter().copied())
        ),
    })
}

/// What a `where` value of `field` means at load: fine, a warning (a
/// platform callwatch does not know yet), or an error (a value an
/// enumerated field never takes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueCheck {
    Ok,
    Warning(String),
    Error(String),
}

/// Checks one `where` value (as text) of `field`.
pub fn check_value(field: &str, value: &str) -> ValueCheck {
    if field == "platform" {
        if PLATFORMS.iter().any(|p| p.eq_ignore_ascii_case(value)) {
            return ValueCheck::Ok;
        }
        return ValueCheck::Warning(format!(
            "\"{value}\" is no known platform{} (known: {}); kept, since Tencent adds platforms",
            did_you_mean(value, PLATFORMS.iter().copied()),
            PLATFORMS.join(", ")
        ));
    }
    let Some(values) = enumerated_values(field) else {
        return ValueCheck::Ok;
    };
    // `""` is the result of a call still going on.
    if values.contains(&value) || (field == "call_result" && value.is_empty()) {
        return ValueCheck::Ok;
    }
    let listed: Vec<String> = values.iter().map(|v| format!("\"{v}\"")).collect();
    ValueCheck::Error(format!(
        "{field} is never \"{value}\"{} (values: {})",
        did_you_mean(value, values.iter().copied()),
        listed.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_catch_typos_and_case_only() {
        assert_eq!(
            closest("platfrom", FIELDS.iter().copied()),
            Some("platform")
        );
        assert_eq!(
            closest("call_rejectd", EVENT_NAMES.iter().copied()),
            Some("call_rejected")
        );
        assert_eq!(closest("Callee", ["caller", "callee"]), Some("callee"));
        assert_eq!(closest("region", FIELDS.iter().copied()), None);
        assert_eq!(closest("xyz", ["abc"]), None);
    }

    #[test]
    fn fields_and_events() {
        assert_eq!(check_field("platform"), Ok(()));
        assert_eq!(check_field("extra.Region"), Ok(()));
        assert_eq!(
            check_field("platfrom").unwrap_err(),
            "unknown field \"platfrom\" (did you mean \"platform\"?)"
        );
        assert!(check_field("extra.").is_err());
        let far = check_field("Region").unwrap_err();
        assert!(far.contains("other body fields are extra.NAME"), "{far}");
        assert_eq!(check_event("call_rejected"), Ok(()));
        assert_eq!(
            check_event("call_rejectd").unwrap_err(),
            "unknown event \"call_rejectd\" (did you mean \"call_rejected\"?)"
        );
        let prefixed = check_event("callee_reject_call").unwrap_err();
        assert!(
            prefixed.contains("did you mean \"reject_call\"?"),
            "{prefixed}"
        );
        assert_eq!(check_event("lunch").unwrap_err(), "unknown event \"lunch\"");
    }

    #[test]
    fn every_event_the_decoders_make_is_known() {
        use crate::ingest::decode::{CALL_STATUS_COMMANDS, FAMILY_A_COMMANDS};
        for command in FAMILY_A_COMMANDS.iter().chain(CALL_STATUS_COMMANDS) {
            let bare = command
                .strip_prefix("caller_")
                .or_else(|| command.strip_prefix("callee_"))
                .unwrap_or(command);
            assert_eq!(check_event(bare), Ok(()), "{command}");
        }
    }

    #[test]
    fn values_of_enumerated_fields_and_platforms() {
        assert_eq!(check_value("role", "callee"), ValueCheck::Ok);
        assert_eq!(
            check_value("role", "Callee"),
            ValueCheck::Error(
                "role is never \"Callee\" (did you mean \"callee\"?) (values: \"caller\", \"callee\")"
                    .into()
            )
        );
        assert!(
            matches!(check_value("media_type", "vid"), ValueCheck::Error(m) if m.contains("\"audio\", \"video\""))
        );
        assert!(matches!(
            check_value("call_result", "normal"),
            ValueCheck::Error(_)
        ));
        assert_eq!(check_value("call_result", ""), ValueCheck::Ok);
        assert_eq!(check_value("user_id", "anything"), ValueCheck::Ok);
        assert_eq!(check_value("platform", "web"), ValueCheck::Ok);
        assert_eq!(check_value("platform", "uni-app"), ValueCheck::Ok);
        match check_value("platform", "Andriod") {
            ValueCheck::Warning(m) => {
                assert!(
                    m.starts_with("\"Andriod\" is no known platform (did you mean \"Android\"?)"),
                    "{m}"
                )
            }
            other => panic!("{other:?}"),
        }
    }
}
