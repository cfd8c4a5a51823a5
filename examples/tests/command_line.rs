//! Every example binary explains itself with `--help` and refuses bad options
//! with a message, before touching any store.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

const BINARIES: [(&str, &str); 4] = [
    ("counter", env!("CARGO_BIN_EXE_counter")),
    ("login", env!("CARGO_BIN_EXE_login")),
    ("user", env!("CARGO_BIN_EXE_user")),
    ("devices", env!("CARGO_BIN_EXE_devices")),
];

#[test]
fn help_lists_every_option_and_its_variable() {
    for (name, binary) in BINARIES {
        let output = Command::new(binary).arg("--help").output().unwrap();
        assert!(output.status.success(), "{name} --help");
        let help = String::from_utf8(output.stdout).unwrap();
        for expected in [
            "--port",
            "PORT",
            "--store",
            "LATCHKEY_STORE",
            "--key",
            "LATCHKEY_KEY",
            "--idle",
            "--secure-cookie",
            "--metrics-port",
        ] {
            assert!(
                help.contains(expected),
                "{name} --help lacks {expected}:\n{help}"
            );
        }
    }
}

#[test]
fn a_bad_option_is_refused_with_a_message() {
    for (name, binary) in BINARIES {
        let output = Command::new(binary)
            .args(["--port", "not-a-port"])
            .env_remove("PORT")
            .output()
            .unwrap();
        assert!(!output.status.success(), "{name} accepted a bad port");
        let message = String::from_utf8(output.stderr).unwrap();
        assert!(message.contains("--port"), "{name}: {message}");
    }
}
