//! The graph on disk, in our own format, so a restart does not rebuild every graph.
//!
//! A file is written beside its final name, fsynced, renamed into place and the folder
//! fsynced. Its CRC-32 and length are recorded in redb with the store position it covers; a
//! file whose length, checksum, parameters or shapes disagree is not trusted (the caller
//! rebuilds from the store).
//!
//! Layout (little-endian): magic `AIMPHNSW`, format version (u32), dim (u32), metric (u8),
//! m (u32), ef_construction (u32), seed (u64), node count n (u64), packed entry point (u64);
//! then keys (n × u64), levels (n × u8), the tombstone bitset (⌈n/64⌉ × u64), vectors
//! (n × dim × f32), level-0 lists (n × (1 + 2m) × u32), and each upper-level node's lists in
//! node order (level × (1 + m) × u32).

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

use crate::Metric;
use crate::hnsw::{Extent, Hnsw, HnswParams, Nodes};

const MAGIC: &[u8; 8] = b"AIMPHNSW";
const VERSION: u32 = 1;

/// What redb records about a saved graph.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphFile {
    /// File name inside the graphs folder.
    pub file: String,
    pub bytes: u64,
    pub crc32: u32,
    /// The collection's `next_item` when the graph was saved: it holds every item below.
    pub covers_next_item: u64,
    /// The collection's `deletion_seq` when the graph was saved: its tombstones include every
    /// deletion logged below.
    pub covers_deletion_seq: u64,
}

/// A graph file that could not be written.
#[derive(Debug, thiserror::Error)]
#[error("graph file {path}")]
pub struct GraphFileError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Writes the first `extent.nodes` nodes of the graph atomically to `dir/name`; returns the
/// file's length and checksum.
pub fn save(
    graph: &Hnsw,
    extent: Extent,
    dir: &Path,
    name: &str,
) -> Result<(u64, u32), GraphFileError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| GraphFileError { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let file = File::create(&tmp).map_err(io(&tmp))?;
    let mut out = Hashing::new(BufWriter::with_capacity(1 << 20, file));
    write(&mut out, graph, extent).map_err(io(&tmp))?;
    let (writer, crc, bytes) = out.finish();
    let file = writer.into_inner().map_err(|e| GraphFileError {
        path: tmp.clone(),
        source: e.into_error(),
    })?;
    file.sync_all().map_err(io(&tmp))?;
    let target = dir.join(name);
    std::fs::rename(&tmp, &target).map_err(io(&target))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    Ok((bytes, crc))
}

/// Writes part of one section of the file for a range of nodes.
type WriteNodes<'a> =
    dyn Fn(&mut dyn Write, &Nodes, std::ops::Range<usize>) -> std::io::Result<()> + 'a;

/// Nodes written per hold of the graph's node lock: appends (a commit adding items) wait
/// for one chunk at most, never for the whole file.
const WRITE_CHUNK: usize = 8192;

