//! The house rules of the layout, checked from `cargo metadata`.

use std::process::Command;

use serde_json::Value;

fn metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("metadata JSON")
}

#[test]
fn no_domain_crate_depends_on_another() {
    let metadata = metadata();
    let packages = metadata["packages"].as_array().unwrap();
    let domains: Vec<&Value> = packages
        .iter()
        .filter(|p| p["name"].as_str().unwrap().starts_with("domain-"))
        .collect();
    assert_eq!(domains.len(), 3, "product, order and payment");
    for package in domains {
        let name = package["name"].as_str().unwrap();
        for dependency in package["dependencies"].as_array().unwrap() {
            let dep = dependency["name"].as_str().unwrap();
            assert!(
                !dep.starts_with("domain-"),
                "{name} depends on {dep}: contexts talk only through shared-kernel ports and events"
            );
            assert_ne!(dep, "shop", "{name} depends on the app");
        }
    }
}

#[test]
fn the_shared_kernel_depends_on_no_context() {
    let metadata = metadata();
    let kernel = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "shared-kernel")
        .unwrap();
    for dependency in kernel["dependencies"].as_array().unwrap() {
        let dep = dependency["name"].as_str().unwrap();
        assert!(
            !dep.starts_with("domain-") && dep != "shop",
            "shared-kernel depends on {dep}"
        );
    }
}
