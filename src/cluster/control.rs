//! Backend control commands across nodes: the node the API call hits PUBLISHes the command
//! on one pub/sub channel, [`CONTROL_CHANNEL`], which every node's listener follows from the
//! moment it connects; each node applies what it receives, except its own (the API node
//! applied it already).
//!
//! A command is small JSON, `{"node", "command": {"op", …}}`; what does not parse is ignored
//! and logged (only crier nodes write this channel). Redis pub/sub does not store: a node
//! whose subscription connection is down when a command is published never sees it — which is
//! why the API answers with how many nodes received it (PUBLISH's reply).
//!
//! The same channel carries `GET /api/users/{user}`'s question to the other nodes; each
//! answers on the asking node's own reply channel, `crier:reply:{node}` (`super::gather`).

use serde::{Deserialize, Serialize};

use crate::hub::{ChannelName, ControlCommand};
use crate::protocol::bodies::UserConnection;

/// The pub/sub channel every node follows for control commands.
pub const CONTROL_CHANNEL: &str = "crier:control";

/// The pub/sub channel on which `node` receives answers to its questions.
pub fn reply_channel(node: &str) -> String {
    format!("crier:reply:{node}")
}

/// What arrived on [`CONTROL_CHANNEL`].
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    Command(ControlCommand),
    /// Which connections of `user` this node holds, to answer with `request`.
    ListUser {
        user: String,
        request: u64,
    },
}

/// One node's answer to a [`Received::ListUser`].
#[derive(Debug, Serialize, Deserialize)]
pub struct Answer {
    pub request: u64,
    pub connections: Vec<UserConnection>,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    node: String,
    command: Wire,
}

/// The command as it travels (channel names as text, checked again on receipt).
#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Wire {
    DisconnectUser { user: String, reconnect: bool },
    UnsubscribeUser { user: String, channel: String },
    EmptyChannel { channel: String },
    ListUser { user: String, request: u64 },
}

/// The message `node` publishes for `command`.
pub fn encode(node: &str, command: &ControlCommand) -> String {
    let command = match command {
        ControlCommand::DisconnectUser { user, reconnect } => Wire::DisconnectUser {
            user: user.clone(),
            reconnect: *reconnect,
        },
        ControlCommand::UnsubscribeUser { user, channel } => Wire::UnsubscribeUser {
            user: user.clone(),
            channel: channel.to_string(),
        },
        ControlCommand::EmptyChannel { channel } => Wire::EmptyChannel {
            channel: channel.to_string(),
        },
    };
    envelope(node, command)
}

/// The question `node` publishes for `user`'s connections.
pub fn encode_list_user(node: &str, user: &str, request: u64) -> String {
    let user = user.to_owned();
    envelope(node, Wire::ListUser { user, request })
}

fn envelope(node: &str, command: Wire) -> String {
    serde_json::to_string(&Envelope {
        node: node.to_owned(),
        command,
    })
    .unwrap_or_default()
}

/// The sending node and what it sent; `None` for what no crier node wrote.
pub fn decode(payload: &[u8]) -> Option<(String, Received)> {
    let envelope: Envelope = serde_json::from_slice(payload).ok()?;
    let channel = |name: &str| ChannelName::parse(name).ok();
    let command = match envelope.command {
        Wire::DisconnectUser { user, reconnect } => {
            ControlCommand::DisconnectUser { user, reconnect }
        }
        Wire::UnsubscribeUser {
            user,
            channel: name,
        } => ControlCommand::UnsubscribeUser {
            user,
            channel: channel(&name)?,
        },
        Wire::EmptyChannel { channel: name } => ControlCommand::EmptyChannel {
            channel: channel(&name)?,
        },
        Wire::ListUser { user, request } => {
            return Some((envelope.node, Received::ListUser { user, request }))
        }
    };
    Some((envelope.node, Received::Command(command)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip() {
        let room = ChannelName::parse("chat:room").unwrap();
        for command in [
            ControlCommand::DisconnectUser {
                user: "ada \"x\"".into(),
                reconnect: true,
            },
            ControlCommand::UnsubscribeUser {
                user: "ada".into(),
                channel: room.clone(),
            },
            ControlCommand::EmptyChannel { channel: room },
        ] {
            let text = encode("n1", &command);
            let back = decode(text.as_bytes());
            assert_eq!(back, Some(("n1".into(), Received::Command(command))));
        }
        let question = encode_list_user("n2", "ada", 7);
        let back = decode(question.as_bytes());
        let list = Received::ListUser {
            user: "ada".into(),
            request: 7,
        };
        assert_eq!(back, Some(("n2".into(), list)));
    }

    #[test]
    fn foreign_messages_are_ignored() {
        for payload in [
            &b"not json"[..],
            br#"{"node":"n","command":{"op":"reboot"}}"#,
            br#"{"node":"n","command":{"op":"empty_channel","channel":"../x"}}"#,
        ] {
            assert_eq!(decode(payload), None);
        }
    }
}
