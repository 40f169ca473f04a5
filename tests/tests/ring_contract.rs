//! The ring steps' contract, held from both sides: what the Trove-side
//! plugin's guest client (`trove_k2hdkc.cluster.guestagent`, the real
//! module in the venv that runs Trove) sends for each step decodes as
//! `driver_api::ring::RingRequest`, and every ring method the agent knows
//! is one the plugin sends.

use std::collections::BTreeSet;

use driver_api::ring::{RingRequest, RING_METHODS};
use serde_json::Value;

#[test]
fn every_ring_step_the_plugin_sends_decodes_as_the_agent_types_it() {
    let script = e2e_tests::repo_root().join("tests/tests/ring_contract/calls.py");
    let out = std::process::Command::new(e2e_tests::peer_python())
        .arg(&script)
        .env("PYTHONWARNINGS", "ignore")
        .output()
        .expect("run the venv's python");
    assert!(
        out.status.success(),
        "calls.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().expect("calls.py printed nothing");
    let sent: Vec<Value> = serde_json::from_str(line).expect("calls.py prints JSON");
    let mut seen = BTreeSet::new();
    for call in &sent {
        let method = call["method"].as_str().expect("a method name");
        let args = call["args"].as_object().expect("keyword arguments");
        let decoded = RingRequest::decode(method, args)
            .unwrap_or_else(|| panic!("{method} is not a ring method the agent knows"));
        let request = decoded.unwrap_or_else(|e| panic!("{method} {args:?}: {e}"));
        assert_eq!(request.method(), method);
        seen.insert(method.to_owned());
    }
    let known: BTreeSet<String> = RING_METHODS.iter().map(|m| m.to_string()).collect();
    assert_eq!(
        seen, known,
        "the plugin sends every ring step, and only those"
    );
}
