//! Payload indexes: every value an item's fields hold (its own metadata and the system fields),
//! kept in redb beside the item and written in the same transaction, so a filter's matches can
//! be counted and listed without reading every item.
//!
//! One row per (collection, entry, item), where an entry is a field's path and one of its
//! values, typed: a keyword (any string), a number (integers and floats alike, as `f64`), a
//! boolean, or a datetime (a string that reads as RFC 3339, indexed as a keyword too). Entries
//! sort by value within a field, so a `range` is one scan. A second table counts the items of
//! each entry, for the planner's estimates.
//!
//! What an entry holds mirrors [`Filter::matches`] exactly: the values a dotted path reaches,
//! looking through arrays on the way, and the elements of an array at its end. So a candidate
//! set built only from `match` (`value`, `any`), `range` and `has_id` conditions is the match
//! set itself; anything else (`except`, `is_empty`, `is_null`, `must_not`) is checked on each
//! candidate.

use std::collections::BTreeSet;
use std::sync::Arc;

use redb::{ReadableTable, TableDefinition};
use serde_json::Value;

use crate::collection::{ITEM_IDS, ITEMS, ItemRecord, decode};
use crate::count_memo::{CountMemo, List, range_scan_key};
use crate::filter::{Bound, Condition, Key, Match, Range, Scalar, SystemField, parse_time};
use crate::{Error, Filter};

/// (collection, entry, item) → nothing: the item holds the entry's value at its field.
pub(crate) const PAYLOAD: TableDefinition<(u64, &[u8], u64), ()> = TableDefinition::new("payload");
/// (collection, entry) → how many items hold it.
pub(crate) const PAYLOAD_COUNTS: TableDefinition<(u64, &[u8]), u64> =
    TableDefinition::new("payload_counts");

const KEYWORD: u8 = b'k';
const NUMBER: u8 = b'n';
const BOOL: u8 = b'b';
const TIME: u8 = b't';

/// The bytes every entry of one field and type starts with: the field's length-prefixed name
/// (`u` and the dotted path for the item's own fields, `s` and the `$name` for system fields)
/// and the type.
fn prefix(field: &str, kind: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len() + 3);
    out.extend_from_slice(&(field.len() as u16).to_be_bytes());
    out.extend_from_slice(field.as_bytes());
    out.push(kind);
    out
}

fn field_name(key: &Key) -> String {
    match key {
        Key::User(parts) => format!("u{}", parts.join(".")),
        Key::System(field) => format!("s{}", field.key()),
    }
}

/// A number's bytes, ordered as the numbers are (`-0` is `0`, as JSON equality has it).
fn number_bytes(x: f64) -> [u8; 8] {
    let x = if x == 0.0 { 0.0 } else { x };
    let bits = x.to_bits();
    let ordered = if bits >> 63 == 1 {
        !bits
    } else {
        bits ^ (1 << 63)
    };
    ordered.to_be_bytes()
}

#[cfg(test)]
fn number_of(bytes: &[u8]) -> Option<f64> {
    let ordered = u64::from_be_bytes(bytes.try_into().ok()?);
    let bits = if ordered >> 63 == 1 {
        ordered ^ (1 << 63)
    } else {
        !ordered
    };
    Some(f64::from_bits(bits))
}

/// A datetime's bytes, ordered as the instants are: seconds (sign flipped) and nanoseconds.
fn time_bytes(t: chrono::DateTime<chrono::Utc>) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[..8].copy_from_slice(&((t.timestamp() as u64) ^ (1 << 63)).to_be_bytes());
    out[8..].copy_from_slice(&t.timestamp_subsec_nanos().to_be_bytes());
    out
}

#[cfg(test)]
fn time_of(bytes: &[u8]) -> Option<chrono::DateTime<chrono::Utc>> {
    let secs = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?) ^ (1 << 63);
    let nanos = u32::from_be_bytes(bytes.get(8..12)?.try_into().ok()?);
    chrono::DateTime::from_timestamp(secs as i64, nanos)
}

fn entry(field: &str, kind: u8, value: &[u8]) -> Vec<u8> {
    let mut out = prefix(field, kind);
    out.extend_from_slice(value);
    out
}

/// The entries of one scalar value at `field`.
fn scalar_entries(field: &str, v: &Value, out: &mut BTreeSet<Vec<u8>>) {
    match v {
        Value::String(s) => {
            out.insert(entry(field, KEYWORD, s.as_bytes()));
            if let Some(t) = parse_time(s) {
                out.insert(entry(field, TIME, &time_bytes(t)));
            }
        }
        Value::Number(n) => {
            if let Some(x) = n.as_f64() {
                out.insert(entry(field, NUMBER, &number_bytes(x)));
            }
        }
        Value::Bool(b) => {
            out.insert(entry(field, BOOL, &[u8::from(*b)]));
        }
        Value::Null | Value::Array(_) | Value::Object(_) => {}
    }
}

/// The entries of the value a path ends at: itself, or each element of an array; and the
/// fields below it, reached through arrays at any depth.
fn value_entries(path: &str, v: &Value, out: &mut BTreeSet<Vec<u8>>) {
    let field = format!("u{path}");
    match v {
        Value::Array(items) => {
            for item in items {
                scalar_entries(&field, item, out);
                below(path, item, out);
            }
        }
        other => {
            scalar_entries(&field, other, out);
            below(path, other, out);
        }
    }
}

