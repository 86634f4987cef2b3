//! The contract every store must pass: one suite, run by each store's own tests through
//! [`contract_suite!`](crate::contract_suite), so no store can drift from the others.
//!
//! A store's test crate implements [`Subject`] for a fresh, empty store (a temporary folder,
//! a new database) and invokes the macro; each case becomes a `#[test]` of that crate.

pub mod collections;
pub mod copy;
pub mod keys;
pub mod media;
pub mod model;
pub mod snapshot;
pub mod uploads;
pub mod view;

use crate::Store;

/// A store under test. [`Subject::open`] opens it; opened again after the previous handle
/// was dropped, it sees everything the previous one committed.
pub trait Subject {
    fn open(&self) -> Box<dyn Store>;
}

/// Expands to one `#[test]` per contract case, each on a store `$fresh` makes: an expression
/// of type `Option<impl Subject>`, evaluated once per test, `None` where the store cannot be
/// had here (the expression prints why; the test then checks nothing and says so).
#[macro_export]
macro_rules! contract_suite {
    ($fresh:expr) => {
        $crate::contract_suite!(@cases $fresh;
            keys::keys_and_revocations_survive_reopen,
            keys::a_duplicate_hash_is_refused_and_an_unknown_id_is_not_found,
            keys::revocation_keeps_its_first_time,
            uploads::an_upload_moves_forward_once_and_completes_idempotently,
            uploads::stale_uploads_are_the_expired_and_long_completed,
            media::a_part_is_appended_in_chunks_and_committed_once,
            media::content_is_read_by_ranges_and_survives_reopen,
            media::the_upload_secret_is_made_once_and_kept,
            media::media_records_list_in_pages_and_import_as_given,
            collections::upsert_creates_replaces_and_counts,
            collections::a_collection_keeps_its_parameters,
            collections::bad_items_are_refused_whole,
            collections::exact_and_graph_search_find_the_nearest,
            collections::every_metric_scores_as_documented,
            collections::filtered_search_and_listing_pass_only_matching_items,
            collections::deletes_by_id_and_by_filter,
            collections::dropping_a_collection_forgets_its_items,
            collections::workspaces_and_scopes_are_apart,
            collections::collections_survive_reopen,
            collections::first_writes_at_once_make_one_collection,
            collections::a_replace_keeps_the_first_created_time,
            collections::items_export_in_pages_and_import_with_their_times,
            model::random_operation_sequences_agree_with_the_oracle,
            view::a_view_reads_one_instant,
        );
    };
    (@cases $fresh:expr; $($module:ident :: $case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                match $fresh {
                    Some(subject) => $crate::contract::$module::$case(&subject),
                    None => eprintln!("SKIPPED: {}", stringify!($case)),
                }
            }
        )*
    };
}
