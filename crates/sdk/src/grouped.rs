//! Results of many groups, column by column.
//!
//! A request may form a million groups. Held as one result object per group, every output's
//! name, unit and undefined reason would be repeated a million times (about 2.5 KB a group for
//! NPS); held as columns they are stored once and a group costs its values: 8 bytes per output.
//! Reasons and warnings are interned, since groups mostly share them.
//!
//! The plugin side of ABI version 3 builds these columns as it computes the groups of one call
//! ([`GroupedBuilder`]); the host builds them the same way for older plugins, one call per
//! group, and joins the parts of a request.

use std::collections::HashMap;

use arrow_array::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::{ConfidenceInterval, Output, Warning};

/// The results of consecutive groups, column by column: entry `i` of each column belongs to
/// group `i`.
#[derive(Debug, Clone, Default)]
pub struct GroupedOutput {
    /// The number of groups.
    pub groups: usize,
    /// One column per output any group returned, in order of first appearance.
    pub scalars: Vec<ScalarColumn>,
    /// Each distinct warning once, with the groups it applies to.
    pub warnings: Vec<GroupedWarning>,
    /// Result tables, each with the group it belongs to, in group order.
    pub tables: Vec<GroupTable>,
}

/// One output's value for every group.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalarColumn {
    pub name: String,
    /// The output's unit; filled by the host from the metric's descriptor.
    pub unit: String,
    /// The value of each group; 0 where it is undefined.
    pub values: Vec<f64>,
    /// Empty when every value is defined; otherwise per group 0 when its value is defined,
    /// else 1 + the index in `undefined_reasons` of why it is not.
    pub undefined: Vec<u32>,
    pub undefined_reasons: Vec<String>,
    /// `None` when no group's value has an interval.
    pub confidence_intervals: Option<ConfidenceIntervals>,
}

/// Interval bounds per group; a group without an interval has level 0.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfidenceIntervals {
    pub lower: Vec<f64>,
    pub upper: Vec<f64>,
    pub level: Vec<f64>,
}

/// A warning and the groups it applies to, ascending.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupedWarning {
    pub warning: Warning,
    pub groups: Vec<u32>,
}

/// A result table of one group.
#[derive(Debug, Clone)]
pub struct GroupTable {
    pub group: u32,
    pub name: String,
    pub table: RecordBatch,
}

impl ScalarColumn {
    /// Group `group`'s value, `None` when undefined.
    pub fn value(&self, group: usize) -> Option<f64> {
        match self.undefined.get(group) {
            Some(&reason) if reason != 0 => None,
            _ => self.values.get(group).copied(),
        }
    }

    /// Why group `group`'s value is undefined, `None` when it is defined.
    pub fn undefined_reason(&self, group: usize) -> Option<&str> {
        match self.undefined.get(group) {
            Some(&reason) if reason != 0 => self
                .undefined_reasons
                .get(reason as usize - 1)
                .map(String::as_str),
            _ => None,
        }
    }

    /// Group `group`'s confidence interval, if it has one.
    pub fn confidence_interval(&self, group: usize) -> Option<ConfidenceInterval> {
        let intervals = self.confidence_intervals.as_ref()?;
        let level = *intervals.level.get(group)?;
        (level != 0.0).then(|| ConfidenceInterval {
            lower: intervals.lower[group],
            upper: intervals.upper[group],
            level,
        })
    }
}

/// The reason for a group without a value of an output other groups returned.
const NO_VALUE: &str = "the metric returned no value for this group";

/// The reason for an undefined value the metric gave no reason for.
const NO_VALUE_FROM_METRIC: &str = "the metric returned no value";

impl ScalarColumn {
    fn new(name: &str) -> Self {
        ScalarColumn {
            name: name.to_owned(),
            unit: String::new(),
            values: Vec::new(),
            undefined: Vec::new(),
            undefined_reasons: Vec::new(),
            confidence_intervals: None,
        }
    }

