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

/// An embedded store in a temporary folder, the other side of a copy.
struct Embedded(tempfile::TempDir);

impl Subject for Embedded {
    fn open(&self) -> Box<dyn Store> {
        Box::new(
            aimp_store_embedded::EmbeddedStore::open(
                self.0.path(),
                aimp_store_embedded::DEFAULT_CACHE_BYTES,
            )
            .expect("open the store"),
        )
    }
}

fn embedded() -> Embedded {
    Embedded(tempfile::tempdir().expect("a temporary folder"))
}

fn postgres() -> Option<Postgres> {
    harness::server().map(|s| Postgres(s.fresh_database()))
}

#[test]
fn a_copy_from_embedded_into_postgres_holds_everything_and_resumes() {
    let Some(to) = postgres() else {
        return eprintln!("SKIPPED: no PostgreSQL");
    };
    aimp_store::contract::copy::a_copy_holds_everything_and_an_interrupted_one_resumes(
        &embedded(),
        &to,
    );
}

#[test]
fn a_copy_from_postgres_into_embedded_holds_everything_and_resumes() {
    let Some(from) = postgres() else {
        return eprintln!("SKIPPED: no PostgreSQL");
    };
    aimp_store::contract::copy::a_copy_holds_everything_and_an_interrupted_one_resumes(
        &from,
        &embedded(),
    );
}

#[test]
fn a_postgres_source_written_during_a_copy_is_copied_as_it_was_when_it_started() {
    let Some(from) = postgres() else {
        return eprintln!("SKIPPED: no PostgreSQL");
    };
    aimp_store::contract::copy::a_copy_holds_the_source_as_it_was_when_it_started(
        &from,
        &embedded(),
    );
}

#[test]
fn a_postgres_archive_restores_into_embedded_and_back() {
    let (Some(from), Some(to)) = (postgres(), postgres()) else {
        return eprintln!("SKIPPED: no PostgreSQL");
    };
    aimp_store::contract::snapshot::an_archive_restores_everything_as_it_was(&from, &embedded());
    aimp_store::contract::snapshot::an_archive_restores_everything_as_it_was(&embedded(), &to);
}

#[test]
fn a_damaged_archive_writes_nothing_into_postgres() {
    let Some(to) = postgres() else {
        return eprintln!("SKIPPED: no PostgreSQL");
    };
    aimp_store::contract::snapshot::a_damaged_archive_is_refused_and_writes_nothing(
        &embedded(),
        &to,
    );
}

#[test]
fn a_postgres_destination_with_data_of_its_own_is_refused_untouched() {
    let Some(to) = postgres() else {
        return eprintln!("SKIPPED: no PostgreSQL");
    };
    aimp_store::contract::copy::a_destination_with_data_of_its_own_is_refused_untouched(
        &embedded(),
        &to,
    );
}
