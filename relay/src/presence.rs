//! Which devices are online right now: one entry per attached agent
//! connection, in memory only.
//!
//! A device has at most one live connection. When an agent reconnects before
//! the relay noticed that its old connection died, the new one replaces the
//! old one (which is closed); the generation number makes sure the old
//! connection's cleanup does not remove its successor.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

use deskside_protocol::agent::SessionRequest;
use deskside_protocol::{DeviceId, SessionId};
use tokio::sync::{mpsc, oneshot};

/// A request for an attached agent, served by its connection task.
#[derive(Debug)]
pub enum AgentCommand {
    /// Collect a fresh diagnostic snapshot.
    CollectDiagnostics {
        /// Include the throughput test.
        throughput: bool,
        /// The technician's display name, kept in the device's history.
        technician: String,
        /// Where the snapshot JSON (or the agent's reason) goes.
        reply: oneshot::Sender<Result<Vec<u8>, String>>,
    },
    /// Ask the employee for a remote session (already audited and routed).
    OpenSession {
        /// What the agent is sent.
        request: SessionRequest,
        /// The organisation's certificate of the technician's session key,
        /// as the console presented it (sent as a `CertifiedSessionRequest`).
        certificate: Option<Vec<u8>>,
    },
    /// The organisation's policy changed: send it to the agent now.
    ApplyPolicy {
        /// The whole policy (with the identifier salt) as JSON.
        json: Vec<u8>,
        /// Told once the agent confirmed it applies it.
        applied: oneshot::Sender<()>,
    },
    /// The technician withdrew a session request before the employee
    /// answered: the agent closes the consent dialog.
    WithdrawSession {
        /// The session.
        session_id: SessionId,
    },
    /// A technician acted on one of the device's help requests: send the
    /// employee's view of them.
    HelpRequests {
        /// The device's requests.
        requests: Vec<deskside_protocol::request::EmployeeRequest>,
    },
}

/// Commands an attached agent's connection task holds before it takes them.
/// The queue is short: a command waits at most for one message to go out.
const COMMAND_QUEUE: usize = 8;

/// The way to an attached agent's connection task.
///
/// Commands travel boxed, so the channel's slot is one pointer: a tokio
/// channel allocates its slots 32 at a time when it is made, and with the
/// command itself in the slot every idle agent paid about 4 KiB for a queue
/// that is nearly always empty (heap profile of `deskside-bench-idle`).
#[derive(Clone, Debug)]
pub struct CommandSender(mpsc::Sender<Box<AgentCommand>>);

/// The connection task's end of [`CommandSender`].
#[derive(Debug)]
pub struct CommandReceiver(mpsc::Receiver<Box<AgentCommand>>);

/// The device's connection closed before its task took the command.
#[derive(Debug, thiserror::Error)]
#[error("the device's connection closed before it took the request; try again once the device is back online")]
pub struct AgentGone;

/// A command queue for a newly attached agent's connection task.
pub fn command_channel() -> (CommandSender, CommandReceiver) {
    let (sender, receiver) = mpsc::channel(COMMAND_QUEUE);
    (CommandSender(sender), CommandReceiver(receiver))
}

impl CommandSender {
    /// Queues `command` for the connection task, waiting while the queue is
    /// full; fails once the connection task is gone.
    pub async fn send(&self, command: AgentCommand) -> Result<(), AgentGone> {
        self.0.send(Box::new(command)).await.map_err(|_| AgentGone)
    }
}

impl CommandReceiver {
    /// The next command; `None` when every sender is gone.
    pub async fn recv(&mut self) -> Option<AgentCommand> {
        self.0.recv().await.map(|command| *command)
    }
}

/// Close code sent to a connection replaced by a newer one of the same device.
pub const CLOSE_REPLACED: u32 = 3;

#[derive(Debug)]
struct Entry {
    generation: u64,
    connection: quinn::Connection,
    commands: CommandSender,
    /// The connection's remote address when [`Presence::moves`] last
    /// looked (QUIC migration changes it).
    address: SocketAddr,
    /// How many monitors the employee's display has, as the agent last
    /// reported; `None` while unknown (no session helper, older agent).
    monitors: Option<u16>,
}

/// The online devices.
#[derive(Debug, Default)]
pub struct Presence {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_generation: u64,
    attached: HashMap<DeviceId, Entry>,
}

