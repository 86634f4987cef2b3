//! The store's schema, owned by versioned migrations the gateway applies itself at start-up.
//!
//! `aimp_schema` holds the version the database is at. Opening applies every newer migration,
//! each in its own transaction, under an advisory lock so that gateways starting together do
//! not race; a database at a newer version than this build knows is refused, naming both.

use postgres::Client;

use crate::error::{Error, Result};

/// What each version adds, in order; a database at version `n` has run the first `n`.
const MIGRATIONS: &[&str] = &[
    // 1: keys, uploads, media records, collections and their items.
    r#"
    CREATE EXTENSION IF NOT EXISTS vector;

    CREATE TABLE api_keys (
        id text PRIMARY KEY,
        hash bytea NOT NULL UNIQUE,
        record jsonb NOT NULL
    );
    CREATE TABLE uploads (
        id text PRIMARY KEY,
        record jsonb NOT NULL
    );
    CREATE TABLE media (
        media_ref text PRIMARY KEY,
        record jsonb NOT NULL
    );
    CREATE TABLE collections (
        id bigserial PRIMARY KEY,
        workspace text NOT NULL,
        model text NOT NULL,
        collection text NOT NULL,
        scope text NOT NULL,
        params jsonb NOT NULL,
        count bigint NOT NULL DEFAULT 0,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        UNIQUE (workspace, model, collection, scope)
    );
    -- Ids in byte order, as every store lists them. Each collection has a partial HNSW index
    -- of its own on `embedding::vector(dim)`, made with the collection.
    CREATE TABLE items (
        collection_id bigint NOT NULL REFERENCES collections (id) ON DELETE CASCADE,
        id text COLLATE "C" NOT NULL,
        record jsonb NOT NULL,
        embedding vector NOT NULL,
        PRIMARY KEY (collection_id, id)
    );

    -- What a filter reads, exactly as `aimp_store::filter` reads it: every value at a dotted
    -- path, looking into every element of an array met on the way ...
    CREATE FUNCTION aimp_walk(doc jsonb, path text[]) RETURNS SETOF jsonb
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
    DECLARE
        e jsonb;
    BEGIN
        IF cardinality(path) = 0 THEN
            RETURN NEXT doc;
        ELSIF jsonb_typeof(doc) = 'object' THEN
            IF doc ? path[1] THEN
                RETURN QUERY SELECT aimp_walk(doc -> path[1], path[2:]);
            END IF;
        ELSIF jsonb_typeof(doc) = 'array' THEN
            FOR e IN SELECT jsonb_array_elements(doc) LOOP
                RETURN QUERY SELECT aimp_walk(e, path);
            END LOOP;
        END IF;
    END $$;

    -- ... and each such value, or each element of one that is an array.
    CREATE FUNCTION aimp_elements(doc jsonb, path text[]) RETURNS SETOF jsonb
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
        SELECT CASE WHEN jsonb_typeof(v) = 'array' THEN e ELSE v END
        FROM aimp_walk(doc, path) AS v
        LEFT JOIN LATERAL jsonb_array_elements(
            CASE WHEN jsonb_typeof(v) = 'array' THEN v ELSE '[]'::jsonb END
        ) AS e ON true
        WHERE jsonb_typeof(v) <> 'array' OR e IS NOT NULL
    $$;

    -- An RFC 3339 datetime, or null for anything else (never an error).
    CREATE FUNCTION aimp_time(v jsonb) RETURNS timestamptz
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
    BEGIN
        IF jsonb_typeof(v) <> 'string' OR (v #>> '{}') !~
            '^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$' THEN
            RETURN NULL;
        END IF;
        RETURN (v #>> '{}')::timestamptz;
    EXCEPTION WHEN others THEN
        RETURN NULL;
    END $$;
    "#,
    // 2: media bytes, in chunks, and the secret every gateway signs upload URLs with.
    r#"
    CREATE TABLE media_parts (
        upload_id text NOT NULL,
        seq integer NOT NULL,
        bytes bytea NOT NULL,
        PRIMARY KEY (upload_id, seq)
    );
    CREATE TABLE media_content (
        sha256 text NOT NULL,
        seq integer NOT NULL,
        bytes bytea NOT NULL,
        PRIMARY KEY (sha256, seq)
    );
    CREATE TABLE secrets (
        name text PRIMARY KEY,
        value bytea NOT NULL
    );
    "#,
    // 3: media listed in byte order, as every store lists them (a copy pages through both).
    r#"
    ALTER TABLE media ALTER COLUMN media_ref TYPE text COLLATE "C";
    "#,
];

/// The schema version this build writes.
pub const VERSION: i32 = MIGRATIONS.len() as i32;

/// Any number, the same for every gateway: the advisory lock migrations run under.
const MIGRATION_LOCK: i64 = 0x6169_6d70_5f73_6368;

/// Brings the database to [`VERSION`], or refuses one that is newer.
pub fn migrate(client: &mut Client) -> Result<()> {
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])?;
    let outcome = apply(client);
    let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
    outcome?;
    unlocked?;
    Ok(())
}

fn apply(client: &mut Client) -> Result<()> {
    client.batch_execute("CREATE TABLE IF NOT EXISTS aimp_schema (version integer NOT NULL)")?;
    let at: i32 = match client.query_opt("SELECT version FROM aimp_schema", &[])? {
        Some(row) => row.get(0),
        None => {
            client.execute("INSERT INTO aimp_schema (version) VALUES (0)", &[])?;
            0
        }
    };
    if at > VERSION {
        return Err(Error::NewerSchema {
            database: at,
            build: VERSION,
        });
    }
    for (number, sql) in MIGRATIONS.iter().enumerate().skip(at as usize) {
        let version = number as i32 + 1;
        let mut txn = client.transaction()?;
        txn.batch_execute(sql)?;
        txn.execute("UPDATE aimp_schema SET version = $1", &[&version])?;
        txn.commit()?;
        tracing::info!(version, "applied a schema migration");
    }
    Ok(())
}
