//! Which devices are online right now: one entry per attached agent
//! connection or parked agent ([`crate::park`]), in memory only.
//!
//! A device has at most one live connection. When an agent reconnects before
//! the relay noticed that its old connection died, the new one replaces the
//! old one (which is closed); the generation number makes sure the old
//! connection's cleanup does not remove its successor.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use deskside_protocol::park::{Heartbeat, Reply, Ticket};

use deskside_protocol::agent::SessionRequest;
use deskside_protocol::{DeviceId, SessionId};
use tokio::sync::{mpsc, oneshot};

use crate::park::{Route, Waker};

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

    /// Refuses further commands; those queued can still be taken.
    pub fn close(&mut self) {
        self.0.close();
    }

    /// A queued command, if any, without waiting.
    pub fn try_recv(&mut self) -> Option<AgentCommand> {
        self.0.try_recv().ok().map(|command| *command)
    }
}

/// Close code sent to a connection replaced by a newer one of the same device.
pub const CLOSE_REPLACED: u32 = 3;

#[derive(Debug)]
struct Entry {
    generation: u64,
    /// How many monitors the employee's display has, as the agent last
    /// reported; `None` while unknown (no session helper, older agent).
    monitors: Option<u16>,
    link: Link,
}

/// How the relay reaches an online device.
#[derive(Debug)]
enum Link {
    /// An attached agent's connection and its task's queue.
    Attached {
        connection: quinn::Connection,
        commands: CommandSender,
        /// The connection's remote address when [`Presence::moves`] last
        /// looked (QUIC migration changes it).
        address: SocketAddr,
    },
    /// A parked agent ([`crate::park`]): its heartbeats' address, ticket
    /// and counter, and the commands that wait for it to attach.
    Parked(Box<Parked>),
}

#[derive(Debug)]
struct Parked {
    route: Route,
    ticket: Ticket,
    counter: u64,
    last_heard: Instant,
    /// Commands queued since the relay woke the agent, and when it first
    /// called; the attaching connection takes them.
    waiting: Option<(CommandSender, CommandReceiver, Instant)>,
    /// What the agent gets on attaching changed (its organisation's
    /// policy): answers ask it to attach within its reconnect window.
    refresh: bool,
}

/// What became of a heartbeat ([`Presence::heartbeat`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Heard {
    /// Taken: the device stays online. `wake` when commands wait for it;
    /// `moved` when it came from a new address (the old one).
    Taken {
        /// Commands wait: the reply wakes the agent.
        wake: bool,
        /// The reply asks the agent to attach within its window.
        refresh: bool,
        /// The previous address, if it changed.
        moved: Option<SocketAddr>,
    },
    /// Not newer than the last one taken, or for a device attached again:
    /// no answer.
    Stale,
    /// The relay does not hold this ticket: the agent must attach again.
    Unknown,
}

/// What a presence sweep found ([`Presence::sweep`]).
#[derive(Debug, Default)]
pub struct Swept {
    /// Parked devices whose heartbeats stopped: now offline.
    pub offline: Vec<DeviceId>,
    /// Parked devices with commands waiting: call them again.
    pub wakes: Vec<(Route, Ticket, u64)>,
}

/// The online devices.
#[derive(Debug, Default)]
pub struct Presence {
    inner: Mutex<Inner>,
    /// How to reach parked agents; unset, agents are never parked.
    waker: std::sync::OnceLock<Waker>,
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

    /// Lets agents park: `waker` reaches them. Set once, at start.
    pub fn enable_parking(&self, waker: Waker) {
        let _ = self.waker.set(waker);
    }

    /// How to reach parked agents, when parking is on.
    pub fn waker(&self) -> Option<&Waker> {
        self.waker.get()
    }

    /// Records `connection` as the device's live connection and returns its
    /// generation and the queue its task serves; a previous connection of
    /// the same device is closed. A parked device's waiting commands are in
    /// the queue.
    pub fn attach(&self, id: DeviceId, connection: quinn::Connection) -> (u64, CommandReceiver) {
        let mut inner = self.lock();
        inner.next_generation += 1;
        let generation = inner.next_generation;
        let address = connection.remote_address();
        let previous = inner.attached.remove(&id);
        let monitors = previous.as_ref().and_then(|entry| entry.monitors);
        let (commands, receiver) = match previous.map(|entry| entry.link) {
            Some(Link::Attached { connection, .. }) => {
                connection.close(
                    CLOSE_REPLACED.into(),
                    b"replaced by a newer connection of this device",
                );
                command_channel()
            }
            Some(Link::Parked(parked)) => match parked.waiting {
                Some((sender, receiver, _)) => (sender, receiver),
                None => command_channel(),
            },
            None => command_channel(),
        };
        inner.attached.insert(
            id,
            Entry {
                generation,
                monitors,
                link: Link::Attached {
                    connection,
                    commands,
                    address,
                },
            },
        );
        (generation, receiver)
    }

