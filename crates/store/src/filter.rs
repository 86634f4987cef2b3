//! Filters on items, in the shape Qdrant's users know: `must` / `should` / `must_not` lists of
//! conditions (`match`, `range`, `is_empty`, `is_null`, `has_id`, or a nested filter), read
//! from JSON with every refusal naming its path, and evaluated on one item at a time.
//!
//! Keys are dotted paths into the item's own metadata (`album`, `camera.make`); an array met
//! on the way is looked into element by element, so `authors.name` reaches the name of every
//! author. Keys that start with `$` are the system fields the gateway keeps for every item
//! ([`SystemField`]). A condition holds for a field with several values (an array) when it
//! holds for any one of them.

use std::collections::HashSet;

use chrono::{DateTime, FixedOffset, Utc};
use serde_json::{Map, Value};

use crate::collection::ItemRecord;
use crate::metadata::json_type;

/// Most conditions in one filter, counted through every nesting.
pub const MAX_CONDITIONS: usize = 256;
/// Deepest nesting of filters inside filters.
pub const MAX_DEPTH: usize = 8;
/// Most values in one `any`, `except` or `has_id` list.
pub const MAX_VALUES: usize = 1024;
/// Longest key, in bytes (a dotted path of at most [`crate::metadata::MAX_DEPTH`] names of
/// [`crate::metadata::MAX_KEY_BYTES`] each, with room to spare).
pub const MAX_KEY_BYTES: usize = 1024;

/// What one filter may cost, beyond the fixed bounds on its shape ([`MAX_CONDITIONS`],
/// [`MAX_DEPTH`], [`MAX_VALUES`] per list): a filter's work (index reads to narrow it, the
/// planner's memory of those reads, the set lookups per item) grows with the values it lists
/// and their length, so both are bounded for the filter as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FilterLimits {
    /// Most values in all of a filter's `value`, `any`, `except` and `has_id` together.
    pub values: usize,
    /// Longest string value or id, in bytes.
    pub value_bytes: usize,
}

impl Default for FilterLimits {
    fn default() -> Self {
        FilterLimits {
            values: 4096,
            value_bytes: 1024,
        }
    }
}

/// What is left of a filter's bounds while it is read.
struct Budget {
    conditions: usize,
    values: usize,
    limits: FilterLimits,
}

impl Budget {
    /// Takes `n` values from the filter's total, or refuses at `path`.
    fn take_values(&mut self, n: usize, path: &str) -> Result<(), FilterError> {
        if n > self.values {
            return Err(err(
                path,
                format!(
                    "goes past the {} values a whole filter may list (the filter-max-values \
                     setting)",
                    self.limits.values
                ),
            ));
        }
        self.values -= n;
        Ok(())
    }

    /// Refuses a string value longer than the limit.
    fn check_bytes(&self, s: &str, path: &str) -> Result<(), FilterError> {
        if s.len() > self.limits.value_bytes {
            return Err(err(
                path,
                format!(
                    "is {} bytes; a value in a filter is at most {} (the \
                     filter-max-value-bytes setting)",
                    s.len(),
                    self.limits.value_bytes
                ),
            ));
        }
        Ok(())
    }
}

/// A refused filter: what is wrong and where, as a path under the filter itself
/// (`must[1].range.gt`; empty for the filter as a whole).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterError {
    pub path: String,
    pub reason: String,
}

/// Items that every `must` condition holds for, at least one `should` condition (when there
/// are any) and no `must_not` condition.
#[derive(Clone, Debug, Default, PartialEq, Hash)]
pub struct Filter {
    pub must: Vec<Condition>,
    pub should: Vec<Condition>,
    pub must_not: Vec<Condition>,
}

/// One condition of a filter.
#[derive(Clone, Debug, PartialEq, Hash)]
pub enum Condition {
    Match {
        key: Key,
        test: Match,
    },
    Range {
        key: Key,
        range: Range,
    },
    /// The field is absent, null, or an empty array.
    IsEmpty(Key),
    /// The field is present and null.
    IsNull(Key),
    /// The item's id is one of these.
    HasId(IdSet),
    Nested(Box<Filter>),
}

/// What a `match` condition compares with.
#[derive(Clone, Debug, PartialEq, Hash)]
pub enum Match {
    /// The field (or one of its values) equals this.
    Value(Scalar),
    /// The field (or one of its values) is one of these.
    Any(ScalarSet),
    /// The field has a value that is none of these.
    Except(ScalarSet),
}

/// The values of an `any` or `except`, in the order given, and as sets, so that testing an
/// item's value costs one lookup whatever the list's length.
#[derive(Clone, Debug)]
pub struct ScalarSet {
    listed: Vec<Scalar>,
    strings: HashSet<String>,
    numbers: HashSet<u64>,
    booleans: [bool; 2],
}

impl ScalarSet {
    pub fn new(listed: Vec<Scalar>) -> ScalarSet {
        let mut set = ScalarSet {
            strings: HashSet::new(),
            numbers: HashSet::new(),
            booleans: [false; 2],
            listed: Vec::new(),
        };
        for v in &listed {
            match v {
                Scalar::Str(s) => {
                    set.strings.insert(s.clone());
                }
                Scalar::Num(x) => {
                    set.numbers.insert(number_bits(*x));
                }
                Scalar::Bool(b) => set.booleans[usize::from(*b)] = true,
            }
        }
        set.listed = listed;
        set
    }

