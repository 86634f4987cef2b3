//! Media bytes in the database, so that any gateway serves any upload: a part is the rows of
//! `media_parts` its PUT appended, in order; committed, they become the rows of
//! `media_content` under the content's SHA-256 (stored once, whatever names it). Reads take a
//! range, so serving a picture holds a chunk of it at a time.

use aimp_store::StoreError;
use postgres::Client;

use crate::error::Result;

/// The secret's name in `secrets`.
const SECRET: &str = "upload_signing";

pub fn upload_secret(client: &mut Client) -> Result<[u8; 32]> {
    let fresh: [u8; 32] = rand_secret();
    client.execute(
        "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        &[&SECRET, &fresh.as_slice()],
    )?;
    let row = client.query_one("SELECT value FROM secrets WHERE name = $1", &[&SECRET])?;
    let value: Vec<u8> = row.get(0);
    value.try_into().map_err(|_| {
        StoreError::CommitFailed {
            reason: "the stored upload signing secret is not 32 bytes".into(),
        }
        .into()
    })
}

fn rand_secret() -> [u8; 32] {
    use rand::RngCore;
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    secret
}

pub fn drop_part(client: &mut Client, upload_id: &str) -> Result<()> {
    client.execute(
        "DELETE FROM media_parts WHERE upload_id = $1",
        &[&upload_id],
    )?;
    Ok(())
}

pub fn append_part(client: &mut Client, upload_id: &str, bytes: &[u8]) -> Result<()> {
    client.execute(
        "INSERT INTO media_parts (upload_id, seq, bytes) \
         SELECT $1, coalesce(max(seq) + 1, 0), $2 FROM media_parts WHERE upload_id = $1",
        &[&upload_id, &bytes],
    )?;
    Ok(())
}

pub fn read_part(client: &mut Client, upload_id: &str) -> Result<Option<Vec<u8>>> {
    let rows = client.query(
        "SELECT bytes FROM media_parts WHERE upload_id = $1 ORDER BY seq",
        &[&upload_id],
    )?;
    if rows.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::new();
    for row in rows {
        out.extend_from_slice(row.get::<_, &[u8]>(0));
    }
    Ok(Some(out))
}

pub fn commit_content(client: &mut Client, upload_id: &str, sha256: &str) -> Result<()> {
    let mut txn = client.transaction()?;
    let stored = txn
        .query_opt(
            "SELECT 1 FROM media_content WHERE sha256 = $1 LIMIT 1",
            &[&sha256],
        )?
        .is_some();
    let part = txn
        .query_opt(
            "SELECT 1 FROM media_parts WHERE upload_id = $1 LIMIT 1",
            &[&upload_id],
        )?
        .is_some();
    if !stored {
        if !part {
            return Err(StoreError::CommitFailed {
                reason: format!(
                    "upload {upload_id} has no bytes and content {sha256} is not stored"
                ),
            }
            .into());
        }
        txn.execute(
            "INSERT INTO media_content (sha256, seq, bytes) \
             SELECT $2, seq, bytes FROM media_parts WHERE upload_id = $1",
            &[&upload_id, &sha256],
        )?;
    }
    txn.execute(
        "DELETE FROM media_parts WHERE upload_id = $1",
        &[&upload_id],
    )?;
    txn.commit()?;
    Ok(())
}

pub fn part_ids(client: &mut Client) -> Result<Vec<String>> {
    Ok(client
        .query(
            "SELECT DISTINCT upload_id FROM media_parts ORDER BY upload_id",
            &[],
        )?
        .into_iter()
        .map(|r| r.get(0))
        .collect())
}

pub fn content_len(client: &mut Client, sha256: &str) -> Result<Option<u64>> {
    let row = client.query_one(
        "SELECT sum(length(bytes))::bigint FROM media_content WHERE sha256 = $1",
        &[&sha256],
    )?;
    Ok(row.get::<_, Option<i64>>(0).map(|n| n as u64))
}

pub fn read_content(client: &mut Client, sha256: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
    let (from, to) = (
        offset as i64,
        offset.saturating_add(len as u64).min(i64::MAX as u64) as i64,
    );
    // Each row's place in the content, then the part of each row that falls in [from, to).
    let rows = client.query(
        "WITH c AS ( \
             SELECT seq, bytes, \
                    sum(length(bytes)) OVER (ORDER BY seq) - length(bytes) AS start \
             FROM media_content WHERE sha256 = $1) \
         SELECT substring(bytes FROM (greatest($2 - start, 0) + 1)::int \
                          FOR (least($3, start + length(bytes)) - greatest($2, start))::int) \
         FROM c WHERE start + length(bytes) > $2 AND start < $3 ORDER BY seq",
        &[&sha256, &from, &to],
    )?;
    let mut out = Vec::with_capacity(len.min(1 << 20));
    for row in rows {
        out.extend_from_slice(row.get::<_, &[u8]>(0));
    }
    Ok(out)
}
