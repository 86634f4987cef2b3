//! The command line a person reads: each subcommand's `--help` shows its own options first
//! and then only the settings groups it uses; `aimp --help` has examples and the exit codes;
//! a failure is one line on stderr with exit code 1, a wrong command line exit code 2.

use std::process::Command;

use super::BIN;

/// Every settings group's heading and one flag of it.
const GROUPS: [(&str, &str); 5] = [
    ("Gateway settings:", "--body-limit"),
    ("Gateway client settings:", "--gateway-url"),
    ("Store settings:", "--data-dir"),
    ("Model settings:", "--models-dir"),
    ("Encoder settings:", "--device"),
];

/// Each subcommand, one of its own options, and the settings groups it reads.
const COMMANDS: [(&[&str], &str, &[&str]); 20] = [
    (
        &["serve"],
        "",
        &[
            "Gateway settings:",
            "Store settings:",
            "Model settings:",
            "Encoder settings:",
        ],
    ),
    (&["keys", "create"], "--name", &["Store settings:"]),
    (&["keys", "list"], "", &["Store settings:"]),
    (&["keys", "revoke"], "<ID>", &["Store settings:"]),
    (&["models", "list"], "", &["Model settings:"]),
    (&["models", "pull"], "<SLUG>", &["Model settings:"]),
    (&["models", "import"], "--unverified", &["Model settings:"]),
    (&["index"], "--scope", &["Gateway client settings:"]),
    (&["search"], "--top-k", &["Gateway client settings:"]),
    (&["bench", "ann"], "--ef-construction", &[]),
    (&["bench", "gen"], "--kind", &[]),
    (&["bench", "filter"], "--selectivity", &[]),
    (
        &["bench", "collection"],
        "--queries",
        &["Store settings:", "Model settings:"],
    ),
    (
        &["bench", "embed"],
        "--texts",
        &["Model settings:", "Encoder settings:"],
    ),
    (&["bench", "gateway"], "--clients", &[]),
    (&["store", "copy"], "--from", &["Store settings:"]),
    (&["snapshot", "create"], "--out", &["Store settings:"]),
    (&["snapshot", "restore"], "--force", &["Store settings:"]),
    // A command group shows the settings its commands share.
    (&["keys"], "", &["Store settings:"]),
    (&["bench"], "", &[]),
];

fn help(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .arg("--help")
        .env_remove("AIMP_API_KEY")
        .output()
        .expect("run aimp");
    assert!(out.status.success(), "{args:?} --help failed");
    String::from_utf8(out.stdout).expect("utf-8 help")
}

#[test]
fn each_subcommand_shows_its_own_options_then_only_the_settings_it_uses() {
    for (args, own, groups) in COMMANDS {
        let text = help(args);
        let first_group = GROUPS
            .iter()
            .filter_map(|(heading, _)| text.find(heading))
            .min()
            .unwrap_or(text.len());
        let options = text.find("Options:").expect("an Options section");
        assert!(
            options < first_group,
            "{args:?}: settings before its options\n{text}"
        );
        if !own.is_empty() {
            let at = text
                .find(own)
                .unwrap_or_else(|| panic!("{args:?}: no {own}\n{text}"));
            assert!(
                at < first_group,
                "{args:?}: {own} after the settings\n{text}"
            );
        }
        for (heading, flag) in GROUPS {
            let wanted = groups.contains(&heading);
            assert_eq!(
                text.contains(heading),
                wanted,
                "{args:?}: heading {heading:?} should be {}\n{text}",
                if wanted { "shown" } else { "absent" }
            );
            // A group's flags appear only with its heading (`--api-key` belongs to two).
            assert_eq!(
                text.contains(&format!("{flag} ")),
                wanted,
                "{args:?}: {flag}\n{text}"
            );
        }
    }
}

#[test]
fn the_top_level_help_lists_commands_with_examples_and_exit_codes() {
    let text = help(&[]);
    for command in [
        "serve", "keys", "models", "index", "search", "bench", "store",
    ] {
        assert!(
            text.contains(&format!("\n  {command} ")),
            "{command}\n{text}"
        );
        assert!(
            text.contains(&format!("  aimp {command} ")),
            "no example of {command}\n{text}"
        );
    }
    assert!(text.contains("Exit codes: 0"), "{text}");
    // Only the logging setting is shared by every command.
    for (heading, _) in GROUPS {
        assert!(!text.contains(heading), "{heading}\n{text}");
    }
}

#[test]
fn a_failure_is_one_line_and_exit_code_1_a_wrong_command_line_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    // No API key: the message says what to set.
    let out = Command::new(BIN)
        .args(["search", "--scope", "s", "--text", "x"])
        .env_remove("AIMP_API_KEY")
        .env_remove("RUST_BACKTRACE")
        .env("AIMP_GATEWAY_URL", "http://127.0.0.1:9")
        .output()
        .expect("run aimp");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("error: no API key: set AIMP_API_KEY"),
        "{stderr}"
    );

    // A store that cannot be opened: the cause is on the same line.
    let not_a_dir = dir.path().join("file");
    std::fs::write(&not_a_dir, b"x").expect("write");
    let out = Command::new(BIN)
        .args(["keys", "list", "--data-dir"])
        .arg(&not_a_dir)
        .env_remove("RUST_BACKTRACE")
        .env("RUST_LOG", "off")
        .output()
        .expect("run aimp");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("error: cannot open the store in") && lines[0].contains(": "),
        "{stderr}"
    );

    // A setting the command does not take is a usage error.
    let out = Command::new(BIN)
        .args(["bench", "ann", "--data-dir", "x"])
        .output()
        .expect("run aimp");
    assert_eq!(out.status.code(), Some(2));
}