    /// Whether `v` equals one of the values (as [`Scalar::equals`] compares).
    fn contains(&self, v: &Value) -> bool {
        match v {
            Value::String(s) => self.strings.contains(s.as_str()),
            Value::Number(n) => n
                .as_f64()
                .is_some_and(|x| self.numbers.contains(&number_bits(x))),
            Value::Bool(b) => self.booleans[usize::from(*b)],
            _ => false,
        }
    }
}

impl std::ops::Deref for ScalarSet {
    type Target = [Scalar];
    fn deref(&self) -> &[Scalar] {
        &self.listed
    }
}

impl PartialEq for ScalarSet {
    fn eq(&self, other: &Self) -> bool {
        self.listed == other.listed
    }
}

impl std::hash::Hash for ScalarSet {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.listed.hash(h);
    }
}

/// The ids of a `has_id`, in the order given, and as a set.
#[derive(Clone, Debug)]
pub struct IdSet {
    listed: Vec<String>,
    set: HashSet<String>,
}

impl IdSet {
    pub fn new(listed: Vec<String>) -> IdSet {
        IdSet {
            set: listed.iter().cloned().collect(),
            listed,
        }
    }

    fn contains(&self, id: &str) -> bool {
        self.set.contains(id)
    }
}

impl std::ops::Deref for IdSet {
    type Target = [String];
    fn deref(&self) -> &[String] {
        &self.listed
    }
}

impl PartialEq for IdSet {
    fn eq(&self, other: &Self) -> bool {
        self.listed == other.listed
    }
}

impl std::hash::Hash for IdSet {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.listed.hash(h);
    }
}

/// A value a `match` compares with: a keyword, a number or a boolean.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    Str(String),
    Num(f64),
    Bool(bool),
}

/// Equal scalars hash alike: a number by its bits, with -0 as 0 (they compare equal).
impl std::hash::Hash for Scalar {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        std::mem::discriminant(self).hash(h);
        match self {
            Scalar::Str(s) => s.hash(h),
            Scalar::Num(x) => number_bits(*x).hash(h),
            Scalar::Bool(b) => b.hash(h),
        }
    }
}

/// Bounds of a `range`: all numbers, or all RFC 3339 datetimes.
#[derive(Clone, Debug, PartialEq, Hash)]
pub struct Range {
    pub gt: Option<Bound>,
    pub gte: Option<Bound>,
    pub lt: Option<Bound>,
    pub lte: Option<Bound>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Bound {
    Num(f64),
    Time(DateTime<Utc>),
}

impl std::hash::Hash for Bound {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        std::mem::discriminant(self).hash(h);
        match self {
            Bound::Num(x) => number_bits(*x).hash(h),
            Bound::Time(t) => t.hash(h),
        }
    }
}

fn number_bits(x: f64) -> u64 {
    if x == 0.0 { 0 } else { x.to_bits() }
}

/// A field of an item a condition reads.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    /// A dotted path into the item's own metadata.
    User(Vec<String>),
    System(SystemField),
}

/// The fields the gateway keeps for every item, separate from the item's own metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SystemField {
    Filename,
    MediaRef,
    CreatedAt,
    UpdatedAt,
    Sha256,
    Width,
    Height,
    ContentType,
    TakenAt,
    CameraMake,
    CameraModel,
    Orientation,
    GpsLatitude,
    GpsLongitude,
}

impl SystemField {
    pub const ALL: [SystemField; 14] = [
        SystemField::Filename,
        SystemField::MediaRef,
        SystemField::CreatedAt,
        SystemField::UpdatedAt,
        SystemField::Sha256,
        SystemField::Width,
        SystemField::Height,
        SystemField::ContentType,
        SystemField::TakenAt,
        SystemField::CameraMake,
        SystemField::CameraModel,
        SystemField::Orientation,
        SystemField::GpsLatitude,
        SystemField::GpsLongitude,
    ];

    /// The key that names it in a filter, `$` and its name.
    pub fn key(self) -> &'static str {
        match self {
            SystemField::Filename => "$filename",
            SystemField::MediaRef => "$media_ref",
            SystemField::CreatedAt => "$created_at",
            SystemField::UpdatedAt => "$updated_at",
            SystemField::Sha256 => "$sha256",
            SystemField::Width => "$width",
            SystemField::Height => "$height",
            SystemField::ContentType => "$content_type",
            SystemField::TakenAt => "$taken_at",
            SystemField::CameraMake => "$camera_make",
            SystemField::CameraModel => "$camera_model",
            SystemField::Orientation => "$orientation",
            SystemField::GpsLatitude => "$gps_latitude",
            SystemField::GpsLongitude => "$gps_longitude",
        }
    }

    fn parse(key: &str) -> Option<SystemField> {
        SystemField::ALL.into_iter().find(|f| f.key() == key)
    }

    /// The field's value on `item`, if it has one.
    pub fn value(self, item: &ItemRecord) -> Option<Value> {
        let system = |name: &str| item.system.as_ref().and_then(|m| m.get(name)).cloned();
        match self {
            SystemField::Filename => item.filename.clone().map(Value::String),
            SystemField::MediaRef => item.media_ref.clone().map(Value::String),
            SystemField::CreatedAt => Some(Value::String(item.created_at.to_rfc3339())),
            SystemField::UpdatedAt => Some(Value::String(item.updated_at.to_rfc3339())),
            SystemField::Sha256 => system("sha256"),
            SystemField::Width => system("width"),
            SystemField::Height => system("height"),
            SystemField::ContentType => system("content_type"),
            SystemField::TakenAt => system("taken_at"),
            SystemField::CameraMake => system("camera_make"),
            SystemField::CameraModel => system("camera_model"),
            SystemField::Orientation => system("orientation"),
            SystemField::GpsLatitude => system("gps_latitude"),
            SystemField::GpsLongitude => system("gps_longitude"),
        }
    }
}

