//! "Did you mean …?" for names a user typed (command line, weft.toml): the closest known name by edit distance, when it is close
//! enough to be a typo (or differs only in case, `-`/`_`, or a `.wasm` suffix). Pure, but for
//! [`file_hint`], which lists the one folder a missing file was looked for in.

/// Levenshtein distance over chars.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = (previous + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(current + 1);
            previous = current;
        }
    }
    row[b.len()]
}

/// The same name for a human: case, `-`/`_` and a `.wasm` suffix do not count.
fn normal(name: &str) -> String {
    name.trim_end_matches(".wasm")
        .to_lowercase()
        .replace('-', "_")
}

/// `: did you mean "x"?` for the nearest of `known`, or an empty string when none is near.
pub fn did_you_mean<'a>(typed: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    let typed_normal = normal(typed);
    let best = known
        .into_iter()
        .map(|k| (distance(&typed_normal, &normal(k)), k))
        .min_by_key(|(d, _)| *d);
    match best {
        // A third of the name may differ: a typo, not another word.
        Some((d, k)) if d <= (typed_normal.chars().count() / 3).max(1) => {
            format!(": did you mean \"{k}\"?")
        }
        _ => String::new(),
    }
}

/// The hint for a table name that is not declared: when it is a table's entity set name (or the other
/// way round, `account` typed where `accounts` is wanted) the two names explained, else the nearest
/// logical name. Empty when nothing is near.
pub fn table_hint(schema: &weft_store::Schema, typed: &str) -> String {
    if let Some(table) = schema.table_by_entity_set(typed) {
        return format!(
            ": \"{typed}\" is the entity set name (Web API URLs) of the table \"{}\"; use its logical name",
            table.logical_name
        );
    }
    did_you_mean(
        typed,
        schema.tables().iter().map(|t| t.logical_name.as_str()),
    )
}

/// The same for an entity set name (a Web API URL segment): a table's logical name typed where its entity
/// set name is wanted is explained, else the nearest entity set name.
pub fn entity_set_hint(schema: &weft_store::Schema, typed: &str) -> String {
    if let Some(table) = schema.table(typed) {
        return format!(
            ": \"{typed}\" is a table's logical name; its entity set name is \"{}\"",
            table.entity_set_name
        );
    }
    did_you_mean(
        typed,
        schema.tables().iter().map(|t| t.entity_set_name.as_str()),
    )
}

/// The hint for a component file that cannot be read: a near `.wasm` name in the same folder (cargo names
/// a crate `my-plugin`'s component `my_plugin.wasm`), else, when the folder itself is missing, that the
/// component may not be built yet.
pub fn file_hint(path: &std::path::Path) -> String {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return String::new();
    };
    let Ok(entries) = std::fs::read_dir(if dir.as_os_str().is_empty() {
        std::path::Path::new(".")
    } else {
        dir
    }) else {
        return " (its folder does not exist: not built yet? `weft build` writes components)"
            .into();
    };
    let names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".wasm"))
        .collect();
    did_you_mean(&name.to_string_lossy(), names.iter().map(String::as_str))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_names_are_suggested_far_ones_are_not() {
        let known = ["validate account", "number new accounts", "enricher"];
        assert_eq!(
            did_you_mean("validate acount", known),
            ": did you mean \"validate account\"?"
        );
        assert_eq!(
            did_you_mean("Enricher", known),
            ": did you mean \"enricher\"?"
        );
        assert_eq!(
            did_you_mean("azure-aware", ["azure_aware"]),
            ": did you mean \"azure_aware\"?"
        );
        assert_eq!(
            did_you_mean("my_plugin.wasm", ["my-plugin"]),
            ": did you mean \"my-plugin\"?"
        );
        assert_eq!(did_you_mean("something else", known), "");
        assert_eq!(
            did_you_mean("my-plugin.wasm", ["my_plugin.wasm", "other.wasm"]),
            ": did you mean \"my_plugin.wasm\"?"
        );
        assert_eq!(did_you_mean("x", Vec::<&str>::new()), "");
    }

    /// A missing component names the `.wasm` beside it that differs by `-`/`_`, or says the folder is
    /// missing.
    #[test]
    fn missing_component_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tidy_names.wasm"), b"").unwrap();
        assert_eq!(
            file_hint(&dir.path().join("tidy-names.wasm")),
            ": did you mean \"tidy_names.wasm\"?"
        );
        assert_eq!(file_hint(&dir.path().join("elsewhere.wasm")), "");
        assert!(file_hint(&dir.path().join("release/x.wasm")).contains("not built yet"));
    }

    /// A table's entity set name typed for its logical name (and the other way round) is explained.
    #[test]
    fn table_and_entity_set_names() {
        let schema = crate::registration::Registration::from_toml_str(
            "weft.toml",
            std::path::Path::new("."),
            crate::registration::EXAMPLE_ACCOUNT_TABLE,
        )
        .unwrap()
        .schema;
        assert!(
            table_hint(&schema, "accounts")
                .contains("the entity set name (Web API URLs) of the table \"account\"")
        );
        assert_eq!(table_hint(&schema, "acount"), ": did you mean \"account\"?");
        assert!(
            entity_set_hint(&schema, "account").contains("its entity set name is \"accounts\"")
        );
        assert_eq!(
            entity_set_hint(&schema, "acounts"),
            ": did you mean \"accounts\"?"
        );
    }
}