    /// Appends one group's entry: a value, or the (interned) reason it is undefined.
    fn push(&mut self, value: Result<f64, u32>, interval: Option<ConfidenceInterval>) {
        let group = self.values.len();
        match value {
            Ok(value) => {
                self.values.push(value);
                if !self.undefined.is_empty() {
                    self.undefined.push(0);
                }
            }
            Err(reason) => {
                self.undefined.resize(group, 0);
                self.undefined.push(reason);
                self.values.push(0.0);
            }
        }
        let intervals = match (interval, &mut self.confidence_intervals) {
            (None, None) => return,
            (_, Some(intervals)) => intervals,
            (Some(_), slot @ None) => slot.insert(ConfidenceIntervals {
                lower: vec![0.0; group],
                upper: vec![0.0; group],
                level: vec![0.0; group],
            }),
        };
        let ci = interval.unwrap_or(ConfidenceInterval {
            lower: 0.0,
            upper: 0.0,
            level: 0.0,
        });
        intervals.lower.push(ci.lower);
        intervals.upper.push(ci.upper);
        intervals.level.push(ci.level);
    }

    /// Marks the entries from the column's length up to `len` undefined with `reason`.
    fn pad(&mut self, len: usize, reason: u32) {
        if self.values.len() >= len {
            return;
        }
        self.undefined.resize(self.values.len(), 0);
        self.undefined.resize(len, reason);
        self.values.resize(len, 0.0);
        if let Some(ci) = &mut self.confidence_intervals {
            ci.lower.resize(len, 0.0);
            ci.upper.resize(len, 0.0);
            ci.level.resize(len, 0.0);
        }
    }
}

/// Collects the outputs of consecutive groups into columns, or joins the parts built for
/// consecutive runs of groups.
#[derive(Debug, Default)]
pub struct GroupedBuilder {
    output: GroupedOutput,
    /// Scalar column of each output name seen so far.
    column_of: HashMap<String, usize>,
    /// Per scalar column: 1 + the index of each reason in its `undefined_reasons`.
    reason_of: Vec<HashMap<String, u32>>,
    /// Position in `output.warnings` of each distinct warning seen so far.
    warning_of: HashMap<Warning, usize>,
    /// Per scalar column: whether the group being pushed set it.
    set: Vec<bool>,
}

impl GroupedBuilder {
    pub fn new() -> Self {
        GroupedBuilder::default()
    }

    /// The column of output `name`, created (undefined for the groups so far) if new.
    fn column(&mut self, name: &str, position: usize) -> usize {
        // Groups mostly return the same outputs in the same order: no lookup needed.
        if self
            .output
            .scalars
            .get(position)
            .is_some_and(|c| c.name == name)
        {
            return position;
        }
        if let Some(&index) = self.column_of.get(name) {
            return index;
        }
        let index = self.output.scalars.len();
        self.output.scalars.push(ScalarColumn::new(name));
        self.reason_of.push(HashMap::new());
        self.set.push(false);
        self.column_of.insert(name.to_owned(), index);
        self.pad_columns();
        index
    }

    /// Interns `reason` in column `column`.
    fn reason(&mut self, column: usize, reason: &str) -> u32 {
        if let Some(&index) = self.reason_of[column].get(reason) {
            return index;
        }
        let reasons = &mut self.output.scalars[column].undefined_reasons;
        reasons.push(reason.to_owned());
        let index = reasons.len() as u32;
        self.reason_of[column].insert(reason.to_owned(), index);
        index
    }

    fn warning(&mut self, warning: Warning, groups: impl IntoIterator<Item = u32>) {
        match self.warning_of.get(&warning) {
            Some(&index) => self.output.warnings[index].groups.extend(groups),
            None => {
                self.warning_of
                    .insert(warning.clone(), self.output.warnings.len());
                self.output.warnings.push(GroupedWarning {
                    warning,
                    groups: groups.into_iter().collect(),
                });
            }
        }
    }

    /// Pads every column to the groups so far: outputs a group did not return are undefined.
    fn pad_columns(&mut self) {
        let groups = self.output.groups;
        for column in 0..self.output.scalars.len() {
            if self.output.scalars[column].values.len() < groups {
                let reason = self.reason(column, NO_VALUE);
                self.output.scalars[column].pad(groups, reason);
            }
        }
    }