impl Filter {
    /// Reads a filter from its JSON form, within the default [`FilterLimits`].
    pub fn parse(value: &Value) -> Result<Filter, FilterError> {
        Filter::parse_within(value, FilterLimits::default())
    }

    /// Reads a filter from its JSON form, refusing one past `limits`.
    pub fn parse_within(value: &Value, limits: FilterLimits) -> Result<Filter, FilterError> {
        let mut budget = Budget {
            conditions: MAX_CONDITIONS,
            values: limits.values,
            limits,
        };
        parse_filter(value, "", 0, &mut budget)
    }

    /// Whether `item` passes.
    pub fn matches(&self, item: &ItemRecord) -> bool {
        self.must.iter().all(|c| c.holds(item))
            && (self.should.is_empty() || self.should.iter().any(|c| c.holds(item)))
            && !self.must_not.iter().any(|c| c.holds(item))
    }

    /// A hash of the filter's conditions, to recognise the same filter asked again (within
    /// this process: the hasher's algorithm is not fixed across builds).
    pub fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.hash(&mut h);
        h.finish()
    }

    /// Whether every item passes (no condition at all).
    pub fn is_empty(&self) -> bool {
        self.must.is_empty() && self.should.is_empty() && self.must_not.is_empty()
    }
}

impl Condition {
    fn holds(&self, item: &ItemRecord) -> bool {
        match self {
            Condition::Match { key, test } => {
                let values = key.values(item);
                let scalars = || values.iter().flat_map(|v| elements(v));
                match test {
                    Match::Value(want) => scalars().any(|v| want.equals(v)),
                    Match::Any(wants) => scalars().any(|v| wants.contains(v)),
                    Match::Except(refused) => {
                        scalars().any(|v| !v.is_null() && !refused.contains(v))
                    }
                }
            }
            Condition::Range { key, range } => key
                .values(item)
                .iter()
                .flat_map(|v| elements(v))
                .any(|v| range.contains(v)),
            Condition::IsEmpty(key) => key
                .values(item)
                .iter()
                .all(|v| v.is_null() || v.as_array().is_some_and(Vec::is_empty)),
            Condition::IsNull(key) => key.values(item).iter().any(|v| v.is_null()),
            Condition::HasId(ids) => ids.contains(&item.id),
            Condition::Nested(filter) => filter.matches(item),
        }
    }
}

/// A value, or each element of an array value.
fn elements(v: &Value) -> Box<dyn Iterator<Item = &Value> + '_> {
    match v {
        Value::Array(items) => Box::new(items.iter()),
        other => Box::new(std::iter::once(other)),
    }
}

impl Scalar {
    fn equals(&self, v: &Value) -> bool {
        match (self, v) {
            (Scalar::Str(s), Value::String(v)) => s == v,
            (Scalar::Num(n), Value::Number(v)) => v.as_f64() == Some(*n),
            (Scalar::Bool(b), Value::Bool(v)) => b == v,
            _ => false,
        }
    }
}

impl Range {
    /// Whether `v` (a number, or a datetime string, as the bounds are) lies inside.
    pub(crate) fn contains(&self, v: &Value) -> bool {
        let Some(at) = self.point_of(v) else {
            return false;
        };
        let after = |b: &Option<Bound>, strict: bool| {
            b.is_none_or(|b| match b.cmp_point(&at) {
                Some(std::cmp::Ordering::Less) => true,
                Some(std::cmp::Ordering::Equal) => !strict,
                _ => false,
            })
        };
        let before = |b: &Option<Bound>, strict: bool| {
            b.is_none_or(|b| match b.cmp_point(&at) {
                Some(std::cmp::Ordering::Greater) => true,
                Some(std::cmp::Ordering::Equal) => !strict,
                _ => false,
            })
        };
        after(&self.gt, true) && after(&self.gte, false) && before(&self.lt, true) && {
            before(&self.lte, false)
        }
    }

    /// `v` as a point of this range's kind: a number, or a datetime string.
    fn point_of(&self, v: &Value) -> Option<Bound> {
        match self.kind()? {
            Bound::Num(_) => v.as_f64().map(Bound::Num),
            Bound::Time(_) => v.as_str().and_then(parse_time).map(Bound::Time),
        }
    }

