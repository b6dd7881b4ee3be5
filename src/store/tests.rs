//! Unit tests of the store: outbox, silences, kv and pending transitions.

use super::*;

#[test]
fn outbox_lifecycle_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = {
        let s = Store::open(dir.path()).expect("open");
        let id = s.enqueue("ops", "{}", 1000).expect("enqueue");
        s.enqueue("mail", "{}", 1000).expect("enqueue");
        assert_eq!(s.due("ops", 1000, 10).expect("due").len(), 1);
        s.reschedule(id, 5000, "connection refused")
            .expect("reschedule");
        assert!(s.due("ops", 4999, 10).expect("due").is_empty());
        id
    };
    let s = Store::open(dir.path()).expect("reopen");
    let due = s.due("ops", 5000, 10).expect("due");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].attempts, 1);
    assert_eq!(due[0].last_error.as_deref(), Some("connection refused"));
    assert_eq!(s.next_due("ops").expect("next"), Some(5000));
    s.remove(id).expect("remove");
    assert_eq!(s.outbox_len().expect("len"), 1);
}

#[test]
fn expired_and_excess_notifications_are_taken_out() {
    let s = Store::in_memory().expect("open");
    for t in 0..5 {
        s.enqueue("ops", &format!("{t}"), t * 1000)
            .expect("enqueue");
    }
    s.enqueue("mail", "m", 0).expect("enqueue");
    let old = s.take_expired("ops", 2000).expect("expire");
    assert_eq!(
        old.iter().map(|i| i.payload.as_str()).collect::<Vec<_>>(),
        ["0", "1"]
    );
    let excess = s.take_oldest_beyond("ops", 2).expect("trim");
    assert_eq!(excess.len(), 1);
    assert_eq!(excess[0].payload, "2");
    assert_eq!(s.due("ops", i64::MAX, 10).expect("due").len(), 2);
    assert_eq!(s.outbox_len().expect("len"), 3, "mail untouched");
}

#[test]
fn silences_and_kv() {
    let s = Store::in_memory().expect("open");
    let sil = Silence {
        id: "a".into(),
        matchers: vec![Matcher {
            name: "platform".into(),
            value: "Android".into(),
            is_regex: false,
            is_equal: true,
        }],
        starts_at: 0,
        ends_at: 100,
        comment: "release".into(),
        created_by: "ops".into(),
        updated_at: 0,
    };
    s.put_silence(&sil).expect("put");
    assert_eq!(s.silences().expect("list"), vec![sil.clone()]);
    assert_eq!(s.get_silence("a").expect("get"), Some(sil.clone()));
    // Ended at 100: kept at cutoff 100, gone after.
    assert_eq!(s.delete_silences_ended_before(100).expect("gc"), 0);
    assert_eq!(s.delete_silences_ended_before(101).expect("gc"), 1);
    assert!(s.silences().expect("list").is_empty());
    s.put_silence(&sil).expect("put again");
    s.put_kv("state", "k", Some("v")).expect("put");
    assert_eq!(s.kv("state").expect("kv"), vec![("k".into(), "v".into())]);
    s.put_kv("state", "k", None).expect("delete");
    assert!(s.kv("state").expect("kv").is_empty());
}

#[test]
fn pending_transitions_leave_with_their_notifications() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ids = {
        let s = Store::open(dir.path()).expect("open");
        let ids = s
            .apply_kv_pending(
                "keys",
                &[("r/k".into(), Some("firing".into()))],
                &["t1".into(), "t2".into()],
            )
            .expect("save");
        // t1 reached `ops` but is still owed to `mail`; t2 is done.
        s.enqueue_releasing("ops", "{}", 1, &[ids[0]], &[ids[1]])
            .expect("enqueue");
        ids
    };
    let s = Store::open(dir.path()).expect("reopen");
    assert_eq!(s.kv("keys").expect("kv").len(), 1);
    assert_eq!(s.outbox_len().expect("len"), 1);
    assert_eq!(
        s.pending().expect("pending"),
        vec![(ids[0], "t1".to_string(), vec!["ops".to_string()])]
    );
    s.release_pending(&[ids[0]]).expect("release");
    assert!(s.pending().expect("pending").is_empty());
}