    /// Adds the next group's output. Refuses an output that names a scalar twice.
    pub fn push(&mut self, output: Output) -> Result<(), String> {
        let group = self.output.groups as u32;
        self.set.iter_mut().for_each(|s| *s = false);
        for (position, scalar) in output.scalars.into_iter().enumerate() {
            let index = self.column(&scalar.name, position);
            if std::mem::replace(&mut self.set[index], true) {
                return Err(format!(
                    "the plugin returned output {:?} twice for one group; this is a bug in the plugin",
                    scalar.name
                ));
            }
            let value = match scalar.value {
                Some(value) => Ok(value),
                None => Err(self.reason(
                    index,
                    scalar
                        .undefined_reason
                        .as_deref()
                        .unwrap_or(NO_VALUE_FROM_METRIC),
                )),
            };
            self.output.scalars[index].push(value, scalar.confidence_interval);
        }
        self.output.groups += 1;
        self.pad_columns();
        for warning in output.warnings {
            self.warning(warning, [group]);
        }
        self.output
            .tables
            .extend(output.tables.into_iter().map(|(name, table)| GroupTable {
                group,
                name,
                table,
            }));
        Ok(())
    }

    /// Appends a part built for the groups that follow the ones so far.
    pub fn append(&mut self, part: GroupedOutput) {
        let before = self.output.groups;
        let added = part.groups;
        for (position, mut theirs) in part.scalars.into_iter().enumerate() {
            let index = self.column(&theirs.name, position);
            let remap: Vec<u32> = std::iter::once(0)
                .chain(
                    theirs
                        .undefined_reasons
                        .iter()
                        .map(|reason| self.reason(index, reason)),
                )
                .collect();
            let mine = &mut self.output.scalars[index];
            if mine.unit.is_empty() {
                mine.unit = std::mem::take(&mut theirs.unit);
            }
            if !theirs.undefined.is_empty() {
                mine.undefined.resize(before, 0);
                mine.undefined
                    .extend(theirs.undefined.iter().map(|&r| remap[r as usize]));
            } else if !mine.undefined.is_empty() {
                mine.undefined.resize(before + added, 0);
            }
            mine.values.append(&mut theirs.values);
            match (theirs.confidence_intervals, &mut mine.confidence_intervals) {
                (None, None) => {}
                (None, Some(ci)) => {
                    ci.lower.resize(before + added, 0.0);
                    ci.upper.resize(before + added, 0.0);
                    ci.level.resize(before + added, 0.0);
                }
                (Some(theirs), ci) => {
                    let ci = ci.get_or_insert_with(|| ConfidenceIntervals {
                        lower: vec![0.0; before],
                        upper: vec![0.0; before],
                        level: vec![0.0; before],
                    });
                    ci.lower.extend(theirs.lower);
                    ci.upper.extend(theirs.upper);
                    ci.level.extend(theirs.level);
                }
            }
        }
        self.output.groups += added;
        self.pad_columns();
        for warning in part.warnings {
            let groups = warning.groups.into_iter().map(|g| g + before as u32);
            self.warning(warning.warning, groups);
        }
        self.output
            .tables
            .extend(part.tables.into_iter().map(|mut t| {
                t.group += before as u32;
                t
            }));
    }

    pub fn finish(self) -> GroupedOutput {
        self.output
    }
}

#[cfg(test)]
mod tests {
    use crate::Scalar;

    use super::*;

    fn output(scalars: Vec<Scalar>, warnings: &[&str]) -> Output {
        let mut output = Output::new();
        output.scalars = scalars;
        for w in warnings {
            output = output.warning(w, "msg");
        }
        output
    }

    /// The value (or reason) and interval of each group of each column, by column name.
    fn cells(output: &GroupedOutput) -> Vec<(String, Vec<String>)> {
        output
            .scalars
            .iter()
            .map(|c| {
                let cells = (0..output.groups)
                    .map(|g| {
                        let value = match (c.value(g), c.undefined_reason(g)) {
                            (Some(v), None) => v.to_string(),
                            (None, Some(reason)) => format!("undefined: {reason}"),
                            other => format!("inconsistent {other:?}"),
                        };
                        match c.confidence_interval(g) {
                            Some(ci) => {
                                format!("{value} [{}, {}] @{}", ci.lower, ci.upper, ci.level)
                            }
                            None => value,
                        }
                    })
                    .collect();
                (c.name.clone(), cells)
            })
            .collect()
    }