    fn kind(&self) -> Option<Bound> {
        self.gt.or(self.gte).or(self.lt).or(self.lte)
    }
}

impl Bound {
    /// How this bound orders against a point of the same kind.
    fn cmp_point(&self, at: &Bound) -> Option<std::cmp::Ordering> {
        match (self, at) {
            (Bound::Num(a), Bound::Num(b)) => a.partial_cmp(b),
            (Bound::Time(a), Bound::Time(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }
}

/// An RFC 3339 datetime, in UTC.
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::<FixedOffset>::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

impl Key {
    fn parse(key: &str, path: &str) -> Result<Key, FilterError> {
        if key.len() > MAX_KEY_BYTES {
            return Err(err(
                path,
                format!("is {} bytes; a key is at most {MAX_KEY_BYTES}", key.len()),
            ));
        }
        if let Some(name) = key.strip_prefix('$') {
            return SystemField::parse(key).map(Key::System).ok_or_else(|| {
                let known: Vec<&str> = SystemField::ALL.iter().map(|f| f.key()).collect();
                err(
                    path,
                    format!(
                        "{name:?} is not a system field; they are {}",
                        known.join(", ")
                    ),
                )
            });
        }
        let parts: Vec<String> = key
            .split('.')
            .map(|p| p.strip_suffix("[]").unwrap_or(p).to_string())
            .collect();
        if parts.iter().any(String::is_empty) {
            return Err(err(
                path,
                format!("{key:?} is not a dotted path of field names (like \"camera.make\")"),
            ));
        }
        Ok(Key::User(parts))
    }

    /// The values at this key on `item`; none when the path does not reach one.
    fn values<'a>(&self, item: &'a ItemRecord) -> Vec<std::borrow::Cow<'a, Value>> {
        match self {
            Key::System(field) => field
                .value(item)
                .map(std::borrow::Cow::Owned)
                .into_iter()
                .collect(),
            Key::User(parts) => {
                let mut out = Vec::new();
                if let Some(root) = &item.metadata {
                    walk(root, parts, &mut out);
                }
                out.into_iter().map(std::borrow::Cow::Borrowed).collect()
            }
        }
    }
}

/// Follows `parts` from `at`, looking into every element of an array met on the way.
fn walk<'a>(at: &'a Value, parts: &[String], out: &mut Vec<&'a Value>) {
    let Some((first, rest)) = parts.split_first() else {
        out.push(at);
        return;
    };
    match at {
        Value::Object(map) => {
            if let Some(next) = map.get(first) {
                walk(next, rest, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                walk(item, parts, out);
            }
        }
        _ => {}
    }
}

fn err(path: &str, reason: impl Into<String>) -> FilterError {
    FilterError {
        path: path.to_string(),
        reason: reason.into(),
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

fn object<'a>(value: &'a Value, path: &str) -> Result<&'a Map<String, Value>, FilterError> {
    value
        .as_object()
        .ok_or_else(|| err(path, format!("must be an object, not {}", json_type(value))))
}

fn parse_filter(
    value: &Value,
    path: &str,
    depth: usize,
    budget: &mut Budget,
) -> Result<Filter, FilterError> {
    if depth > MAX_DEPTH {
        return Err(err(path, format!("filters nest at most {MAX_DEPTH} deep")));
    }
    let map = object(value, path)?;
    let mut filter = Filter::default();
    for (name, list) in map {
        let at = join(path, name);
        let slot = match name.as_str() {
            "must" => &mut filter.must,
            "should" => &mut filter.should,
            "must_not" => &mut filter.must_not,
            other => {
                return Err(err(
                    &at,
                    format!("unknown clause {other:?}; a filter has must, should and must_not"),
                ));
            }
        };
        // A single condition may stand for a list of one, as in Qdrant.
        let conditions: Vec<&Value> = match list {
            Value::Array(items) => items.iter().collect(),
            Value::Object(_) => vec![list],
            other => {
                return Err(err(
                    &at,
                    format!("must be a list of conditions, not {}", json_type(other)),
                ));
            }
        };
        for (i, c) in conditions.into_iter().enumerate() {
            let at = if list.is_array() {
                format!("{at}[{i}]")
            } else {
                at.clone()
            };
            if budget.conditions == 0 {
                return Err(err(
                    &at,
                    format!("a filter holds at most {MAX_CONDITIONS} conditions"),
                ));
            }
            budget.conditions -= 1;
            slot.push(parse_condition(c, &at, depth, budget)?);
        }
    }
    Ok(filter)
}

fn parse_condition(
    value: &Value,
    path: &str,
    depth: usize,
    budget: &mut Budget,
) -> Result<Condition, FilterError> {
    let map = object(value, path)?;
    if ["must", "should", "must_not"]
        .iter()
        .any(|c| map.contains_key(*c))
    {
        return Ok(Condition::Nested(Box::new(parse_filter(
            value,
            path,
            depth + 1,
            budget,
        )?)));
    }
    if let Some(ids) = map.get("has_id") {
        only(map, &["has_id"], path)?;
        let at = join(path, "has_id");
        let list = values_list(ids, &at)?;
        budget.take_values(list.len(), &at)?;
        let ids = list
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let at = format!("{at}[{i}]");
                let id = v.as_str().ok_or_else(|| {
                    err(
                        &at,
                        format!("must be an id (a string), not {}", json_type(v)),
                    )
                })?;
                budget.check_bytes(id, &at)?;
                Ok(id.to_string())
            })
            .collect::<Result<_, _>>()?;
        return Ok(Condition::HasId(IdSet::new(ids)));
    }
    for (name, make) in [
        ("is_empty", Condition::IsEmpty as fn(Key) -> Condition),
        ("is_null", Condition::IsNull),
    ] {
        if let Some(inner) = map.get(name) {
            only(map, &[name], path)?;
            let at = join(path, name);
            let inner = object(inner, &at)?;
            only(inner, &["key"], &at)?;
            return Ok(make(key_of(inner, &at)?));
        }
    }
    if !map.contains_key("match") && !map.contains_key("range") {
        return Err(err(
            path,
            "a condition needs match or range (or is one of is_empty, is_null, has_id, or a \
             nested filter)",
        ));
    }
    let key = key_of(map, path)?;
    match (map.get("match"), map.get("range")) {
        (Some(m), None) => {
            only(map, &["key", "match"], path)?;
            let test = parse_match(m, &join(path, "match"), budget)?;
            Ok(Condition::Match { key, test })
        }
        (None, Some(r)) => {
            only(map, &["key", "range"], path)?;
            let range = parse_range(r, &join(path, "range"))?;
            Ok(Condition::Range { key, range })
        }
        (Some(_), Some(_)) => Err(err(
            path,
            "a condition has one of match and range, not both",
        )),
        (None, None) => unreachable!("checked above"),
    }
}