/// The fields under `v` (an object, or arrays holding objects) at `path`.
fn below(path: &str, v: &Value, out: &mut BTreeSet<Vec<u8>>) {
    match v {
        Value::Object(map) => {
            for (name, child) in map {
                let at = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                value_entries(&at, child, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                below(path, item, out);
            }
        }
        _ => {}
    }
}

/// Every entry of `item`: its own fields and the system fields.
pub(crate) fn entries(item: &ItemRecord) -> BTreeSet<Vec<u8>> {
    let mut out = BTreeSet::new();
    if let Some(root) = &item.metadata {
        below("", root, &mut out);
    }
    for field in SystemField::ALL {
        let name = format!("s{}", field.key());
        match field.value(item) {
            Some(Value::Array(items)) => {
                for v in &items {
                    scalar_entries(&name, v, &mut out);
                }
            }
            Some(v) => scalar_entries(&name, &v, &mut out),
            None => {}
        }
    }
    out
}

/// The payload tables, open for writing in the caller's transaction.
pub(crate) struct Writer<'txn> {
    rows: redb::Table<'txn, (u64, &'static [u8], u64), ()>,
    counts: redb::Table<'txn, (u64, &'static [u8]), u64>,
}

impl<'txn> Writer<'txn> {
    pub fn open(txn: &'txn redb::WriteTransaction) -> Result<Writer<'txn>, Error> {
        Ok(Writer {
            rows: txn.open_table(PAYLOAD)?,
            counts: txn.open_table(PAYLOAD_COUNTS)?,
        })
    }

    /// Indexes item `number` of collection `coll`.
    pub fn add(&mut self, coll: u64, number: u64, item: &ItemRecord) -> Result<(), Error> {
        for e in entries(item) {
            self.rows.insert((coll, e.as_slice(), number), ())?;
            let n = self
                .counts
                .get((coll, e.as_slice()))?
                .map_or(0, |v| v.value());
            self.counts.insert((coll, e.as_slice()), n + 1)?;
        }
        Ok(())
    }

    /// Takes item `number`, as it was indexed, out of the indexes.
    pub fn remove(&mut self, coll: u64, number: u64, item: &ItemRecord) -> Result<(), Error> {
        for e in entries(item) {
            if self.rows.remove((coll, e.as_slice(), number))?.is_none() {
                continue;
            }
            let n = self
                .counts
                .get((coll, e.as_slice()))?
                .map_or(0, |v| v.value());
            if n <= 1 {
                self.counts.remove((coll, e.as_slice()))?;
            } else {
                self.counts.insert((coll, e.as_slice()), n - 1)?;
            }
        }
        Ok(())
    }

    /// Removes every entry of collection `coll`.
    pub fn drop_collection(&mut self, coll: u64) -> Result<(), Error> {
        let empty: &[u8] = &[];
        self.rows
            .retain_in((coll, empty, 0)..(coll + 1, empty, 0), |_, _| false)?;
        self.counts
            .retain_in((coll, empty)..(coll + 1, empty), |_, _| false)?;
        Ok(())
    }
}

/// What the indexes narrowed a filter's matches to.
#[derive(Debug, PartialEq)]
pub(crate) enum Narrowed {
    /// The matches are among these item numbers (ascending); when `exact`, they are exactly
    /// these.
    Among { items: Vec<u64>, exact: bool },
    /// More items than the limit asked for may match, or the filter's conditions are not
    /// ones the indexes answer.
    Broad,
}

/// A candidate set of one condition: `None` when the indexes cannot narrow it (or it
/// would take more than the limit), else the items (ascending) and whether exactly they match.
type Candidates = Option<(Vec<u64>, bool)>;

/// The values of a long `any` whose counts estimate how many items it passes.
const SAMPLED_VALUES: usize = 16;

/// How many items a condition's entries hold (summed: an item holding two of them counts
/// twice, so it bounds the matches from above), and, when asked for, the items (ascending).
type Counted = Option<(u64, Vec<u64>)>;

fn exact_rows(counted: Counted) -> Candidates {
    counted.map(|(_, items)| (items, true))
}

/// Reads the indexes of one collection, in a read transaction or in the write transaction
/// that is about to change them (a delete by filter).
pub(crate) struct Reader<R, C, I> {
    rows: R,
    counts: C,
    ids: I,
    coll: u64,
    /// Counts remembered since the collection's last change, read before the store's.
    memo: Option<Arc<CountMemo>>,
}

type ReadOnly = Reader<
    redb::ReadOnlyTable<(u64, &'static [u8], u64), ()>,
    redb::ReadOnlyTable<(u64, &'static [u8]), u64>,
    redb::ReadOnlyTable<(u64, &'static str), u64>,
>;

impl ReadOnly {
    pub fn open(txn: &redb::ReadTransaction, coll: u64) -> Result<ReadOnly, Error> {
        Ok(Reader {
            rows: txn.open_table(PAYLOAD)?,
            counts: txn.open_table(PAYLOAD_COUNTS)?,
            ids: txn.open_table(ITEM_IDS)?,
            coll,
            memo: None,
        })
    }
}

impl ReadOnly {
    /// Reads counts from `memo` first, and remembers there what it reads from the store.
    pub fn remembering(mut self, memo: Arc<CountMemo>) -> ReadOnly {
        self.memo = Some(memo);
        self
    }
}

impl<R, C, I> Reader<R, C, I>
where
    R: ReadableTable<(u64, &'static [u8], u64), ()>,
    C: ReadableTable<(u64, &'static [u8]), u64>,
    I: ReadableTable<(u64, &'static str), u64>,
{
    /// The items `filter` may pass, when the indexes can say and they are at most `limit`;
    /// candidates that are not known to match are checked against the filter by the caller.
    pub fn narrow(&self, filter: &Filter, limit: usize) -> Result<Narrowed, Error> {
        Ok(match self.filter(filter, limit)? {
            Some((items, exact)) => Narrowed::Among { items, exact },
            None => Narrowed::Broad,
        })
    }

    /// At most how many items `filter` passes, from the counts alone (no item rows read):
    /// `None` when the indexes cannot bound it below `limit`.
    pub fn estimate(&self, filter: &Filter, limit: usize) -> Result<Option<u64>, Error> {
        let bound = combined(filter, |c| {
            Ok(self.condition_count(c, limit)?.map(|n| n as f64))
        })?;
        Ok(bound.filter(|b| *b <= limit as f64).map(|b| b as u64))
    }

    /// About what share of `live` items `filter` passes, from the counts alone: `None` where
    /// the indexes cannot say. Rough (a long `any` extrapolated from a sample of its values,
    /// an item holding two of a condition's values counted twice, `must_not` not counted):
    /// it steers how a search is answered, never what the answer holds.
    pub fn share(&self, filter: &Filter, live: usize) -> Result<Option<f64>, Error> {
        let live = live.max(1);
        let bound = combined(filter, |c| self.rough_count(c, live))?;
        Ok(bound.map(|b| b.min(live as f64) / live as f64))
    }

    fn rough_count(&self, c: &Condition, live: usize) -> Result<Option<f64>, Error> {
        match c {
            Condition::Match {
                key,
                test: Match::Any(vs),
            } => {
                if let Some(estimate) = self.sampled(&field_name(key), vs)? {
                    return Ok(Some(estimate));
                }
            }
            Condition::Nested(inner) => {
                return Ok(self.share(inner, live)?.map(|s| s * live as f64));
            }
            _ => {}
        }
        Ok(self.condition_count(c, live)?.map(|n| n as f64))
    }

    fn condition_count(&self, c: &Condition, limit: usize) -> Result<Option<u64>, Error> {
        let counted = match c {
            Condition::Match {
                key,
                test: Match::Value(v),
            } => self.values(key, std::slice::from_ref(v), limit, false)?,
            Condition::Match {
                key,
                test: Match::Any(vs),
            } => self.values(key, vs, limit, false)?,
            Condition::Range { key, range } => self.range(key, range, limit, false)?,
            Condition::HasId(ids) => return Ok(Some(ids.len() as u64)),
            Condition::Nested(inner) => return self.estimate(inner, limit),
            Condition::Match {
                test: Match::Except(_),
                ..
            }
            | Condition::IsEmpty(_)
            | Condition::IsNull(_) => None,
        };
        Ok(counted.map(|(n, _)| n))
    }

    fn filter(&self, filter: &Filter, limit: usize) -> Result<Candidates, Error> {
        // `must`: the intersection of what each condition narrows to.
        let mut must: Option<Vec<u64>> = None;
        let mut all_exact = true;
        for c in &filter.must {
            match self.condition(c, limit)? {
                Some((items, exact)) => {
                    all_exact &= exact;
                    must = Some(match must {
                        None => items,
                        Some(have) => intersect(&have, &items),
                    });
                }
                None => all_exact = false,
            }
        }
        let mut should: Option<Vec<u64>> = None;
        if !filter.should.is_empty() {
            let mut any_of = Vec::new();
            let mut narrowed = true;
            for c in &filter.should {
                match self.condition(c, limit)? {
                    Some((items, exact)) => {
                        all_exact &= exact;
                        any_of = union(&[any_of, items]);
                        if any_of.len() > limit {
                            narrowed = false;
                            break;
                        }
                    }
                    None => {
                        narrowed = false;
                        break;
                    }
                }
            }
            if narrowed {
                should = Some(any_of);
            } else {
                all_exact = false;
            }
        }
        if !filter.must_not.is_empty() {
            all_exact = false;
        }
        let items = match (must, should) {
            (None, None) => return Ok(None),
            (Some(m), None) => m,
            (None, Some(s)) => s,
            (Some(m), Some(s)) => intersect(&m, &s),
        };
        Ok(Some((items, all_exact)))
    }

    fn condition(&self, c: &Condition, limit: usize) -> Result<Candidates, Error> {
        match c {
            Condition::Match {
                key,
                test: Match::Value(v),
            } => Ok(exact_rows(self.values(
                key,
                std::slice::from_ref(v),
                limit,
                true,
            )?)),
            Condition::Match {
                key,
                test: Match::Any(vs),
            } => Ok(exact_rows(self.values(key, vs, limit, true)?)),
            Condition::Range { key, range } => Ok(exact_rows(self.range(key, range, limit, true)?)),
            Condition::HasId(ids) => {
                let mut items = Vec::with_capacity(ids.len());
                for id in ids.iter() {
                    if let Some(n) = self.ids.get((self.coll, id.as_str()))? {
                        items.push(n.value());
                    }
                }
                items.sort_unstable();
                items.dedup();
                Ok(Some((items, true)))
            }
            Condition::Nested(inner) => self.filter(inner, limit),
            Condition::Match {
                test: Match::Except(_),
                ..
            }
            | Condition::IsEmpty(_)
            | Condition::IsNull(_) => Ok(None),
        }
    }

    /// Items holding any of `values` at `key`.
    fn values(
        &self,
        key: &Key,
        values: &[Scalar],
        limit: usize,
        rows: bool,
    ) -> Result<Counted, Error> {
        let field = field_name(key);
        // A long `any`: a few of its values' counts first, so a list that plainly passes
        // more than the limit is known after a handful of lookups rather than hundreds.
        if let Some(estimate) = self.sampled(&field, values)?
            && estimate > 2.0 * limit as f64
        {
            return Ok(None);
        }
        let wanted: Vec<Vec<u8>> = values.iter().map(|v| value_entry(&field, v)).collect();
        let mut total = 0u64;
        for e in &wanted {
            total += self.entry_count(e)?;
            if total > limit as u64 {
                return Ok(None);
            }
        }
        if !rows {
            return Ok(Some((total, Vec::new())));
        }
        let lists = wanted
            .iter()
            .map(|e| self.entry_items(e))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some((total, union(&lists))))
    }

    /// The items holding one entry (ascending), from the memo when it knows.
    fn entry_items(&self, e: &[u8]) -> Result<Arc<[u64]>, Error> {
        if let Some(items) = self.memo.as_ref().and_then(|m| m.items(List::Entry, e)) {
            return Ok(items);
        }
        let mut items = Vec::new();
        for row in self
            .rows
            .range((self.coll, e, 0)..=(self.coll, e, u64::MAX))?
        {
            items.push(row?.0.value().2);
        }
        let items: Arc<[u64]> = Arc::from(items);
        if let Some(m) = &self.memo {
            m.remember_items(List::Entry, e, items.clone());
        }
        Ok(items)
    }

    /// How many items hold one entry, from the memo when it knows.
    fn entry_count(&self, e: &[u8]) -> Result<u64, Error> {
        if let Some(n) = self.memo.as_ref().and_then(|m| m.entry(e)) {
            return Ok(n);
        }
        let n = self.counts.get((self.coll, e))?.map_or(0, |v| v.value());
        if let Some(m) = &self.memo {
            m.remember_entry(e, n);
        }
        Ok(n)
    }

    /// For a long `any` (more than four samples' worth of values), how many items it passes
    /// extrapolated from its first [`SAMPLED_VALUES`] values' counts; `None` for a short one.
    fn sampled(&self, field: &str, values: &[Scalar]) -> Result<Option<f64>, Error> {
        if values.len() <= 4 * SAMPLED_VALUES {
            return Ok(None);
        }
        let mut sampled = 0u64;
        for v in &values[..SAMPLED_VALUES] {
            sampled += self.entry_count(&value_entry(field, v))?;
        }
        Ok(Some(
            sampled as f64 * values.len() as f64 / SAMPLED_VALUES as f64,
        ))
    }

    /// Items with a value at `key` inside `range`: one scan of the field's entries from the
    /// lowest bound to the highest, each value checked against every bound.
    fn range(&self, key: &Key, range: &Range, limit: usize, rows: bool) -> Result<Counted, Error> {
        let field = field_name(key);
        let Some(kind) = range.gt.or(range.gte).or(range.lt).or(range.lte) else {
            return Ok(None);
        };
        let tag = match kind {
            Bound::Num(_) => NUMBER,
            Bound::Time(_) => TIME,
        };
        // A range's bounds are all of one kind (the filter's parser sees to it).
        let bytes = |b: Bound| match b {
            Bound::Num(x) => number_bytes(x).to_vec(),
            Bound::Time(t) => time_bytes(t).to_vec(),
        };
        let start = prefix(&field, tag);
        let mut low = start.clone();
        if let Some(b) = lowest(range.gt, range.gte) {
            low.extend_from_slice(&bytes(b));
        }
        let mut high = start.clone();
        match highest(range.lt, range.lte) {
            Some(b) => high.extend_from_slice(&bytes(b)),
            // Past every value of this field and type.
            None => high.push(0xff),
        }
        high.extend_from_slice(&[0xff; 16]);
        // Entries are order-preserving bytes: a value is inside when its bytes compare so
        // with each bound's.
        let width = if tag == NUMBER { 8 } else { 12 };
        let (gt, gte) = (range.gt.map(bytes), range.gte.map(bytes));
        let (lt, lte) = (range.lt.map(bytes), range.lte.map(bytes));
        let holds = |e: &[u8]| {
            e.strip_prefix(start.as_slice()).is_some_and(|raw| {
                raw.len() == width
                    && gt.as_deref().is_none_or(|b| raw > b)
                    && gte.as_deref().is_none_or(|b| raw >= b)
                    && lt.as_deref().is_none_or(|b| raw < b)
                    && lte.as_deref().is_none_or(|b| raw <= b)
            })
        };
        // The count of each value in the range first: a range passing more than `limit` items
        // is known to after at most `limit` distinct values, without reading its rows.
        let scan = || -> Result<Option<u64>, Error> {
            let mut total = 0u64;
            for row in self
                .counts
                .range((self.coll, low.as_slice())..=(self.coll, high.as_slice()))?
            {
                let (k, n) = row?;
                if holds(k.value().1) {
                    total += n.value();
                    if total > limit as u64 {
                        return Ok(None);
                    }
                }
            }
            Ok(Some(total))
        };
        // The memo, and this scan's key in it.
        let memo = self.memo.as_ref().map(|memo| {
            let key = range_scan_key(
                &[
                    Some(&low),
                    Some(&high),
                    gt.as_deref(),
                    gte.as_deref(),
                    lt.as_deref(),
                    lte.as_deref(),
                ],
                limit,
            );
            (memo, key)
        });
        let total = match &memo {
            Some((memo, key)) => match memo.range(key) {
                Some(known) => known,
                None => {
                    let total = scan()?;
                    memo.remember_range(key.clone(), total);
                    total
                }
            },
            None => scan()?,
        };
        let Some(total) = total else {
            return Ok(None);
        };
        if !rows {
            return Ok(Some((total, Vec::new())));
        }
        if let Some((memo, key)) = &memo
            && let Some(items) = memo.items(List::Range, key)
        {
            return Ok(Some((total, items.to_vec())));
        }
        let mut items = Vec::with_capacity(total as usize);
        for row in self
            .rows
            .range((self.coll, low.as_slice(), 0)..=(self.coll, high.as_slice(), u64::MAX))?
        {
            let (k, _) = row?;
            let (_, e, n) = k.value();
            if holds(e) {
                items.push(n);
            }
        }
        items.sort_unstable();
        items.dedup();
        if let Some((memo, key)) = &memo {
            memo.remember_items(List::Range, key, Arc::from(items.as_slice()));
        }
        Ok(Some((total, items)))
    }
}

/// A bound on how many items `filter` passes from its conditions' counts (`None` where a
/// condition cannot be counted): the least of the `must` conditions' and the `should`
/// conditions' sum.
fn combined(
    filter: &Filter,
    mut count: impl FnMut(&Condition) -> Result<Option<f64>, Error>,
) -> Result<Option<f64>, Error> {
    let mut bound: Option<f64> = None;
    let mut tighten = |n: f64| bound = Some(bound.map_or(n, |b: f64| b.min(n)));
    for c in &filter.must {
        if let Some(n) = count(c)? {
            tighten(n);
        }
    }
    if !filter.should.is_empty() {
        let mut sum = Some(0.0);
        for c in &filter.should {
            sum = match (sum, count(c)?) {
                (Some(s), Some(n)) => Some(s + n),
                _ => None,
            };
        }
        if let Some(s) = sum {
            tighten(s);
        }
    }
    Ok(bound)
}

/// Whether the indexes alone say exactly which items `filter` passes, when they narrow it
/// at all: every condition a `match` of values, a `range`, `has_id` or a filter of those, and
/// no `must_not`. Its narrowed items then need no item read to be known to match.
pub(crate) fn answered_by_indexes(filter: &Filter) -> bool {
    let answered = |c: &Condition| match c {
        Condition::Match {
            test: Match::Value(_) | Match::Any(_),
            ..
        }
        | Condition::Range { .. }
        | Condition::HasId(_) => true,
        Condition::Nested(inner) => answered_by_indexes(inner),
        Condition::Match {
            test: Match::Except(_),
            ..
        }
        | Condition::IsEmpty(_)
        | Condition::IsNull(_) => false,
    };
    filter.must_not.is_empty()
        && !(filter.must.is_empty() && filter.should.is_empty())
        && filter.must.iter().chain(&filter.should).all(answered)
}

/// The entry of one value of `field`.
fn value_entry(field: &str, v: &Scalar) -> Vec<u8> {
    match v {
        Scalar::Str(s) => entry(field, KEYWORD, s.as_bytes()),
        Scalar::Num(x) => entry(field, NUMBER, &number_bytes(*x)),
        Scalar::Bool(b) => entry(field, BOOL, &[u8::from(*b)]),
    }
}

/// The lower of a range's two lower bounds, where the scan starts.
fn lowest(a: Option<Bound>, b: Option<Bound>) -> Option<Bound> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if less(x, y) { x } else { y }),
        (x, y) => x.or(y),
    }
}

/// The higher of a range's two upper bounds, where the scan ends.
fn highest(a: Option<Bound>, b: Option<Bound>) -> Option<Bound> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if less(x, y) { y } else { x }),
        (x, y) => x.or(y),
    }
}

