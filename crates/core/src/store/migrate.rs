//! Numbered schema migrations, embedded at build time. Each runs in its own IMMEDIATE
//! transaction together with the bump of `user_version`, so a crash leaves the schema at
//! exactly one known version.

use rusqlite::Connection;

pub const MIGRATIONS: &[(u32, &str)] = &[(1, include_str!("migrations/0001_history.sql"))];

pub fn apply(conn: &mut Connection) -> rusqlite::Result<u32> {
    let mut version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for &(number, sql) in MIGRATIONS {
        if number <= version {
            continue;
        }
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", number)?;
        tx.commit()?;
        version = number;
    }
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_to_an_empty_database_and_are_idempotent() {
        let mut conn = Connection::open_in_memory().unwrap();
        let latest = MIGRATIONS.last().unwrap().0;
        assert_eq!(apply(&mut conn).unwrap(), latest);
        assert_eq!(apply(&mut conn).unwrap(), latest, "a second run changes nothing");
    }

    #[test]
    fn migrations_are_numbered_consecutively_from_one() {
        for (i, (number, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*number as usize, i + 1);
        }
    }
}
