//! Everything the agent does to an incoming body before dispatch: envelope
//! decoding, context and argument decryption, typed argument parsing.
//! None of it may panic on any input.
#![no_main]

use driver_api::request::GuestMethod;
use driver_api::GuestRequest;
use driver_api::secure::SecureCodec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let codec = SecureCodec::new(Some("fuzz-key"));
    // Raw bytes as a whole body.
    if let Ok(msg) = driver_api::envelope::decode(data) {
        let _ = codec.decode_context(msg.context.clone());
        for (_, v) in msg.args.clone() {
            let _ = codec.decode_entity(v);
        }
        let _ = driver_api::request::check_version(msg.version.as_deref());
        // The boundary decode, for the method named and for the richest
        // argument shapes whatever the name.
        if let Some(method) = GuestMethod::from_name(&msg.method) {
            let _ = GuestRequest::decode(method, msg.args.clone());
        }
        let _ = GuestRequest::decode(GuestMethod::Prepare, msg.args.clone());
        let _ = GuestRequest::decode(GuestMethod::CreateBackup, msg.args.clone());
        let _ = GuestRequest::decode(GuestMethod::UpdateOverrides, msg.args);
    }
    // The same bytes as ciphertext text, where an attacker controls it.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = codec.decode_entity(serde_json::Value::String(text.to_owned()));
    }
});