/// Writes the first `extent.nodes` nodes (all fully linked) while the graph keeps taking
/// inserts and deletes. Nodes never move and their keys, levels and vectors never change; a
/// neighbour list may gain a node appended since, which is left out (such nodes are not in
/// the file, and loading adds them from the store again).
fn write(out: &mut impl Write, graph: &Hnsw, extent: Extent) -> std::io::Result<()> {
    let p = graph.params();
    let Extent { nodes: n, entry } = extent;
    out.write_all(MAGIC)?;
    out.write_all(&VERSION.to_le_bytes())?;
    out.write_all(&(p.dim as u32).to_le_bytes())?;
    out.write_all(&[metric_byte(p.metric)])?;
    out.write_all(&(p.m as u32).to_le_bytes())?;
    out.write_all(&(p.ef_construction as u32).to_le_bytes())?;
    out.write_all(&p.seed.to_le_bytes())?;
    out.write_all(&(n as u64).to_le_bytes())?;
    out.write_all(&entry.to_le_bytes())?;
    let chunks = || {
        (0..n)
            .step_by(WRITE_CHUNK)
            .map(move |a| a..(a + WRITE_CHUNK).min(n))
    };
    let section = |out: &mut dyn Write, f: &WriteNodes<'_>| -> std::io::Result<()> {
        for range in chunks() {
            graph.with_nodes(|nodes, _| f(out, nodes, range))?;
        }
        Ok(())
    };
    section(out, &|out, nodes, r| {
        nodes.keys[r]
            .iter()
            .try_for_each(|k| out.write_all(&k.to_le_bytes()))
    })?;
    section(out, &|out, nodes, r| out.write_all(&nodes.levels[r]))?;
    // The tombstone words, the last one without bits of nodes past `n`.
    graph.with_nodes(|nodes, _| {
        for (w, d) in nodes.deleted[..n.div_ceil(64)].iter().enumerate() {
            let mut word = d.load(Relaxed);
            let past = (w + 1) * 64;
            if past > n {
                word &= u64::MAX >> (past - n);
            }
            out.write_all(&word.to_le_bytes())?;
        }
        Ok::<_, std::io::Error>(())
    })?;
    section(out, &|out, nodes, r| {
        nodes.vectors[r.start * p.dim..r.end * p.dim]
            .iter()
            .try_for_each(|v| out.write_all(&v.to_le_bytes()))
    })?;
    let level0 = 1 + 2 * p.m;
    section(out, &|out, nodes, r| {
        nodes.level0[r.start * level0..r.end * level0]
            .chunks(level0)
            .try_for_each(|list| write_list(out, list, n))
    })?;
    section(out, &|out, nodes, r| {
        nodes.upper[r].iter().try_for_each(|upper| {
            upper
                .chunks(1 + p.m)
                .try_for_each(|list| write_list(out, list, n))
        })
    })?;
    Ok(())
}

/// A neighbour list (`count`, then slots) without the neighbours numbered `n` or above.
fn write_list(out: &mut dyn Write, list: &[AtomicU32], n: usize) -> std::io::Result<()> {
    let count = (list[0].load(Relaxed) as usize).min(list.len() - 1);
    let kept: Vec<u32> = list[1..=count]
        .iter()
        .map(|s| s.load(Relaxed))
        .filter(|&s| (s as usize) < n)
        .collect();
    out.write_all(&(kept.len() as u32).to_le_bytes())?;
    for s in &kept {
        out.write_all(&s.to_le_bytes())?;
    }
    for _ in kept.len()..list.len() - 1 {
        out.write_all(&0u32.to_le_bytes())?;
    }
    Ok(())
}

fn metric_byte(m: Metric) -> u8 {
    match m {
        Metric::Cosine => 0,
        Metric::Dot => 1,
        Metric::L2 => 2,
    }
}

/// Reads `path` back, checking it against what redb recorded and the collection's params.
/// Any disagreement is an error naming it; the caller rebuilds.
pub fn load(path: &Path, expected: &GraphFile, params: &HnswParams) -> Result<Hnsw, String> {
    let file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    if len != expected.bytes {
        return Err(format!("is {len} bytes; {} were written", expected.bytes));
    }
    let mut input = Hashing::new(BufReader::with_capacity(1 << 20, file));
    let graph = read(&mut input, params, len).map_err(|e| format!("cannot be read: {e}"))?;
    let (_, crc, read_bytes) = input.finish();
    if read_bytes != len {
        return Err(format!("has {} trailing bytes", len - read_bytes));
    }
    if crc != expected.crc32 {
        return Err(format!(
            "CRC-32 is {crc:08x}; {:08x} was recorded",
            expected.crc32
        ));
    }
    Ok(graph)
}