fn less(a: Bound, b: Bound) -> bool {
    match (a, b) {
        (Bound::Num(x), Bound::Num(y)) => x < y,
        (Bound::Time(x), Bound::Time(y)) => x < y,
        _ => false,
    }
}

fn intersect(a: &[u64], b: &[u64]) -> Vec<u64> {
    let (mut i, mut j, mut out) = (0, 0, Vec::with_capacity(a.len().min(b.len())));
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// The items of ascending `lists`, ascending and each once. Item numbers are dense (counted
/// up from zero per collection), so where the lists hold a good share of the numbers up to
/// their largest, a bitset of those numbers is marked and read back in order: linear, where
/// merging a long `any`'s hundred lists by sorting is not.
fn union<L: AsRef<[u64]>>(lists: &[L]) -> Vec<u64> {
    match lists {
        [] => Vec::new(),
        [one] => one.as_ref().to_vec(),
        _ => {
            let total: usize = lists.iter().map(|l| l.as_ref().len()).sum();
            let top = lists
                .iter()
                .filter_map(|l| l.as_ref().last())
                .max()
                .copied()
                .unwrap_or(0);
            let words = (top / 64 + 1) as usize;
            if words > 4 * total {
                let mut items: Vec<u64> = lists
                    .iter()
                    .flat_map(|l| l.as_ref().iter().copied())
                    .collect();
                items.sort_unstable();
                items.dedup();
                return items;
            }
            let mut marks = vec![0u64; words];
            for &n in lists.iter().flat_map(|l| l.as_ref()) {
                marks[(n / 64) as usize] |= 1 << (n % 64);
            }
            let mut items = Vec::with_capacity(total);
            for (w, &bits) in marks.iter().enumerate() {
                let mut bits = bits;
                while bits != 0 {
                    items.push(w as u64 * 64 + u64::from(bits.trailing_zeros()));
                    bits &= bits - 1;
                }
            }
            items
        }
    }
}

/// The item numbers of `candidates` whose items `filter` passes.
pub(crate) fn verify(
    txn: &redb::ReadTransaction,
    coll: u64,
    candidates: &[u64],
    filter: &Filter,
) -> Result<Vec<u64>, Error> {
    let items = txn.open_table(ITEMS)?;
    let mut out = Vec::with_capacity(candidates.len());
    for &n in candidates {
        if passes(&items, coll, n, filter)? {
            out.push(n);
        }
    }
    Ok(out)
}

/// Whether item `n` of collection `coll` is stored and passes `filter`.
pub(crate) fn passes(
    items: &redb::ReadOnlyTable<(u64, u64), &'static [u8]>,
    coll: u64,
    n: u64,
    filter: &Filter,
) -> Result<bool, Error> {
    Ok(match items.get((coll, n))? {
        Some(row) => filter.matches(&decode::<ItemRecord>("item", row.value())?),
        None => false,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::Redb;
    use crate::collection::{self, CollectionKey, CollectionParams, NewItem};
    use aimp_index::Metric;

    /// Items written at the write's own time.
    fn unstamped(items: Vec<NewItem>) -> Vec<(NewItem, collection::Kept)> {
        items.into_iter().map(|i| (i, None)).collect()
    }

    #[test]
    fn only_values_ranges_and_ids_are_answered_by_the_indexes_alone() {
        let answered =
            |f: serde_json::Value| answered_by_indexes(&Filter::parse(&f).expect("filter"));
        assert!(answered(
            json!({"must": [{"key": "a", "match": {"any": [1, 2]}}]})
        ));
        assert!(answered(json!({
            "must": [{"key": "n", "range": {"gt": 1}}, {"has_id": ["x"]}],
            "should": [{"must": [{"key": "a", "match": {"value": "b"}}]}]
        })));
        assert!(!answered(
            json!({"must": [{"key": "a", "match": {"except": [1]}}]})
        ));
        assert!(!answered(json!({"must": [{"is_empty": {"key": "a"}}]})));
        assert!(!answered(
            json!({"should": [{"must_not": [{"has_id": ["x"]}]}]})
        ));
        assert!(!answered(json!({
            "must": [{"key": "a", "match": {"value": 1}}],
            "must_not": [{"key": "b", "match": {"value": 2}}]
        })));
    }

    #[test]
    fn a_union_of_lists_is_ascending_and_holds_each_item_once() {
        let list = |v: Vec<u64>| -> Arc<[u64]> { Arc::from(v) };
        // Dense (read back from a bitset) and sparse (sorted): the same answer as sorting.
        for spread in [1u64, 1000] {
            let lists: Vec<Arc<[u64]>> = (0..7u64)
                .map(|i| list((0..50u64).map(|j| (j * 3 + i * 5) * spread).collect()))
                .collect();
            let mut want: Vec<u64> = lists.iter().flat_map(|l| l.iter().copied()).collect();
            want.sort_unstable();
            want.dedup();
            assert_eq!(union(&lists), want, "spread {spread}");
        }
        assert_eq!(union(&[list(vec![2, 9])]), vec![2, 9]);
        assert_eq!(union::<&[u64]>(&[]), Vec::<u64>::new());
        assert_eq!(
            union(&[list(vec![]), list(vec![0, 63]), list(vec![63, 64])]),
            vec![0, 63, 64]
        );
    }

    #[test]
    fn numbers_and_times_sort_as_their_values() {
        let xs = [
            f64::MIN,
            -1e300,
            -2.5,
            -1.0,
            -0.0,
            0.0,
            1e-300,
            1.0,
            2.5,
            1e300,
        ];
        for w in xs.windows(2) {
            assert!(number_bytes(w[0]) <= number_bytes(w[1]), "{w:?}");
            assert_eq!(number_of(&number_bytes(w[1])), Some(w[1]));
        }
        assert_eq!(number_bytes(-0.0), number_bytes(0.0));
        let times = [
            "1601-01-01T00:00:00Z",
            "1969-12-31T23:59:59.5Z",
            "1970-01-01T00:00:00Z",
            "2024-02-29T12:00:00.000000001+01:00",
            "9999-12-31T23:59:59Z",
        ];
        let times: Vec<_> = times.iter().map(|t| parse_time(t).expect("time")).collect();
        for w in times.windows(2) {
            assert!(time_bytes(w[0]) < time_bytes(w[1]), "{w:?}");
            assert_eq!(time_of(&time_bytes(w[1])), Some(w[1]));
        }
    }

    /// A long `any` that plainly passes more than the limit is known to be broad from a
    /// sample of its values; one whose values are mostly absent is still narrowed exactly.
    #[test]
    fn a_long_any_is_estimated_from_a_sample_and_narrowed_when_small() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Redb::open(dir.path()).expect("open");
        let key = CollectionKey::new("w", "m", "c", "s");
        // 100 values, 10 items each.
        let items = (0..1000)
            .map(|i| NewItem {
                id: format!("i{i:04}"),
                vector: vec![i as f32, 1.0],
                filename: None,
                media_ref: None,
                system: None,
                metadata: Some(json!({"tag": format!("v{}", i % 100)})),
            })
            .collect();
        let txn = store.begin_write().expect("write");
        let (record, _, _) = collection::upsert(
            &txn,
            &key,
            &CollectionParams::new(2, Metric::L2),
            unstamped(items),
        )
        .expect("upsert");
        txn.commit().expect("commit");
        let txn = store.begin_read().expect("read");
        let reader = Reader::open(&txn, record.id).expect("reader");
        let every: Vec<String> = (0..100).map(|v| format!("v{v}")).collect();
        let broad = Filter::parse(&json!({"must": [{"key": "tag", "match": {"any": every}}]}))
            .expect("filter");
        assert!(matches!(
            reader.narrow(&broad, 50).expect("narrow"),
            Narrowed::Broad
        ));
        // 90 values no item holds, then 10 that 10 items each hold: 100 matches, under 200.
        let mut sparse: Vec<String> = (0..90).map(|v| format!("absent{v}")).collect();
        sparse.extend((0..10).map(|v| format!("v{v}")));
        let sparse = Filter::parse(&json!({"must": [{"key": "tag", "match": {"any": sparse}}]}))
            .expect("filter");
        let Narrowed::Among { items, exact: true } = reader.narrow(&sparse, 200).expect("narrow")
        else {
            panic!("a sparse any is narrowed");
        };
        assert_eq!(items.len(), 100);
    }

    /// A reader remembering counts answers as one reading the store, reads the memo first,
    /// and fills it with what it read.
    #[test]
    fn remembered_counts_answer_as_the_store_does_and_are_read_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Redb::open(dir.path()).expect("open");
        let key = CollectionKey::new("w", "m", "c", "s");
        let items = (0..1000)
            .map(|i| NewItem {
                id: format!("i{i:04}"),
                vector: vec![i as f32, 1.0],
                filename: None,
                media_ref: None,
                system: None,
                metadata: Some(json!({"tag": format!("v{}", i % 100), "n": i % 50})),
            })
            .collect();
        let txn = store.begin_write().expect("write");
        let (record, _, _) = collection::upsert(
            &txn,
            &key,
            &CollectionParams::new(2, Metric::L2),
            unstamped(items),
        )
        .expect("upsert");
        txn.commit().expect("commit");
        let txn = store.begin_read().expect("read");
        let memo = Arc::new(CountMemo::default());
        let plain = Reader::open(&txn, record.id).expect("reader");
        let remembering = Reader::open(&txn, record.id)
            .expect("reader")
            .remembering(memo.clone());
        let filters = [
            json!({"must": [{"key": "tag", "match": {"value": "v3"}}]}),
            json!({"must": [{"key": "tag", "match": {"any": ["v1", "v2", "absent"]}}]}),
            json!({"must": [{"key": "n", "range": {"gte": 10, "lt": 13}}]}),
            json!({"must": [{"key": "n", "range": {"gt": 5}}], "should": [{"key": "tag", "match": {"value": "v7"}}]}),
        ];
        for f in &filters {
            let f = Filter::parse(f).expect("filter");
            for limit in [5, 50, 5000] {
                let want = plain.estimate(&f, limit).expect("estimate");
                for _ in 0..2 {
                    assert_eq!(
                        remembering.estimate(&f, limit).expect("estimate"),
                        want,
                        "{f:?}"
                    );
                    let (a, b) = (
                        plain.narrow(&f, limit).expect("narrow"),
                        remembering.narrow(&f, limit).expect("narrow"),
                    );
                    match (a, b) {
                        (Narrowed::Broad, Narrowed::Broad) => {}
                        (
                            Narrowed::Among { items: a, exact: x },
                            Narrowed::Among { items: b, exact: y },
                        ) => assert_eq!((a, x), (b, y)),
                        _ => panic!("narrowed differently: {f:?}"),
                    }
                }
            }
        }
        assert!(memo.len() >= 5, "the memo holds what was read");
        // A count in the memo is taken over the store's (10 items hold v3).
        let memo = Arc::new(CountMemo::default());
        memo.remember_entry(&entry("utag", KEYWORD, b"v3"), 999);
        let remembering = Reader::open(&txn, record.id)
            .expect("reader")
            .remembering(memo.clone());
        let v3 = Filter::parse(&filters[0]).expect("filter");
        assert_eq!(plain.estimate(&v3, 5000).expect("estimate"), Some(10));
        assert_eq!(
            remembering.estimate(&v3, 5000).expect("estimate"),
            Some(999)
        );
        // So is a list of items, and a range's.
        memo.remember_items(
            List::Entry,
            &entry("utag", KEYWORD, b"v3"),
            Arc::from(vec![1u64, 2]),
        );
        assert_eq!(
            remembering.narrow(&v3, 5000).expect("narrow"),
            Narrowed::Among {
                items: vec![1, 2],
                exact: true
            }
        );
        let range = Filter::parse(&filters[2]).expect("filter");
        let Narrowed::Among { items: stored, .. } = plain.narrow(&range, 5000).expect("narrow")
        else {
            panic!("a range of 60 items narrows");
        };
        assert_eq!(stored.len(), 60);
        let remembering = Reader::open(&txn, record.id)
            .expect("reader")
            .remembering(memo.clone());
        remembering.narrow(&range, 5000).expect("narrow");
        let held = memo.known_items();
        assert_eq!(held, 2 + 60, "the range's items are remembered once read");
    }

    /// Items of awkward shapes, and conditions on them: the indexes' candidates must hold
    /// every match, and be exactly the matches when they say so.
    #[test]
    fn candidates_hold_every_match_and_exact_ones_no_more() {
        let metadata = [
            json!({"tag": "a", "n": 1, "when": "2024-01-05T00:00:00Z"}),
            json!({"tag": ["a", "b"], "n": [2, 3.5], "flag": true}),
            json!({"tag": [["a"]], "n": -0.0, "nested": [{"x": 1}, [{"x": 2}]]}),
            json!({"tag": null, "n": "1", "nested": {"x": [3, 4]}}),
            json!({"tag": "b", "when": "2023-12-31T23:00:00-02:00", "flag": false}),
            json!({"deep": {"er": {"still": ["a", 5]}}, "n": 0}),
            json!({}),
        ];
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Redb::open(dir.path()).expect("open");
        let key = CollectionKey::new("w", "m", "c", "s");
        let items = metadata
            .iter()
            .enumerate()
            .map(|(i, m)| NewItem {
                id: format!("i{i}"),
                vector: vec![i as f32, 1.0],
                filename: (i % 2 == 0).then(|| format!("f{i}.png")),
                media_ref: None,
                system: Some(json!({"width": 10 * i})),
                metadata: Some(m.clone()),
            })
            .collect();
        let txn = store.begin_write().expect("write");
        let (record, _, _) = collection::upsert(
            &txn,
            &key,
            &CollectionParams::new(2, Metric::L2),
            unstamped(items),
        )
        .expect("upsert");
        txn.commit().expect("commit");
        let conditions = [
            json!({"must": [{"key": "tag", "match": {"value": "a"}}]}),
            json!({"must": [{"key": "tag", "match": {"any": ["a", "b"]}}]}),
            json!({"must": [{"key": "n", "match": {"value": 0}}]}),
            json!({"must": [{"key": "n", "match": {"value": 1}}]}),
            json!({"must": [{"key": "n", "range": {"gt": 0, "lte": 3.5}}]}),
            json!({"must": [{"key": "n", "range": {"gte": 1, "gt": 1}}]}),
            json!({"must": [{"key": "n", "range": {"lt": 1}}]}),
            json!({"must": [{"key": "when", "range": {"gte": "2024-01-01T00:00:00Z"}}]}),
            json!({"must": [{"key": "when", "match": {"value": "2024-01-05T00:00:00Z"}}]}),
            json!({"must": [{"key": "nested.x", "match": {"any": [1, 2, 3]}}]}),
            json!({"must": [{"key": "deep.er.still", "match": {"value": 5}}]}),
            json!({"must": [{"key": "flag", "match": {"value": false}}]}),
            json!({"must": [{"key": "$filename", "match": {"value": "f2.png"}}]}),
            json!({"must": [{"key": "$width", "range": {"gte": 20}}]}),
            json!({"must": [{"has_id": ["i1", "i5", "nope"]}]}),
            json!({"should": [{"key": "tag", "match": {"value": "b"}},
                {"key": "n", "match": {"value": 0}}]}),
            json!({"must": [{"key": "tag", "match": {"value": "a"}}],
                "must_not": [{"key": "flag", "match": {"value": true}}]}),
            json!({"must": [{"key": "tag", "match": {"except": ["a"]}}]}),
            json!({"must": [{"is_null": {"key": "tag"}}, {"key": "n", "match": {"value": "1"}}]}),
            json!({"must": [{"must": [{"key": "tag", "match": {"value": "a"}}],
                "should": [{"key": "n", "range": {"gte": 2}}]}]}),
        ];
        let txn = store.begin_read().expect("read");
        let reader = Reader::open(&txn, record.id).expect("reader");
        let stored: Vec<(u64, ItemRecord)> = txn
            .open_table(ITEMS)
            .expect("items")
            .range((record.id, 0)..=(record.id, u64::MAX))
            .expect("range")
            .map(|r| {
                let (k, v) = r.expect("row");
                (k.value().1, decode("item", v.value()).expect("item"))
            })
            .collect();
        for c in &conditions {
            let filter = Filter::parse(c).expect("filter");
            let want: Vec<u64> = stored
                .iter()
                .filter(|(_, item)| filter.matches(item))
                .map(|(n, _)| *n)
                .collect();
            match reader.narrow(&filter, usize::MAX).expect("narrow") {
                Narrowed::Among { items, exact: true } => assert_eq!(items, want, "{c}"),
                Narrowed::Among {
                    items,
                    exact: false,
                } => {
                    assert!(
                        want.iter().all(|n| items.contains(n)),
                        "{c}: {items:?} {want:?}"
                    );
                    assert_eq!(
                        verify(&txn, record.id, &items, &filter).expect("verify"),
                        want
                    );
                }
                Narrowed::Broad => {
                    assert!(c.to_string().contains("except"), "{c} was not narrowed")
                }
            }
        }
        // A limit below the matches is broad.
        let filter =
            Filter::parse(&json!({"must": [{"key": "tag", "match": {"any": ["a", "b"]}}]}))
                .expect("filter");
        assert_eq!(reader.narrow(&filter, 1).expect("narrow"), Narrowed::Broad);
    }

    /// A collection stored before payload indexes existed is indexed when the store opens.
    #[test]
    fn a_store_from_before_payload_indexes_is_indexed_on_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = CollectionKey::new("w", "m", "c", "s");
        let id = {
            let store = Redb::open(dir.path()).expect("open");
            let txn = store.begin_write().expect("write");
            let items = (0..20)
                .map(|i| NewItem {
                    id: format!("i{i}"),
                    vector: vec![i as f32, 1.0],
                    filename: None,
                    media_ref: None,
                    system: None,
                    metadata: Some(json!({"even": i % 2 == 0})),
                })
                .collect();
            let (mut record, _, _) = collection::upsert(
                &txn,
                &key,
                &CollectionParams::new(2, Metric::L2),
                unstamped(items),
            )
            .expect("upsert");
            // What an older build left: no payload rows, and the record without the flag.
            Writer::open(&txn)
                .expect("writer")
                .drop_collection(record.id)
                .expect("drop");
            record.payload_indexed = false;
            let mut json = serde_json::to_value(&record).expect("json");
            json.as_object_mut()
                .expect("object")
                .remove("payload_indexed");
            txn.open_table(collection::COLLECTIONS)
                .expect("collections")
                .insert(
                    record.id,
                    serde_json::to_vec(&json).expect("bytes").as_slice(),
                )
                .expect("insert");
            txn.commit().expect("commit");
            record.id
        };
        let store = Redb::open(dir.path()).expect("reopen");
        let txn = store.begin_read().expect("read");
        let filter = Filter::parse(&json!({"must": [{"key": "even", "match": {"value": true}}]}))
            .expect("filter");
        let Narrowed::Among { items, exact: true } = Reader::open(&txn, id)
            .expect("reader")
            .narrow(&filter, usize::MAX)
            .expect("narrow")
        else {
            panic!("not narrowed")
        };
        assert_eq!(items, (0..20).step_by(2).collect::<Vec<u64>>());
    }
}