/// Refuses any member of `map` but `allowed`.
fn only(map: &Map<String, Value>, allowed: &[&str], path: &str) -> Result<(), FilterError> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(extra) => Err(err(
            &join(path, extra),
            format!(
                "is not allowed here; this condition takes {}",
                allowed.join(" and ")
            ),
        )),
        None => Ok(()),
    }
}

fn key_of(map: &Map<String, Value>, path: &str) -> Result<Key, FilterError> {
    let at = join(path, "key");
    match map.get("key") {
        Some(Value::String(k)) => Key::parse(k, &at),
        Some(other) => Err(err(
            &at,
            format!("must be a field name (a string), not {}", json_type(other)),
        )),
        None => Err(err(&at, "is required")),
    }
}

fn values_list<'a>(value: &'a Value, path: &str) -> Result<&'a Vec<Value>, FilterError> {
    let list = value
        .as_array()
        .ok_or_else(|| err(path, format!("must be a list, not {}", json_type(value))))?;
    if list.len() > MAX_VALUES {
        return Err(err(path, format!("holds at most {MAX_VALUES} values")));
    }
    Ok(list)
}

fn parse_match(value: &Value, path: &str, budget: &mut Budget) -> Result<Match, FilterError> {
    let map = object(value, path)?;
    let (name, inner) = match map.iter().next() {
        Some(entry) if map.len() == 1 => entry,
        _ => {
            return Err(err(path, "takes exactly one of value, any and except"));
        }
    };
    let at = join(path, name);
    let mut list = |value: &Value| -> Result<ScalarSet, FilterError> {
        let list = values_list(value, &at)?;
        budget.take_values(list.len(), &at)?;
        let scalars = list
            .iter()
            .enumerate()
            .map(|(i, v)| scalar(v, &format!("{at}[{i}]"), budget))
            .collect::<Result<_, _>>()?;
        Ok(ScalarSet::new(scalars))
    };
    match name.as_str() {
        "value" => {
            budget.take_values(1, &at)?;
            Ok(Match::Value(scalar(inner, &at, budget)?))
        }
        "any" => Ok(Match::Any(list(inner)?)),
        "except" => Ok(Match::Except(list(inner)?)),
        other => Err(err(
            &at,
            format!("unknown match {other:?}; match takes value, any or except"),
        )),
    }
}

fn scalar(value: &Value, path: &str, budget: &Budget) -> Result<Scalar, FilterError> {
    match value {
        Value::String(s) => {
            budget.check_bytes(s, path)?;
            Ok(Scalar::Str(s.clone()))
        }
        Value::Bool(b) => Ok(Scalar::Bool(*b)),
        Value::Number(n) => n
            .as_f64()
            .map(Scalar::Num)
            .ok_or_else(|| err(path, "is not a representable number")),
        other => Err(err(
            path,
            format!(
                "must be a string, a number or a boolean, not {}",
                json_type(other)
            ),
        )),
    }
}