    /// Parks the device attached as `generation` with `ticket`; `false`
    /// when that connection is no longer the device's.
    pub fn park(&self, id: DeviceId, generation: u64, ticket: Ticket, now: Instant) -> bool {
        let mut inner = self.lock();
        inner.next_generation += 1;
        let next = inner.next_generation;
        let Some(entry) = inner
            .attached
            .get_mut(&id)
            .filter(|entry| entry.generation == generation)
        else {
            return false;
        };
        let Link::Attached { address, .. } = &entry.link else {
            return false;
        };
        entry.generation = next;
        entry.link = Link::Parked(Box::new(Parked {
            route: Route {
                to: *address,
                from_ip: None,
            },
            ticket,
            counter: 0,
            last_heard: now,
            waiting: None,
            refresh: false,
        }));
        true
    }

    /// Queues `command` for a parked device (one its connection task took
    /// but did not send before parking); it waits for the agent to attach.
    pub fn requeue(&self, id: DeviceId, command: AgentCommand) {
        if let Some(sender) = self.commands(id) {
            if let Err(error) = sender.0.try_send(Box::new(command)) {
                tracing::debug!(device = %id, "command dropped while parking: {error}");
            }
        }
    }

    /// Takes a parked agent's heartbeat.
    pub fn heartbeat(
        &self,
        id: DeviceId,
        heartbeat: &Heartbeat,
        route: Route,
        now: Instant,
    ) -> Heard {
        let mut inner = self.lock();
        let Some(entry) = inner.attached.get_mut(&id) else {
            return Heard::Unknown;
        };
        let parked = match &mut entry.link {
            Link::Parked(parked) if parked.ticket == heartbeat.ticket => parked,
            Link::Parked(_) => return Heard::Unknown,
            Link::Attached { .. } => return Heard::Stale,
        };
        if heartbeat.counter <= parked.counter {
            return Heard::Stale;
        }
        parked.counter = heartbeat.counter;
        parked.last_heard = now;
        // The first heartbeat tells which relay address the agent uses.
        let moved = (parked.counter > 1 && parked.route.to != route.to).then_some(parked.route.to);
        parked.route = route;
        Heard::Taken {
            wake: parked.waiting.is_some(),
            refresh: parked.refresh,
            moved,
        }
    }

    /// Asks the parked device's agent to attach within its reconnect
    /// window (its next heartbeat's answer says so); `false` when the
    /// device is not parked here.
    pub fn refresh_parked(&self, id: DeviceId) -> bool {
        match self
            .lock()
            .attached
            .get_mut(&id)
            .map(|entry| &mut entry.link)
        {
            Some(Link::Parked(parked)) => {
                parked.refresh = true;
                true
            }
            _ => false,
        }
    }

    /// Forgets the device's parking under `ticket` (an expired ticket).
    pub fn forget_parked(&self, id: DeviceId, ticket: &Ticket) {
        let mut inner = self.lock();
        if matches!(inner.attached.get(&id), Some(Entry { link: Link::Parked(p), .. }) if &p.ticket == ticket)
        {
            inner.attached.remove(&id);
        }
    }

    /// Parked devices not heard from for `idle` go offline; waiting
    /// commands older than `wake_timeout` are dropped (their senders see
    /// the device gone); the others' agents are called again.
    pub fn sweep(&self, now: Instant, idle: Duration, wake_timeout: Duration) -> Swept {
        let mut swept = Swept::default();
        let mut inner = self.lock();
        inner.attached.retain(|id, entry| {
            let Link::Parked(parked) = &mut entry.link else {
                return true;
            };
            if now.saturating_duration_since(parked.last_heard) > idle {
                swept.offline.push(*id);
                return false;
            }
            if let Some((_, _, since)) = &parked.waiting {
                if now.saturating_duration_since(*since) > wake_timeout {
                    tracing::info!(device = %id, "a parked agent did not attach when called: its requests failed");
                    parked.waiting = None;
                } else {
                    swept
                        .wakes
                        .push((parked.route, parked.ticket, parked.counter));
                }
            }
            true
        });
        swept
    }

