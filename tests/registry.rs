//! The registry as data: counts, uniqueness, configs agreeing with entries, lookups.

mod common;

use std::collections::{BTreeSet, HashMap};
use uerzoo::registry::{Family, Filter, Registry, RegistryError, UerConfig};

fn reg() -> &'static Registry {
    Registry::builtin()
}

#[test]
fn registry_parses_with_61_entries() {
    assert_eq!(reg().entries().len(), 61);
}

#[test]
fn family_counts_match_the_zoo() {
    let count = |f| {
        reg()
            .filter(&Filter {
                family: Some(f),
                ..Default::default()
            })
            .len()
    };
    assert_eq!(count(Family::Roberta), 24);
    assert_eq!(count(Family::WordRoberta), 5);
    assert_eq!(count(Family::Gpt2), 6);
    assert_eq!(count(Family::Legacy), 26);
}

#[test]
fn roberta_covers_every_layers_hidden_pair() {
    let pairs: BTreeSet<(usize, usize)> = reg()
        .filter(&Filter {
            family: Some(Family::Roberta),
            ..Default::default()
        })
        .iter()
        .map(|e| (e.layers, e.hidden))
        .collect();
    let mut want = BTreeSet::new();
    for l in [2, 4, 6, 8, 10, 12] {
        for h in [128, 256, 512, 768] {
            want.insert((l, h));
        }
    }
    assert_eq!(pairs, want);
    for e in reg().filter(&Filter {
        family: Some(Family::Roberta),
        ..Default::default()
    }) {
        assert_eq!(
            e.name,
            format!("chinese_roberta_L-{}_H-{}", e.layers, e.hidden)
        );
        assert_eq!(e.heads, e.hidden / 64, "{}", e.name);
        assert_eq!(e.feedforward, 4 * e.hidden, "{}", e.name);
        assert_eq!(
            e.sources.hf.as_ref().unwrap().repo,
            format!("uer/{}", e.name)
        );
    }
}