fn parse_range(value: &Value, path: &str) -> Result<Range, FilterError> {
    let map = object(value, path)?;
    if map.is_empty() {
        return Err(err(path, "needs at least one of gt, gte, lt and lte"));
    }
    let mut range = Range {
        gt: None,
        gte: None,
        lt: None,
        lte: None,
    };
    for (name, v) in map {
        let at = join(path, name);
        let bound = match v {
            Value::Number(n) => Bound::Num(
                n.as_f64()
                    .ok_or_else(|| err(&at, "is not a representable number"))?,
            ),
            Value::String(s) => Bound::Time(parse_time(s).ok_or_else(|| {
                err(
                    &at,
                    format!("{s:?} is not an RFC 3339 datetime (like 2024-06-01T00:00:00Z)"),
                )
            })?),
            other => {
                return Err(err(
                    &at,
                    format!(
                        "must be a number or an RFC 3339 datetime, not {}",
                        json_type(other)
                    ),
                ));
            }
        };
        let slot = match name.as_str() {
            "gt" => &mut range.gt,
            "gte" => &mut range.gte,
            "lt" => &mut range.lt,
            "lte" => &mut range.lte,
            other => {
                return Err(err(
                    &at,
                    format!("unknown bound {other:?}; a range takes gt, gte, lt and lte"),
                ));
            }
        };
        *slot = Some(bound);
    }
    let bounds = [range.gt, range.gte, range.lt, range.lte];
    let kinds = bounds.iter().flatten().map(|b| matches!(b, Bound::Num(_)));
    if kinds.clone().any(|n| n) && kinds.clone().any(|n| !n) {
        return Err(err(
            path,
            "mixes numbers and datetimes; give every bound of one range the same kind",
        ));
    }
    Ok(range)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn equal_filters_have_one_fingerprint_and_different_ones_differ() {
        let f = |v: Value| Filter::parse(&v).expect("a filter");
        let a = json!({"must": [{"key": "u", "range": {"lt": 100}}, {"key": "tag", "match": {"any": ["a", "b"]}}]});
        assert_eq!(f(a.clone()).fingerprint(), f(a).fingerprint());
        assert_eq!(
            f(json!({"must": [{"key": "x", "match": {"value": 0.0}}]})).fingerprint(),
            f(json!({"must": [{"key": "x", "match": {"value": -0.0}}]})).fingerprint(),
            "equal numbers"
        );
        let distinct = [
            json!({"must": [{"key": "u", "range": {"lt": 100}}]}),
            json!({"must": [{"key": "u", "range": {"lte": 100}}]}),
            json!({"must": [{"key": "u", "range": {"lt": 101}}]}),
            json!({"must": [{"key": "v", "range": {"lt": 100}}]}),
            json!({"should": [{"key": "u", "range": {"lt": 100}}]}),
            json!({"must": [{"key": "u", "match": {"value": "100"}}]}),
            json!({"must": [{"key": "u", "match": {"value": 100}}]}),
            json!({"must": [{"key": "t", "range": {"gt": "2024-01-01T00:00:00Z"}}]}),
            json!({"must": [{"key": "t", "range": {"gt": "2024-01-01T00:00:01Z"}}]}),
        ];
        let prints: std::collections::HashSet<u64> =
            distinct.into_iter().map(|v| f(v).fingerprint()).collect();
        assert_eq!(prints.len(), 9);
    }

    fn item(id: &str, metadata: Value) -> ItemRecord {
        let at = parse_time("2024-06-01T12:00:00Z").expect("time");
        ItemRecord {
            id: id.into(),
            filename: Some(format!("{id}.jpg")),
            media_ref: None,
            system: Some(json!({"width": 640, "height": 480})),
            metadata: Some(metadata),
            created_at: at,
            updated_at: at,
        }
    }

    fn passes(filter: Value, item: &ItemRecord) -> bool {
        Filter::parse(&filter).expect("filter").matches(item)
    }

    #[test]
    fn conditions_read_user_and_system_fields() {
        let photo = item(
            "p1",
            json!({"album": "Holidays", "year": 2024, "tags": ["sea", "sun"], "fav": true,
                   "camera": {"make": "Fuji"}, "people": [{"name": "Ann"}, {"name": "Bo"}],
                   "taken": "2024-05-30T09:00:00+02:00", "note": null, "empty": []}),
        );
        assert!(passes(
            json!({"must": [{"key": "album", "match": {"value": "Holidays"}}]}),
            &photo
        ));
        assert!(!passes(
            json!({"must": [{"key": "album", "match": {"value": "Work"}}]}),
            &photo
        ));
        assert!(passes(
            json!({"must": [{"key": "tags", "match": {"value": "sun"}}]}),
            &photo
        ));
        assert!(passes(
            json!({"must": [{"key": "tags", "match": {"any": ["x", "sea"]}}]}),
            &photo
        ));
        assert!(passes(
            json!({"must": [{"key": "tags", "match": {"except": ["sea"]}}]}),
            &photo
        ));
        assert!(!passes(
            json!({"must": [{"key": "tags", "match": {"except": ["sea", "sun"]}}]}),
            &photo
        ));
        assert!(passes(
            json!({"must": [{"key": "fav", "match": {"value": true}}]}),
            &photo
        ));
        assert!(passes(
            json!({"must": [{"key": "year", "match": {"value": 2024}}]}),
            &photo
        ));
        assert!(passes(
            json!({"must": [{"key": "camera.make", "match": {"value": "Fuji"}}]}),
            &photo
        ));
        assert!(passes(
            json!({"must": [{"key": "people.name", "match": {"value": "Bo"}}]}),
            &photo
        ));
        assert!(passes(
            json!({"must": [{"key": "people[].name", "match": {"value": "Ann"}}]}),
            &photo
        ));
        assert!(passes(
            json!({"must": [{"key": "year", "range": {"gte": 2024, "lt": 2025}}]}),
            &photo
        ));
        assert!(!passes(
            json!({"must": [{"key": "year", "range": {"gt": 2024}}]}),
            &photo
        ));
        assert!(passes(
            json!({"must": [{"key": "taken", "range": {"lt": "2024-05-30T08:00:00Z"}}]}),
            &photo
        ));
        assert!(passes(
            json!({"must": [{"is_null": {"key": "note"}}]}),
            &photo
        ));
        assert!(passes(
            json!({"must": [{"is_empty": {"key": "note"}}]}),
            &photo
        ));
        assert!(passes(
            json!({"must": [{"is_empty": {"key": "empty"}}]}),
            &photo
        ));
        assert!(passes(
            json!({"must": [{"is_empty": {"key": "absent"}}]}),
            &photo
        ));
        assert!(!passes(
            json!({"must": [{"is_empty": {"key": "tags"}}]}),
            &photo
        ));
        assert!(!passes(
            json!({"must": [{"is_null": {"key": "absent"}}]}),
            &photo
        ));
        assert!(passes(json!({"must": [{"has_id": ["p0", "p1"]}]}), &photo));
        assert!(passes(
            json!({"must": [{"key": "$width", "range": {"gt": 600}}]}),
            &photo
        ));
        assert!(passes(
            json!({"must": [{"key": "$filename", "match": {"value": "p1.jpg"}}]}),
            &photo
        ));
        assert!(passes(
            json!({"must": [{"key": "$created_at", "range": {"gte": "2024-06-01T12:00:00Z"}}]}),
            &photo
        ));
        // A number never equals a string, nor a range of numbers a string.
        assert!(!passes(
            json!({"must": [{"key": "year", "match": {"value": "2024"}}]}),
            &photo
        ));
        assert!(!passes(
            json!({"must": [{"key": "album", "range": {"gt": 0}}]}),
            &photo
        ));
    }

    #[test]
    fn clauses_combine_and_nest() {
        let a = item("a", json!({"team": "legal", "level": 3}));
        let f = json!({
            "should": [{"key": "team", "match": {"value": "ops"}},
                       {"key": "team", "match": {"value": "legal"}}],
            "must_not": [{"must": [{"key": "level", "range": {"gt": 5}}]}]
        });
        assert!(passes(f, &a));
        let f = json!({"must_not": [{"key": "team", "match": {"value": "legal"}}]});
        assert!(!passes(f, &a));
        // One condition may stand for a list of one.
        assert!(passes(
            json!({"must": {"key": "level", "match": {"value": 3}}}),
            &a
        ));
        assert!(passes(json!({}), &a));
    }

    #[test]
    fn refusals_name_their_path() {
        let cases = [
            (json!([1]), "", "must be an object"),
            (json!({"mustt": []}), "mustt", "unknown clause"),
            (json!({"must": 3}), "must", "list of conditions"),
            (
                json!({"must": [{"key": "a"}]}),
                "must[0]",
                "needs match or range",
            ),
            (
                json!({"must": [{"match": {"value": 1}}]}),
                "must[0].key",
                "is required",
            ),
            (
                json!({"must": [{"key": 7, "match": {"value": 1}}]}),
                "must[0].key",
                "string",
            ),
            (
                json!({"must": [{"key": "a..b", "match": {"value": 1}}]}),
                "must[0].key",
                "dotted",
            ),
            (
                json!({"must": [{"key": "$nope", "match": {"value": 1}}]}),
                "must[0].key",
                "system",
            ),
            (
                json!({"must": [{}, {"key": "a", "range": {"gt": "soon"}}]}),
                "must[0]",
                "needs match or range",
            ),
            (
                json!({"must": [{"key": "a", "match": {"value": 1}}, {"key": "a", "range": {"gt": "soon"}}]}),
                "must[1].range.gt",
                "RFC 3339",
            ),
            (
                json!({"must": [{"key": "a", "range": {"gt": 1, "lt": "2024-01-01T00:00:00Z"}}]}),
                "must[0].range",
                "mixes",
            ),
            (
                json!({"must": [{"key": "a", "range": {"above": 1}}]}),
                "must[0].range.above",
                "unknown bound",
            ),
            (
                json!({"must": [{"key": "a", "range": {}}]}),
                "must[0].range",
                "at least one",
            ),
            (
                json!({"must": [{"key": "a", "match": {"value": [1]}}]}),
                "must[0].match.value",
                "string, a number",
            ),
            (
                json!({"must": [{"key": "a", "match": {"any": 1}}]}),
                "must[0].match.any",
                "list",
            ),
            (
                json!({"must": [{"key": "a", "match": {"value": 1, "any": [1]}}]}),
                "must[0].match",
                "exactly one",
            ),
            (
                json!({"should": [{"has_id": [1]}]}),
                "should[0].has_id[0]",
                "id",
            ),
            (
                json!({"must_not": [{"is_null": {"key": "a", "x": 1}}]}),
                "must_not[0].is_null.x",
                "not allowed",
            ),
            (
                json!({"must": [{"key": "a", "match": {"value": 1}, "extra": 2}]}),
                "must[0].extra",
                "not allowed",
            ),
            (
                json!({"must": [{"must": [{"should": [{"key": "a", "range": {"lt": null}}]}]}]}),
                "must[0].must[0].should[0].range.lt",
                "number or an RFC 3339",
            ),
        ];
        for (filter, path, reason) in cases {
            let e = Filter::parse(&filter).expect_err(&filter.to_string());
            assert_eq!(e.path, path, "{filter}: {e:?}");
            assert!(e.reason.contains(reason), "{filter}: {e:?}");
        }
    }

    #[test]
    fn filters_are_bounded() {
        let mut deep = json!({"key": "a", "match": {"value": 1}});
        for _ in 0..=MAX_DEPTH + 1 {
            deep = json!({"must": [deep]});
        }
        let e = Filter::parse(&deep).expect_err("too deep");
        assert!(e.reason.contains("nest"), "{e:?}");
        let many: Vec<Value> = (0..=MAX_CONDITIONS)
            .map(|i| json!({"key": "a", "match": {"value": i}}))
            .collect();
        let e = Filter::parse(&json!({"should": many})).expect_err("too many");
        assert_eq!(e.path, format!("should[{MAX_CONDITIONS}]"));
    }

    #[test]
    fn a_filter_is_bounded_in_values_and_their_length_as_a_whole() {
        let limits = FilterLimits::default();
        // Four lists of 1,024 values: each within its own bound, the whole at the limit.
        let list = |from: usize, n: usize| -> Vec<Value> {
            (from..from + n).map(|i| json!(format!("v{i}"))).collect()
        };
        let at_limit: Vec<Value> = (0..4)
            .map(|c| json!({"key": "a", "match": {"any": list(c * 1024, 1024)}}))
            .collect();
        assert_eq!(limits.values, 4 * 1024);
        Filter::parse(&json!({"should": at_limit})).expect("at the limit");
        let mut past = at_limit.clone();
        past.push(json!({"key": "b", "match": {"value": "one more"}}));
        let e = Filter::parse(&json!({"should": past})).expect_err("past the limit");
        assert_eq!(e.path, "should[4].match.value");
        assert!(e.reason.contains("4096 values"), "{e:?}");
        assert!(e.reason.contains("filter-max-values"), "{e:?}");
        let mut past = at_limit;
        past[2] = json!({"has_id": list(0, 1024)});
        past.push(json!({"has_id": ["x"]}));
        let e = Filter::parse(&json!({"should": past})).expect_err("ids count too");
        assert_eq!(e.path, "should[4].has_id");
        // The whole filter's bound, as the gateway's setting gives it.
        let small = FilterLimits {
            values: 3,
            value_bytes: 8,
        };
        let e = Filter::parse_within(
            &json!({"must": [{"key": "a", "match": {"any": [1, 2]}}, {"key": "b", "match": {"except": [3, 4]}}]}),
            small,
        )
        .expect_err("past 3");
        assert_eq!(e.path, "must[1].match.except");
        let e = Filter::parse_within(
            &json!({"must": [{"key": "a", "match": {"any": ["short", "123456789"]}}]}),
            small,
        )
        .expect_err("too long");
        assert_eq!(e.path, "must[0].match.any[1]");
        assert!(
            e.reason.contains("9 bytes") && e.reason.contains("at most 8"),
            "{e:?}"
        );
        let e = Filter::parse_within(&json!({"must": [{"has_id": ["123456789"]}]}), small)
            .expect_err("a long id");
        assert_eq!(e.path, "must[0].has_id[0]");
        let e = Filter::parse(
            &json!({"must": [{"key": "x".repeat(MAX_KEY_BYTES + 1), "match": {"value": 1}}]}),
        )
        .expect_err("a long key");
        assert_eq!(e.path, "must[0].key");
    }

    #[test]
    fn sets_answer_as_the_values_compared_one_by_one() {
        let listed = vec![
            Scalar::Str("a".into()),
            Scalar::Str("".into()),
            Scalar::Num(0.0),
            Scalar::Num(1.5),
            Scalar::Num(9_007_199_254_740_993.0),
            Scalar::Bool(true),
        ];
        let set = ScalarSet::new(listed.clone());
        let probes = [
            json!("a"),
            json!("b"),
            json!(""),
            json!(0),
            json!(-0.0),
            json!(0.0),
            json!(1.5),
            json!(1),
            json!(9_007_199_254_740_993u64),
            json!(9_007_199_254_740_992u64),
            json!(true),
            json!(false),
            json!(null),
            json!("1.5"),
            json!([1.5]),
            json!({"a": 1}),
        ];
        for v in &probes {
            let linear = listed.iter().any(|w| w.equals(v));
            assert_eq!(set.contains(v), linear, "{v}");
        }
        let ids = IdSet::new(vec!["n1".into(), "n2".into()]);
        assert!(ids.contains("n2") && !ids.contains("n3"));
        assert_eq!(&ids[..], &["n1".to_string(), "n2".to_string()]);
    }
}