/// Reads a graph from a file of `len` bytes. Every count that sizes an allocation is first
/// checked against `len`, so a damaged header is an error, not a huge allocation.
fn read(input: &mut impl Read, p: &HnswParams, len: u64) -> std::io::Result<Hnsw> {
    let bad = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let mut magic = [0u8; 8];
    input.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(bad("not a graph file".into()));
    }
    let version = read_u32(input)?;
    if version != VERSION {
        return Err(bad(format!("format version {version}, expected {VERSION}")));
    }
    let dim = read_u32(input)? as usize;
    let mut metric = [0u8; 1];
    input.read_exact(&mut metric)?;
    let m = read_u32(input)? as usize;
    let ef_construction = read_u32(input)? as usize;
    let seed = read_u64(input)?;
    let stored = (dim, metric[0], m, ef_construction, seed);
    let wanted = (p.dim, metric_byte(p.metric), p.m, p.ef_construction, p.seed);
    if stored != wanted {
        return Err(bad(format!(
            "parameters {stored:?} differ from the collection's {wanted:?}"
        )));
    }
    let n = usize::try_from(read_u64(input)?).map_err(|e| bad(e.to_string()))?;
    if n >= u32::MAX as usize {
        return Err(bad(format!("{n} nodes")));
    }
    let entry = read_u64(input)?;
    let fixed = fixed_bytes(n, p)
        .filter(|&need| need <= len)
        .ok_or_else(|| {
            bad(format!(
                "says {n} nodes, more than its {len} bytes can hold"
            ))
        })?;
    let mut nodes = Nodes {
        keys: read_vec(input, n, u64::from_le_bytes)?,
        ..Nodes::default()
    };
    nodes.levels = vec![0u8; n];
    input.read_exact(&mut nodes.levels)?;
    nodes.deleted = read_vec(input, n.div_ceil(64), |b: [u8; 8]| {
        AtomicU64::new(u64::from_le_bytes(b))
    })?;
    nodes.vectors = read_vec(input, n * dim, f32::from_le_bytes)?;
    crate::huge_pages::advise(&nodes.vectors);
    nodes.level0 = read_vec(input, n * (1 + 2 * m), |b| {
        AtomicU32::new(u32::from_le_bytes(b))
    })?;
    let upper_slots: u64 = nodes.levels.iter().map(|&l| u64::from(l)).sum::<u64>() * (1 + m) as u64;
    if fixed + upper_slots * 4 != len {
        return Err(bad(format!(
            "its levels need {} bytes; the file has {len}",
            fixed + upper_slots * 4
        )));
    }
    nodes.upper = Vec::with_capacity(n);
    for &level in &nodes.levels {
        let slots: Vec<AtomicU32> = read_vec(input, usize::from(level) * (1 + m), |b| {
            AtomicU32::new(u32::from_le_bytes(b))
        })?;
        nodes.upper.push(slots.into_boxed_slice());
    }
    // Shapes: keys increase, every link and the entry point name a node, counts fit, and a
    // link at a level names a node that reaches that level (a walk reads its list there).
    if nodes.keys.windows(2).any(|w| w[0] >= w[1]) {
        return Err(bad("keys do not increase".into()));
    }
    let valid_list = |list: &[AtomicU32], level: usize| {
        let count = list[0].load(Relaxed) as usize;
        count < list.len()
            && list[1..=count].iter().all(|s| {
                let s = s.load(Relaxed) as usize;
                s < n && usize::from(nodes.levels[s]) >= level
            })
    };
    if !nodes.level0.chunks(1 + 2 * m).all(|l| valid_list(l, 0))
        || !nodes.upper.iter().all(|u| {
            u.chunks(1 + m)
                .enumerate()
                .all(|(below, l)| valid_list(l, below + 1))
        })
    {
        return Err(bad("a neighbour list is out of range".into()));
    }
    let entry_ok = if n == 0 {
        entry == u64::MAX
    } else {
        (entry as u32 as usize) < n && (entry >> 32) as u8 == nodes.levels[entry as u32 as usize]
    };
    if !entry_ok {
        return Err(bad("the entry point is out of range".into()));
    }
    Ok(Hnsw::from_parts(*p, nodes, entry))
}

/// Bytes of a file of `n` nodes before the upper-level lists, `None` past `u64`.
fn fixed_bytes(n: usize, p: &HnswParams) -> Option<u64> {
    let n = n as u64;
    let header = (MAGIC.len() + 4 + 4 + 1 + 4 + 4 + 8 + 8 + 8) as u64;
    let per_node = 8 + 1 + (p.dim as u64).checked_mul(4)? + (1 + 2 * p.m as u64).checked_mul(4)?;
    n.checked_mul(per_node)?
        .checked_add(n.div_ceil(64).checked_mul(8)?)?
        .checked_add(header)
}

fn read_u32(input: &mut impl Read) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    input.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn read_u64(input: &mut impl Read) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    input.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// Reads `count` fixed-size little-endian values in large chunks.
fn read_vec<const N: usize, T>(
    input: &mut impl Read,
    count: usize,
    convert: impl Fn([u8; N]) -> T,
) -> std::io::Result<Vec<T>> {
    let mut out = Vec::with_capacity(count);
    let mut buf = vec![0u8; N * 16_384];
    let mut left = count;
    while left > 0 {
        let take = left.min(16_384);
        let bytes = &mut buf[..take * N];
        input.read_exact(bytes)?;
        for chunk in bytes.chunks_exact(N) {
            let mut a = [0u8; N];
            a.copy_from_slice(chunk);
            out.push(convert(a));
        }
        left -= take;
    }
    Ok(out)
}

