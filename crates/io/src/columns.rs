//! Which of an input's columns are read, under which names and as which types.

use mittari_sdk::{DataType, MetricDescriptor};

/// `--column customer_id=asiakasnro`: the metric's (or a group-by) name for a source column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnMapping {
    /// The name the metric (or `--group-by`) knows.
    pub name: String,
    /// The column's name in the input.
    pub source: String,
}

impl std::str::FromStr for ColumnMapping {
    type Err = String;

    fn from_str(text: &str) -> Result<ColumnMapping, String> {
        match text.split_once('=') {
            Some((name, source)) if !name.trim().is_empty() && !source.trim().is_empty() => {
                Ok(ColumnMapping {
                    name: name.trim().to_owned(),
                    source: source.trim().to_owned(),
                })
            }
            _ => Err(format!(
                "{text:?} must look like NAME=SOURCE, e.g. customer_id=asiakasnro"
            )),
        }
    }
}

/// A column of the input that is read: its position, its name for the metric, and its type
/// (`None` for a group-by column the metric does not declare, typed from its values).
#[derive(Debug, Clone)]
pub(crate) struct Selected {
    pub(crate) index: usize,
    pub(crate) name: String,
    pub(crate) data_type: Option<DataType>,
}

/// Picks the columns of `header` that the metric declares or `group_by` names, renamed by
/// `mappings`. The error lists the input's columns and suggests the closest name.
pub(crate) fn select(
    header: &[String],
    descriptor: &MetricDescriptor,
    group_by: &[String],
    mappings: &[ColumnMapping],
    named: &[(String, String)],
) -> Result<Vec<Selected>, String> {
    let is_named = |name: &str| named.iter().any(|(_, c)| c == name);
    for (i, mapping) in mappings.iter().enumerate() {
        if !header.contains(&mapping.source) {
            return Err(format!(
                "--column {}={}: the input has no column {}{}",
                mapping.name,
                mapping.source,
                mapping.source,
                listing(header, &mapping.source)
            ));
        }
        if descriptor.input_column(&mapping.name).is_none()
            && !group_by.contains(&mapping.name)
            && !is_named(&mapping.name)
        {
            let inputs: Vec<String> = descriptor.inputs.iter().map(|c| c.name.clone()).collect();
            return Err(format!(
                "--column {}={}: {} is neither an input of {} ({}) nor a --group-by column{}",
                mapping.name,
                mapping.source,
                mapping.name,
                descriptor.name,
                inputs.join(", "),
                suggestion(&inputs, &mapping.name)
            ));
        }
        if let Some(other) = mappings[..i].iter().find(|m| m.name == mapping.name) {
            return Err(format!(
                "--column {} is given twice ({} and {})",
                mapping.name, other.source, mapping.source
            ));
        }
    }
    let name_of = |source: &String| -> String {
        mappings
            .iter()
            .find(|m| &m.source == source)
            .map_or_else(|| source.clone(), |m| m.name.clone())
    };
    // A name twice in the header is an error only where it is read: a spreadsheet's two
    // "notes" columns do not stop a metric that reads neither.
    let mut first_at: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (index, source) in header.iter().enumerate() {
        let Some(&first) = first_at.get(source.as_str()) else {
            first_at.insert(source, index);
            continue;
        };
        let name = name_of(source);
        if descriptor.input_column(&name).is_some()
            || group_by.contains(&name)
            || is_named(&name)
            || mappings.iter().any(|m| &m.source == source)
        {
            return Err(format!(
                "column {source} appears twice in the header (columns {} and {}); rename one of them",
                first + 1,
                index + 1
            ));
        }
    }
    let mut selected: Vec<Selected> = Vec::new();
    for (index, source) in header.iter().enumerate() {
        let name = name_of(source);
        let data_type = match descriptor.input_column(&name) {
            Some(spec) => Some(spec.data_type),
            None if group_by.contains(&name) || is_named(&name) => None,
            None => continue,
        };
        if let Some(clash) = selected.iter().find(|s| s.name == name) {
            return Err(format!(
                "two columns would be read as {name}: {} and {source}; map only one with --column",
                header[clash.index]
            ));
        }
        selected.push(Selected {
            index,
            name,
            data_type,
        });
    }
    let present = |name: &str| selected.iter().any(|s| s.name == name);
    for spec in descriptor.inputs.iter().filter(|c| c.required) {
        if !present(&spec.name) {
            return Err(format!(
                "{} needs a column {}{}; if it has another name here, map it with --column {}=NAME",
                descriptor.name,
                spec.name,
                listing(header, &spec.name),
                spec.name
            ));
        }
    }
    for (parameter, name) in named {
        if !present(name) && descriptor.input_column(name).is_none() {
            return Err(format!(
                "--param {parameter}: the input has no column {name}{}",
                listing(header, name)
            ));
        }
    }
    for name in group_by {
        if !present(name) {
            return Err(format!(
                "--group-by {name}: the input has no column {name}{}",
                listing(header, name)
            ));
        }
    }
    Ok(selected)
}

