//! Faults the daemon must absorb without losing what it acknowledged: a
//! full disk (a real, small tmpfs), damaged journal tails, a store that
//! will not take writes or was deleted, receivers that lie about
//! `Retry-After`, answer with endless bodies or hang.

mod big_reply;
mod disk_full;
mod journal_tail;
mod receivers;
mod store_deleted;
mod tmpfs;