/// A reader or writer that keeps a CRC-32 and a byte count of what passes through.
struct Hashing<T> {
    inner: T,
    crc: crc32fast::Hasher,
    bytes: u64,
}

impl<T> Hashing<T> {
    fn new(inner: T) -> Self {
        Hashing {
            inner,
            crc: crc32fast::Hasher::new(),
            bytes: 0,
        }
    }

    fn finish(self) -> (T, u32, u64) {
        (self.inner, self.crc.finalize(), self.bytes)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.crc.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// The graph file name of a collection.
pub fn file_name(collection: u64) -> String {
    format!("{collection}.hnsw")
}

/// Where graph files live: `graphs/` beside the database.
pub fn folder(db_path: &Path) -> PathBuf {
    db_path
        .parent()
        .map_or_else(|| PathBuf::from("graphs"), |p| p.join("graphs"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(dir: &Path) -> (PathBuf, GraphFile, HnswParams) {
        let params = HnswParams::new(4, Metric::L2);
        let graph = Hnsw::new(params);
        let vectors: Vec<[f32; 4]> = (0..50).map(|i| [i as f32, 1.0, -(i as f32), 0.5]).collect();
        let items: Vec<(u64, &[f32])> = vectors
            .iter()
            .enumerate()
            .map(|(i, v)| (i as u64, &v[..]))
            .collect();
        graph.insert(&items);
        let (bytes, crc32) = save(&graph, graph.extent(), dir, "g.hnsw").expect("save");
        let file = GraphFile {
            file: "g.hnsw".into(),
            bytes,
            crc32,
            covers_next_item: 50,
            covers_deletion_seq: 0,
        };
        (dir.join("g.hnsw"), file, params)
    }

    #[test]
    fn a_node_count_the_file_cannot_hold_is_refused_before_allocating() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, file, params) = saved(dir.path());
        assert_eq!(load(&path, &file, &params).expect("sound file").len(), 50);
        // The node count sits after magic, version, dim, metric, m, ef_construction and seed.
        let at = 8 + 4 + 4 + 1 + 4 + 4 + 8;
        for n in [1u64 << 40, u32::MAX as u64 - 1, 51] {
            let mut bytes = std::fs::read(&path).expect("read");
            bytes[at..at + 8].copy_from_slice(&n.to_le_bytes());
            std::fs::write(&path, &bytes).expect("write");
            let err = load(&path, &file, &params).expect_err("damaged count");
            assert!(
                err.contains("nodes") || err.contains("levels need"),
                "{n}: {err}"
            );
        }
    }

    mod fuzz {
        //! The reader on damaged files: any mix of flipped bytes, overwritten counts and
        //! truncation is an error or a graph whose every link is in range (searching it
        //! cannot panic); never a panic or a huge allocation. Seeded with a sound file.
        use super::*;
        use proptest::prelude::*;

        fn seed() -> (Vec<u8>, HnswParams) {
            let dir = tempfile::tempdir().expect("tempdir");
            let (path, _, params) = saved(dir.path());
            (std::fs::read(path).expect("read"), params)
        }

        proptest! {
            #[test]
            fn damaged_graph_files_are_refused_or_sound(
                flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
                count in prop::option::of(any::<u64>()),
                cut in prop::option::of(any::<prop::sample::Index>()),
            ) {
                let (mut bytes, params) = seed();
                for (at, byte) in &flips {
                    let i = at.index(bytes.len());
                    bytes[i] ^= byte;
                }
                if let Some(n) = count {
                    let at = 8 + 4 + 4 + 1 + 4 + 4 + 8;
                    bytes[at..at + 8].copy_from_slice(&n.to_le_bytes());
                }
                if let Some(cut) = cut {
                    bytes.truncate(cut.index(bytes.len()));
                }
                let len = bytes.len() as u64;
                if let Ok(graph) = read(&mut bytes.as_slice(), &params, len) {
                    let hits = graph.search(&[0.5, 1.0, -0.5, 0.5], 5, 16, None);
                    prop_assert!(hits.len() <= graph.len());
                }
            }
        }
    }
}
