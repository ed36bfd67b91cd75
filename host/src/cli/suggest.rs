//! "Did you mean …?" for names a user typed: the closest known name by edit distance, when it is close
//! enough to be a typo (or differs only in case, `-`/`_`, or a `.wasm` suffix). Pure; no I/O.

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
        assert_eq!(did_you_mean("x", Vec::<&str>::new()), "");
    }
}
