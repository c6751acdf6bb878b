//! Namespaces from the config file, users' private channels (`…#<user>`) and the publisher
//! the hub stamps on client publishes.

use crier::auth::token::{sign_hs256, unix_now, TokenClaims};
use serde_json::{json, Value};

use crate::common::*;

const SECRET: &str = "namespaces-test-secret-of-32-bytes";

fn token(sub: &str, subscribe: &[&str], publish: &[&str], info: Option<&str>) -> String {
    sign_hs256(
        SECRET.as_bytes(),
        &TokenClaims {
            sub: sub.into(),
            exp: unix_now() + 300,
            subscribe: subscribe.iter().map(|s| s.to_string()).collect(),
            publish: publish.iter().map(|s| s.to_string()).collect(),
            info: info.map(|i| serde_json::value::RawValue::from_string(i.into()).unwrap()),
        },
    )
}

/// A config file in the temp directory, removed when dropped.
struct ConfigFile(std::path::PathBuf);

impl ConfigFile {
    fn new(text: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "crier-namespaces-{}-{}.toml",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::write(&path, text).unwrap();
        Self(path)
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[tokio::test]
async fn client_publishes_carry_the_publisher_the_hub_stamps() {
    let server = TestServer::with(&["--token-secret", SECRET]).await;
    let reader = token("bob", &["chat:*"], &[], None);
    let mut bob = server
        .ws(&format!("/ws?channel=chat:room&token={reader}"))
        .await;
    bob.recv_type("subscribed").await;
    let writer = token("ada", &["chat:*"], &["chat:*"], Some(r#"{"name":"Ada"}"#));
    let mut ada = server.ws(&format!("/ws?token={writer}")).await;
    // A client cannot forge `from`: whatever it puts in its frame stays inside `data`.
    ada.send(json!({"type": "publish", "channel": "chat:room", "data": {"text": "hi", "from": "mallory"}, "id": 1}))
        .await;
    assert_eq!(ada.recv_type("published").await["id"], 1);
    let message = bob.recv_type("message").await;
    assert_eq!(message["from"]["user"], "ada");
    assert_eq!(message["from"]["info"], json!({"name": "Ada"}));
    assert!(message["from"]["client"].as_str().unwrap().starts_with('c'));
    assert_eq!(message["data"], json!({"text": "hi", "from": "mallory"}));
    // A backend's publish names nobody.
    server
        .publish("chat:room", &json!("from the backend"))
        .await;
    let message = bob.recv_type("message").await;
    assert!(message.get("from").is_none(), "{message}");
}

#[tokio::test]
async fn a_users_private_channel_is_readable_by_that_user_alone() {
    let server = TestServer::with(&["--token-secret", SECRET]).await;
    // No right names the channel: being user 42 is what counts.
    let mine = token("42", &[], &[], None);
    let mut owner = server.ws(&format!("/ws?token={mine}")).await;
    owner
        .send(json!({"type": "subscribe", "channel": "notify:#42", "id": 1}))
        .await;
    assert_eq!(owner.recv().await["type"], "subscribed");
    let other = token("7", &["notify:*", "*"], &[], None);
    let mut stranger = server.ws(&format!("/ws?token={other}")).await;
    stranger
        .send(json!({"type": "subscribe", "channel": "notify:#42", "id": 2}))
        .await;
    let refused = stranger.recv().await;
    assert_eq!(
        (refused["code"].clone(), refused["id"].clone()),
        (json!("forbidden"), json!(2))
    );
    // At connect too, on either transport.
    let (status, reply) = server
        .post(
            &format!("/lp/connect?channel=notify:%2342&token={other}"),
            "application/json",
            "",
        )
        .await;
    assert_eq!(
        (status, reply["error"]["code"].clone()),
        (403, json!("forbidden"))
    );
    // The backend writes `#` as %23 in the path.
    let (status, reply) = server
        .post(
            "/api/publish/notify:%2342",
            "application/json",
            r#"{"n":1}"#,
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    let message = owner.recv_type("message").await;
    assert_eq!(
        (message["channel"].clone(), message["data"].clone()),
        (json!("notify:#42"), json!({"n": 1}))
    );
}

#[tokio::test]
async fn private_channels_need_a_token_even_in_open_mode() {
    let server = TestServer::start().await;
    let mut ws = server.ws("/ws").await;
    ws.send(json!({"type": "subscribe", "channel": "notify:#42", "id": 1}))
        .await;
    assert_eq!(ws.recv().await["code"], "forbidden");
}

#[tokio::test]
async fn namespaces_from_the_config_file_set_who_reads_who_writes_and_history() {
    let file = ConfigFile::new(
        r#"
client-publish = "*"

[[namespace]]
prefix = "news:"
subscribe = "anyone"
publish = "backend"
history-size = 2

[[namespace]]
prefix = "quiet:"
stamp = false
"#,
    );
    let path = file.0.to_str().unwrap().to_owned();
    let server = TestServer::with(&["--config", &path, "--token-secret", SECRET]).await;
    // A token with no rights at all may still read an `anyone` namespace...
    let nobody = token("nobody", &[], &[], None);
    let mut reader = server
        .ws(&format!("/ws?channel=news:today&token={nobody}"))
        .await;
    assert_eq!(reader.recv().await["type"], "subscribed");
    // ...but not other channels.
    reader
        .send(json!({"type": "subscribe", "channel": "elsewhere", "id": 1}))
        .await;
    assert_eq!(reader.recv().await["code"], "forbidden");
    // A backend-only namespace refuses client publishes, whatever the token says.
    let writer = token("w", &["*"], &["*"], None);
    let mut ws = server.ws(&format!("/ws?token={writer}")).await;
    ws.send(json!({"type": "publish", "channel": "news:today", "data": 1, "id": 2}))
        .await;
    assert_eq!(ws.recv().await["code"], "publish_forbidden");
    // Its history holds two messages, not the hub's 500.
    for i in 0..5 {
        server.publish("news:today", &json!(i)).await;
    }
    let (_, page) = server.get_json("/api/channels/news:today/history").await;
    let data: Vec<Value> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["data"].clone())
        .collect();
    assert_eq!(data, [json!(3), json!(4)]);
    // An unstamped namespace: client publishes carry no `from`.
    ws.send(json!({"type": "subscribe", "channel": "quiet:x"}))
        .await;
    ws.recv_type("subscribed").await;
    ws.send(json!({"type": "publish", "channel": "quiet:x", "data": 1}))
        .await;
    let message = ws.recv_type("message").await;
    assert!(message.get("from").is_none(), "{message}");
}