    /// Takes every parked device offline (the relay is stopping) and
    /// returns where to tell their agents.
    pub fn unpark_all(&self) -> Vec<(Route, Ticket, u64)> {
        let mut all = Vec::new();
        self.lock().attached.retain(|_, entry| match &entry.link {
            Link::Parked(parked) => {
                all.push((parked.route, parked.ticket, parked.counter));
                false
            }
            Link::Attached { .. } => true,
        });
        all
    }

    /// How many devices are online.
    pub fn count(&self) -> usize {
        self.lock().attached.len()
    }

    /// How many online devices are parked.
    pub fn parked_count(&self) -> usize {
        self.lock()
            .attached
            .values()
            .filter(|entry| matches!(entry.link, Link::Parked(_)))
            .count()
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
    /// agent. (Parked agents' moves are logged as their heartbeats come.)
    pub fn moves(&self) -> Vec<(DeviceId, SocketAddr, SocketAddr)> {
        let mut moves = Vec::new();
        for (id, entry) in self.lock().attached.iter_mut() {
            if let Link::Attached {
                connection,
                address,
                ..
            } = &mut entry.link
            {
                let now = connection.remote_address();
                if now != *address {
                    moves.push((*id, *address, now));
                    *address = now;
                }
            }
        }
        moves
    }

    /// Whether the device is online (attached or parked).
    pub fn is_online(&self, id: DeviceId) -> bool {
        self.lock().attached.contains_key(&id)
    }

    /// The way to the device's connection task, if it is online. For a
    /// parked device the commands wait until the agent, called at once,
    /// attaches (or fail after [`crate::park::WAKE_TIMEOUT`]).
    pub fn commands(&self, id: DeviceId) -> Option<CommandSender> {
        let (sender, call) = {
            let mut inner = self.lock();
            let entry = inner.attached.get_mut(&id)?;
            match &mut entry.link {
                Link::Attached { commands, .. } => (commands.clone(), None),
                Link::Parked(parked) => {
                    let call = parked.waiting.is_none().then_some((
                        parked.route,
                        parked.ticket,
                        parked.counter,
                    ));
                    let (sender, _, _) = parked.waiting.get_or_insert_with(|| {
                        let (sender, receiver) = command_channel();
                        (sender, receiver, Instant::now())
                    });
                    (sender.clone(), call)
                }
            }
        };
        if let (Some((route, ticket, counter)), Some(waker)) = (call, self.waker()) {
            tracing::debug!(device = %id, "calling a parked agent");
            waker.send(route, &ticket, counter, Reply::WAKE);
        }
        Some(sender)
    }

    /// Closes the device's connection, if any, with `code` and `reason`;
    /// a parked agent is told to attach again (and learns why there).
    pub fn kick(&self, id: DeviceId, code: u32, reason: &str) {
        let removed = self.lock().attached.remove(&id);
        match removed.map(|entry| entry.link) {
            Some(Link::Attached { connection, .. }) => {
                connection.close(code.into(), reason.as_bytes());
            }
            Some(Link::Parked(parked)) => {
                if let Some(waker) = self.waker() {
                    waker.send(
                        parked.route,
                        &parked.ticket,
                        parked.counter,
                        Reply::REATTACH,
                    );
                }
            }
            None => {}
        }
    }

    /// Ids of every online device.
    pub fn online(&self) -> Vec<DeviceId> {
        self.lock().attached.keys().copied().collect()
    }

    /// A parked device as [`Presence::park`] leaves it, without a
    /// connection to park (unit tests).
    #[cfg(test)]
    fn insert_parked(&self, id: DeviceId, ticket: Ticket, route: Route, now: Instant) {
        let mut inner = self.lock();
        inner.next_generation += 1;
        let generation = inner.next_generation;
        inner.attached.insert(
            id,
            Entry {
                generation,
                monitors: None,
                link: Link::Parked(Box::new(Parked {
                    route,
                    ticket,
                    counter: 0,
                    last_heard: now,
                    waiting: None,
                    refresh: false,
                })),
            },
        );
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
        let parked = std::mem::size_of::<Parked>();
        assert!(
            parked <= 160,
            "a parked device's state takes {parked} bytes"
        );
        println!(
            "presence: {} bytes in the map, {parked} boxed when parked",
            std::mem::size_of::<(DeviceId, Entry)>()
        );
        let per_device = std::mem::size_of::<(DeviceId, Entry)>();
        assert!(
            per_device <= 80,
            "a presence entry takes {per_device} bytes"
        );
    }

    fn route(port: u16) -> Route {
        Route {
            to: SocketAddr::from(([127, 0, 0, 1], port)),
            from_ip: None,
        }
    }

    fn beat(ticket: Ticket, counter: u64) -> Heartbeat {
        Heartbeat { ticket, counter }
    }

    #[test]
    fn a_parked_device_takes_only_newer_heartbeats_of_its_own_ticket() {
        let presence = Presence::default();
        let id = DeviceId(1);
        let start = Instant::now();
        presence.insert_parked(id, [1; 24], route(1000), start);
        assert!(presence.is_online(id));
        assert_eq!(presence.parked_count(), 1);
        assert_eq!(
            presence.heartbeat(id, &beat([1; 24], 1), route(1000), start),
            Heard::Taken {
                wake: false,
                refresh: false,
                moved: None
            }
        );
        // A replay, or an older one, is not answered.
        assert_eq!(
            presence.heartbeat(id, &beat([1; 24], 1), route(2000), start),
            Heard::Stale
        );
        // Another ticket of the device (an older parking): attach again.
        assert_eq!(
            presence.heartbeat(id, &beat([2; 24], 9), route(1000), start),
            Heard::Unknown
        );
        // A device the relay does not hold.
        assert_eq!(
            presence.heartbeat(DeviceId(2), &beat([1; 24], 9), route(1000), start),
            Heard::Unknown
        );
        // A policy change: answers ask for an attach within the window.
        assert!(presence.refresh_parked(id));
        assert!(!presence.refresh_parked(DeviceId(2)));
        assert!(matches!(
            presence.heartbeat(id, &beat([1; 24], 2), route(1000), start),
            Heard::Taken { refresh: true, .. }
        ));
        // A new address is a move.
        assert_eq!(
            presence.heartbeat(id, &beat([1; 24], 3), route(3000), start),
            Heard::Taken {
                wake: false,
                refresh: true,
                moved: Some(route(1000).to)
            }
        );
    }

    #[tokio::test]
    async fn a_command_for_a_parked_device_waits_and_wakes_it_until_the_timeout() {
        let presence = Presence::default();
        let id = DeviceId(1);
        let start = Instant::now();
        presence.insert_parked(id, [1; 24], route(1000), start);
        let sender = presence.commands(id).expect("online");
        sender
            .send(AgentCommand::WithdrawSession {
                session_id: SessionId(3),
            })
            .await
            .expect("queued while parked");
        // The next heartbeat's answer calls the agent; so does the sweep.
        assert_eq!(
            presence.heartbeat(id, &beat([1; 24], 1), route(1000), start),
            Heard::Taken {
                wake: true,
                refresh: false,
                moved: None
            }
        );
        let idle = Duration::from_secs(12);
        let timeout = Duration::from_secs(10);
        let swept = presence.sweep(start + Duration::from_secs(1), idle, timeout);
        assert_eq!(swept.wakes.len(), 1);
        assert!(swept.offline.is_empty());
        // Not attached in time: the waiting commands fail.
        let swept = presence.sweep(start + Duration::from_secs(11), idle, timeout);
        assert!(swept.wakes.is_empty());
        assert!(sender
            .send(AgentCommand::WithdrawSession {
                session_id: SessionId(4),
            })
            .await
            .is_err());
        // Heartbeats stopped for the idle timeout: offline.
        let swept = presence.sweep(start + Duration::from_secs(13), idle, timeout);
        assert_eq!(swept.offline, vec![id]);
        assert!(!presence.is_online(id));
    }

    #[test]
    fn a_stopping_relay_unparks_everyone_and_a_kick_removes_a_parked_device() {
        let presence = Presence::default();
        let start = Instant::now();
        presence.insert_parked(DeviceId(1), [1; 24], route(1000), start);
        presence.insert_parked(DeviceId(2), [2; 24], route(1001), start);
        presence.kick(DeviceId(1), 4, "device revoked");
        assert!(!presence.is_online(DeviceId(1)));
        let all = presence.unpark_all();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].1, [2; 24]);
        assert_eq!(presence.count(), 0);
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