impl Presence {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The map stays consistent even if a holder panicked: every update is
        // a single insert or remove.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `connection` as the device's live connection and returns its
    /// generation; a previous connection of the same device is closed.
    pub fn attach(
        &self,
        id: DeviceId,
        connection: quinn::Connection,
        commands: CommandSender,
    ) -> u64 {
        let mut inner = self.lock();
        inner.next_generation += 1;
        let generation = inner.next_generation;
        let entry = Entry {
            generation,
            address: connection.remote_address(),
            connection,
            commands,
            monitors: None,
        };
        if let Some(old) = inner.attached.insert(id, entry) {
            old.connection.close(
                CLOSE_REPLACED.into(),
                b"replaced by a newer connection of this device",
            );
        }
        generation
    }

    /// How many devices are online.
    pub fn count(&self) -> usize {
        self.lock().attached.len()
    }

    /// Forgets the device's connection if it is still `generation`.
    pub fn detach(&self, id: DeviceId, generation: u64) -> bool {
        let mut inner = self.lock();
        match inner.attached.get(&id) {
            Some(entry) if entry.generation == generation => {
                inner.attached.remove(&id);
                true
            }
            _ => false,
        }
    }

    /// Records the device's monitor count reported on connection
    /// `generation` (0: unknown).
    pub fn set_monitors(&self, id: DeviceId, generation: u64, count: usize) {
        if let Some(entry) = self
            .lock()
            .attached
            .get_mut(&id)
            .filter(|entry| entry.generation == generation)
        {
            entry.monitors = (count > 0).then(|| u16::try_from(count).unwrap_or(u16::MAX));
        }
    }

    /// How many monitors the online device reported, if it did.
    pub fn monitor_count(&self, id: DeviceId) -> Option<usize> {
        self.lock()
            .attached
            .get(&id)
            .and_then(|entry| entry.monitors)
            .map(usize::from)
    }

    /// The attached devices whose connection moved to a new remote address
    /// since the last call: `(device, from, to)`. One relay-wide watcher
    /// calls it ([`crate::roaming::watch_agents`]) instead of a task per
    /// agent.
    pub fn moves(&self) -> Vec<(DeviceId, SocketAddr, SocketAddr)> {
        let mut moves = Vec::new();
        for (id, entry) in self.lock().attached.iter_mut() {
            let now = entry.connection.remote_address();
            if now != entry.address {
                moves.push((*id, entry.address, now));
                entry.address = now;
            }
        }
        moves
    }

    /// Whether the device has a live connection.
    pub fn is_online(&self, id: DeviceId) -> bool {
        self.lock().attached.contains_key(&id)
    }

    /// The channel to the device's connection task, if it is online.
    pub fn commands(&self, id: DeviceId) -> Option<CommandSender> {
        self.lock().attached.get(&id).map(|e| e.commands.clone())
    }

    /// Closes the device's connection, if any, with `code` and `reason`.
    pub fn kick(&self, id: DeviceId, code: u32, reason: &str) {
        if let Some(entry) = self.lock().attached.remove(&id) {
            entry.connection.close(code.into(), reason.as_bytes());
        }
    }

    /// Ids of every online device.
    pub fn online(&self) -> Vec<DeviceId> {
        self.lock().attached.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of what one slot of a channel holds.
    fn slot_size<T>(_: &mpsc::Sender<T>) -> usize {
        std::mem::size_of::<T>()
    }

    /// Regression guard for the idle memory of an attached agent: its
    /// command queue's 32 preallocated slots hold one pointer each, not a
    /// command (which is far larger).
    #[test]
    fn a_queued_command_costs_one_pointer() {
        let (sender, _receiver) = command_channel();
        assert_eq!(slot_size(&sender.0), std::mem::size_of::<usize>());
        assert!(
            std::mem::size_of::<AgentCommand>() >= 64,
            "AgentCommand is {} bytes: boxing it may no longer be worth it",
            std::mem::size_of::<AgentCommand>()
        );
    }

    /// Regression guard: one online device's entry in the presence map
    /// (key and value) stays small, since every idle agent has one.
    #[test]
    fn a_presence_entry_stays_small() {
        let per_device = std::mem::size_of::<(DeviceId, Entry)>();
        assert!(
            per_device <= 80,
            "a presence entry takes {per_device} bytes"
        );
    }

    #[tokio::test]
    async fn a_command_reaches_the_task_and_fails_once_it_is_gone() {
        let (sender, mut receiver) = command_channel();
        sender
            .send(AgentCommand::WithdrawSession {
                session_id: SessionId(7),
            })
            .await
            .expect("the receiver is alive");
        match receiver.recv().await {
            Some(AgentCommand::WithdrawSession { session_id }) => {
                assert_eq!(session_id, SessionId(7))
            }
            other => panic!("unexpected {other:?}"),
        }
        drop(receiver);
        assert!(sender
            .send(AgentCommand::WithdrawSession {
                session_id: SessionId(8),
            })
            .await
            .is_err());
    }
}
