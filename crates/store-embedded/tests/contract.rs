//! The embedded store against the contract every store passes (`aimp_store::contract`).

use aimp_store::Store;
use aimp_store::contract::Subject;
use aimp_store_embedded::{DEFAULT_CACHE_BYTES, EmbeddedStore};

/// A store in a temporary folder of its own.
struct Embedded(tempfile::TempDir);

impl Subject for Embedded {
    fn open(&self) -> Box<dyn Store> {
        Box::new(EmbeddedStore::open(self.0.path(), DEFAULT_CACHE_BYTES).expect("open the store"))
    }
}

aimp_store::contract_suite!(Some(Embedded(
    tempfile::tempdir().expect("a temporary folder")
)));

fn fresh() -> Embedded {
    Embedded(tempfile::tempdir().expect("a temporary folder"))
}

#[test]
fn a_copy_holds_everything_and_an_interrupted_one_resumes() {
    aimp_store::contract::copy::a_copy_holds_everything_and_an_interrupted_one_resumes(
        &fresh(),
        &fresh(),
    );
}

#[test]
fn a_copy_holds_the_source_as_it_was_when_it_started() {
    aimp_store::contract::copy::a_copy_holds_the_source_as_it_was_when_it_started(
        &fresh(),
        &fresh(),
    );
}

#[test]
fn an_archive_restores_everything_as_it_was() {
    aimp_store::contract::snapshot::an_archive_restores_everything_as_it_was(&fresh(), &fresh());
}

#[test]
fn a_damaged_archive_is_refused_and_writes_nothing() {
    aimp_store::contract::snapshot::a_damaged_archive_is_refused_and_writes_nothing(
        &fresh(),
        &fresh(),
    );
}

#[test]
fn a_destination_with_data_of_its_own_is_refused_untouched() {
    aimp_store::contract::copy::a_destination_with_data_of_its_own_is_refused_untouched(
        &fresh(),
        &fresh(),
    );
}
