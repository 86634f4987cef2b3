//! The PostgreSQL store against the contract every store passes (`aimp_store::contract`), each
//! test on an empty database of a real server (`aimp_store_postgres::harness`).

use aimp_store::Store;
use aimp_store::contract::Subject;
use aimp_store_postgres::{PoolOptions, PostgresStore, harness};

/// A store on a database of its own.
struct Postgres(String);

impl Subject for Postgres {
    fn open(&self) -> Box<dyn Store> {
        Box::new(PostgresStore::open(&self.0, PoolOptions::default()).expect("open the store"))
    }
}

aimp_store::contract_suite!(harness::server().map(|s| Postgres(s.fresh_database())));
