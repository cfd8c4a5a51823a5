//! The files the published crates carry as copies of the repository's
//! originals: the guides of `docs/`, the schema of `migrations/` and the
//! license texts.
//!
//! A published crate holds only its own folder, so each crate keeps a copy of
//! what it includes or ships; the originals stay where readers look for them.
//! These tests fail as soon as a copy is missing or differs from its original.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

/// The repository's root: this crate is one of its folders.
fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives inside the repository")
}

/// The names of the files in `dir`, relative to the root, ending in `suffix`.
fn files(dir: &str, suffix: &str) -> BTreeSet<String> {
    fs::read_dir(root().join(dir))
        .unwrap_or_else(|error| panic!("{dir}: {error}"))
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(suffix))
        .collect()
}

fn read(path: &str) -> Vec<u8> {
    fs::read(root().join(path)).unwrap_or_else(|error| panic!("{path}: {error}"))
}

/// Panics unless `copy` holds exactly the bytes of `original`, saying how to
/// bring the copy up to date.
fn assert_copy(original: &str, copy: &str) {
    assert!(
        root().join(original).is_file(),
        "{copy} has no original {original}: edit the original and copy it"
    );
    assert!(
        read(original) == read(copy),
        "{copy} differs from its original {original}; edit the original, then: cp {original} {copy}"
    );
}

#[test]
fn the_guides_latchkey_includes_are_copies_of_docs() {
    let copies = files("crates/latchkey/docs", ".md");
    assert!(!copies.is_empty(), "crates/latchkey/docs holds no guide");
    for name in &copies {
        assert_copy(
            &format!("docs/{name}"),
            &format!("crates/latchkey/docs/{name}"),
        );
    }
}

#[test]
fn the_embedded_migrations_are_copies_of_migrations() {
    let originals = files("migrations", ".sql");
    assert!(!originals.is_empty(), "migrations/ holds no migration");
    assert_eq!(
        files("crates/latchkey-postgres/migrations", ".sql"),
        originals,
        "crates/latchkey-postgres/migrations/ must hold a copy of every file of migrations/, and nothing else"
    );
    for name in &originals {
        assert_copy(
            &format!("migrations/{name}"),
            &format!("crates/latchkey-postgres/migrations/{name}"),
        );
    }
    // A copied file that `MIGRATIONS` does not name would never run.
    let embedded: BTreeSet<String> = latchkey::postgres::MIGRATIONS
        .iter()
        .map(|migration| migration.name.to_owned())
        .collect();
    assert_eq!(embedded, originals, "MIGRATIONS must name every migration");
    for migration in latchkey::postgres::MIGRATIONS {
        assert!(
            migration.sql.as_bytes() == read(&format!("migrations/{}", migration.name)),
            "MIGRATIONS embeds another file as {}",
            migration.name
        );
    }
}

#[test]
fn every_publishable_crate_carries_the_license_texts() {
    let mut checked = 0;
    for name in files("crates", "") {
        let manifest = root().join("crates").join(&name).join("Cargo.toml");
        let Ok(manifest) = fs::read_to_string(manifest) else {
            continue;
        };
        if manifest
            .lines()
            .any(|line| line.trim() == "publish = false")
        {
            continue;
        }
        for license in ["LICENSE-MIT", "LICENSE-APACHE"] {
            assert_copy(license, &format!("crates/{name}/{license}"));
        }
        checked += 1;
    }
    assert!(checked > 0, "found no publishable crate under crates/");
}
