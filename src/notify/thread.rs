//! Mail threading: every email notification gets its Message-ID when it is
//! queued (so retries resend the same one), and the Message-ID of a group's
//! first firing mail is kept in the store until the group resolves, so the
//! later mails of the group — repeats and the resolve — answer it with
//! `In-Reply-To` and `References` and mail clients thread them, across
//! restarts too. It decides nothing else about mails; sending is `email`'s.

use crate::alert::AlertStatus;
use crate::store::{Store, StoreError};

use super::Notification;

/// Store space of thread roots: key = receiver and group labels.
const SPACE: &str = "mail_threads";

fn thread_key(n: &Notification) -> String {
    serde_json::json!([n.receiver, n.group_labels]).to_string()
}

/// `n` with its Message-ID and, when its group already has a thread, the
/// Message-ID it answers. The first firing mail of a group opens the
/// thread; a mail whose group is all resolved closes it (the next firing
/// starts a new one). A test notification is never threaded.
pub fn stamp(store: &Store, n: &Notification, domain: &str) -> Result<Notification, StoreError> {
    let mut out = n.clone();
    let id = out
        .message_id
        .get_or_insert_with(|| super::email::message_id(domain))
        .clone();
    if n.test {
        return Ok(out);
    }
    let key = thread_key(n);
    let root = store.get_kv(SPACE, &key)?;
    match (n.status, root) {
        (AlertStatus::Resolved, root) => {
            out.in_reply_to = root;
            store.put_kv(SPACE, &key, None)?;
        }
        (_, Some(root)) => out.in_reply_to = Some(root),
        (_, None) => store.put_kv(SPACE, &key, Some(&id))?,
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::notify::test_notification;

    #[test]
    fn a_group_threads_until_it_resolves_across_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut firing = test_notification("mail", 0);
        firing.test = false;
        firing.group_labels = BTreeMap::from([("rule".to_string(), "r".to_string())]);
        let first = {
            let store = Store::open(dir.path()).expect("open");
            let first = stamp(&store, &firing, "example.com").expect("stamp");
            assert!(first.in_reply_to.is_none());
            let id = first.message_id.clone().expect("an id");
            assert!(id.starts_with('<') && id.ends_with("@example.com>"), "{id}");
            // Stamping again keeps an id already given.
            let again = stamp(&store, &first, "example.com").expect("stamp");
            assert_eq!(again.message_id, first.message_id);
            first
        };
        let store = Store::open(dir.path()).expect("reopen");
        let repeat = stamp(&store, &firing, "example.com").expect("stamp");
        assert_ne!(repeat.message_id, first.message_id);
        assert_eq!(repeat.in_reply_to, first.message_id);
        let mut resolved = firing.clone();
        resolved.status = AlertStatus::Resolved;
        let done = stamp(&store, &resolved, "example.com").expect("stamp");
        assert_eq!(done.in_reply_to, first.message_id);
        let next = stamp(&store, &firing, "example.com").expect("stamp");
        assert!(next.in_reply_to.is_none(), "a new thread after the resolve");
    }
}
