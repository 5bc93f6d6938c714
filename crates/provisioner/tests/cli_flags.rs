//! The `provision` command names its own flags when their values are wrong, not the JSON
//! fields the API uses for the same record.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn bad_provision_flags_are_named_as_flags() {
    let output = Command::new(env!("CARGO_BIN_EXE_provisioner"))
        .args([
            "provision",
            "--client-id",
            "Bad_Slug",
            "--name",
            "   ",
            "--email",
            "nobody",
            "--tier",
            "gold",
        ])
        // Validation comes before any configuration is read: none is given.
        .env_remove("PROVISIONER_CONFIG")
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    for flag in ["--client-id", "--name", "--email", "--tier"] {
        assert!(
            stderr.contains(&format!("{flag} ")),
            "{flag} not named: {stderr}"
        );
    }
    for field in ["clientId", "clientName", "orgEmail"] {
        assert!(!stderr.contains(field), "{field} named: {stderr}");
    }
    assert!(stderr.contains("--client-id contains '_'"), "{stderr}");
    assert!(stderr.contains("--tier \"gold\" is not a tier"), "{stderr}");
}
