//! Property tests of the parsers every client reaches: whatever the input, nothing panics and
//! every refusal carries a documented code.

use crier::protocol::client::parse;
use crier::protocol::json::deeper_than;
use crier::protocol::{ChannelName, ErrorCode};
use proptest::prelude::*;

/// Text shaped like client frames often enough to reach past the JSON parser.
fn frame_like() -> impl Strategy<Value = String> {
    let kind = prop_oneof![
        Just("subscribe".to_owned()),
        Just("unsubscribe".to_owned()),
        Just("publish".to_owned()),
        Just("ping".to_owned()),
        "[a-z]{0,8}",
    ];
    let value = prop_oneof![
        Just("null".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        "\"[ -~]{0,12}\"",
        "[\\[\\]{}:,\"0-9a-z ]{0,24}",
    ];
    (kind, "[ -~]{0,16}", value.clone(), value).prop_map(|(kind, channel, data, id)| {
        format!(r#"{{"type":"{kind}","channel":"{channel}","data":{data},"id":{id}}}"#)
    })
}

proptest! {
    #[test]
    fn client_frames_never_panic_and_refusals_are_documented(
        text in prop_oneof![frame_like(), any::<String>()]
    ) {
        if let Err(error) = parse(&text) {
            prop_assert!(ErrorCode::ALL.contains(&error.code));
            prop_assert!(error.code.in_error_frames(), "{:?} is documented for error frames", error.code);
            let frame: serde_json::Value = serde_json::from_slice(error.to_frame().as_bytes()).unwrap();
            prop_assert_eq!(&frame["type"], "error");
        }
    }

    #[test]
    fn channel_names_follow_the_documented_rule(name in prop_oneof!["[a-zA-Z0-9_.:@#-]{0,130}", any::<String>()]) {
        let documented = !name.is_empty()
            && name.len() <= 128
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.:@#".contains(&b))
            && !name.bytes().all(|b| b == b'.')
            && !name.ends_with('#');
        prop_assert_eq!(ChannelName::parse(&name).is_ok(), documented);
    }

    #[test]
    fn nesting_depth_matches_a_parser(depth in 0usize..40, wrap in prop::collection::vec(any::<bool>(), 40)) {
        // Build valid JSON `depth` levels deep, arrays and objects mixed, with brackets in
        // strings along the way that must not count.
        let mut text = String::from("\"]}[{\"");
        for &object in wrap.iter().take(depth).rev() {
            text = if object { format!(r#"{{"k[":{text}}}"#) } else { format!(r#"["{{",{text}]"#) };
        }
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        prop_assert!(!value.is_null());
        prop_assert_eq!(deeper_than(&text, depth), false);
        prop_assert_eq!(deeper_than(&text, depth.saturating_sub(1)), depth > 0);
    }
}