/// "; its columns are a, b, c; did you mean b?"
fn listing(header: &[String], wanted: &str) -> String {
    format!(
        "; its columns are {}{}",
        header.join(", "),
        suggestion(header, wanted)
    )
}

/// "; did you mean NAME?" for the closest name, when one is close enough.
fn suggestion(names: &[String], wanted: &str) -> String {
    let lower = wanted.to_lowercase();
    names
        .iter()
        .map(|name| {
            let score = strsim::jaro_winkler(&name.to_lowercase(), &lower);
            (score, name)
        })
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map_or_else(String::new, |(_, name)| format!("; did you mean {name}?"))
}

#[cfg(test)]
mod tests {
    use mittari_sdk::ColumnSpec;

    use super::*;

    fn check(header: &str, group_by: &[&str], mappings: &[&str], expect: Result<&str, &str>) {
        let descriptor = MetricDescriptor::new("clv", "1", "test")
            .input(ColumnSpec::string("customer_id", "").required())
            .input(ColumnSpec::double("amount", ""));
        let header: Vec<String> = header.split(',').map(str::to_owned).collect();
        let group_by: Vec<String> = group_by.iter().map(|s| (*s).to_owned()).collect();
        let mappings: Vec<ColumnMapping> = mappings.iter().map(|m| m.parse().unwrap()).collect();
        let got = select(&header, &descriptor, &group_by, &mappings, &[]).map(|selected| {
            selected
                .iter()
                .map(|s| format!("{}<-{}", s.name, header[s.index]))
                .collect::<Vec<_>>()
                .join(" ")
        });
        match (got, expect) {
            (Ok(got), Ok(want)) => assert_eq!(got, want),
            (Err(got), Err(want)) => assert!(got.contains(want), "{got} lacks {want}"),
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn columns_are_selected_renamed_and_checked() {
        check(
            "customer_id,amount,note",
            &[],
            &[],
            Ok("customer_id<-customer_id amount<-amount"),
        );
        check(
            "asiakasnro,summa,alue",
            &["region"],
            &["customer_id=asiakasnro", "amount=summa", "region=alue"],
            Ok("customer_id<-asiakasnro amount<-summa region<-alue"),
        );
        check(
            "customer,amount",
            &[],
            &[],
            Err(
                "clv needs a column customer_id; its columns are customer, amount; did you mean customer?",
            ),
        );
        check(
            "asiakasnro,amount",
            &[],
            &["customer_id=asiakas"],
            Err(
                "the input has no column asiakas; its columns are asiakasnro, amount; did you mean asiakasnro?",
            ),
        );
        check(
            "a,amount",
            &[],
            &["customer=a"],
            Err(
                "customer is neither an input of clv (customer_id, amount) nor a --group-by column; did you mean customer_id?",
            ),
        );
        check(
            "customer_id,asiakas,amount",
            &[],
            &["customer_id=asiakas"],
            Err("two columns would be read as customer_id: customer_id and asiakas"),
        );
        check(
            "customer_id,amount",
            &["regoin"],
            &[],
            Err("--group-by regoin: the input has no column regoin"),
        );
        check(
            "customer_id,amount,customer_id",
            &[],
            &[],
            Err("column customer_id appears twice in the header (columns 1 and 3)"),
        );
        // Twice, but never read: no error.
        check(
            "customer_id,note,amount,note",
            &[],
            &[],
            Ok("customer_id<-customer_id amount<-amount"),
        );
        assert!("customer_id".parse::<ColumnMapping>().is_err());
    }
}