    fn build(groups: &[Output]) -> GroupedOutput {
        let mut builder = GroupedBuilder::new();
        for output in groups {
            builder.push(output.clone()).unwrap();
        }
        builder.finish()
    }

    /// `b` first, then `a` from the second group on; intervals, undefined values and warnings
    /// in some groups only.
    fn groups() -> Vec<Output> {
        vec![
            output(vec![Scalar::new("b", 1.0)], &["w1"]),
            output(
                vec![
                    Scalar::new("a", 0.5).with_interval(0.25, 0.75, 0.9),
                    Scalar::undefined("b", "no rows"),
                ],
                &["w1", "w2"],
            ),
            output(vec![Scalar::new("a", 2.0), Scalar::new("b", 3.0)], &[]),
            output(vec![Scalar::undefined("b", "no rows")], &["w2"]),
        ]
    }

    fn expected() -> Vec<(String, Vec<String>)> {
        let s = |v: &[&str]| v.iter().map(|c| (*c).to_owned()).collect::<Vec<_>>();
        vec![
            (
                "b".to_owned(),
                s(&["1", "undefined: no rows", "3", "undefined: no rows"]),
            ),
            (
                "a".to_owned(),
                s(&[
                    "undefined: the metric returned no value for this group",
                    "0.5 [0.25, 0.75] @0.9",
                    "2",
                    "undefined: the metric returned no value for this group",
                ]),
            ),
        ]
    }

    #[test]
    fn builds_columns_with_interned_reasons_and_warnings() {
        let output = build(&groups());
        assert_eq!(cells(&output), expected());
        assert_eq!(output.groups, 4);
        assert_eq!(output.scalars[0].undefined_reasons, vec!["no rows"]);
        let warnings: Vec<(&str, &[u32])> = output
            .warnings
            .iter()
            .map(|w| (w.warning.code.as_str(), w.groups.as_slice()))
            .collect();
        assert_eq!(warnings, vec![("w1", &[0, 1][..]), ("w2", &[1, 3][..])]);
    }

    /// Every split into two consecutive parts, appended, gives what one builder gives.
    #[test]
    fn appending_parts_equals_building_at_once() {
        let all = groups();
        let whole = build(&all);
        for split in 0..=all.len() {
            let (first, second) = all.split_at(split);
            let mut joined = GroupedBuilder::new();
            joined.append(build(first));
            joined.append(build(second));
            let joined = joined.finish();
            assert_eq!(cells(&joined), expected(), "split at {split}");
            assert_eq!(joined.groups, whole.groups);
            assert_eq!(joined.warnings, whole.warnings, "split at {split}");
        }
    }

    /// What crosses the plugin boundary (meta JSON, scalar table, result tables) joins back to
    /// the same columns; a table short of what the meta promises is refused.
    #[test]
    fn crosses_the_boundary_as_meta_and_tables() {
        use crate::abi::GroupedMeta;
        let mut with_table = groups();
        let table = crate::result_table(
            "t",
            vec![(
                "x",
                std::sync::Arc::new(arrow_array::Float64Array::from(vec![1.5])) as _,
            )],
        )
        .unwrap();
        with_table[2] = with_table[2].clone().table("t", table);
        let original = build(&with_table);
        let (meta, scalars, tables) = GroupedMeta::split(original.clone());
        let meta: GroupedMeta =
            serde_json::from_slice(&serde_json::to_vec(&meta).unwrap()).unwrap();
        let all: Vec<RecordBatch> = scalars.into_iter().chain(tables).collect();
        let joined = meta.clone().join(all.clone()).unwrap();
        assert_eq!(cells(&joined), cells(&original));
        assert_eq!(joined.warnings, original.warnings);
        assert_eq!(joined.tables.len(), 1);
        assert_eq!(joined.tables[0].group, 2);
        assert!(meta.join(all[..1].to_vec()).is_err());
    }

    #[test]
    fn refuses_an_output_named_twice() {
        let mut builder = GroupedBuilder::new();
        let twice = output(vec![Scalar::new("a", 1.0), Scalar::new("a", 2.0)], &[]);
        assert!(builder.push(twice).unwrap_err().contains("twice"));
    }
}
