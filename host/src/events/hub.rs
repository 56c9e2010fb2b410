//! The live-event hub of one process (one per `Client`): the bus its live
//! streams read, the watcher registration that tells the cluster someone is
//! watching, the feed that brings other processes' events in (PostgreSQL
//! LISTEN, or polling SQLite's `events` table), and the publisher that sends
//! this process's events out while anyone anywhere watches.
//!
//! With nobody watching, an event costs two atomic loads: nothing is
//! serialised, queued or written. Publishing happens in its own task, in
//! batches, never inside a claim or outcome transaction.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::wire::{Batch, WireEvent, unpack};
use crate::clock::Clock;
use crate::store::{Store, StoreError};

/// Wire events a process's streams can fall behind by before they are told `lagged`.
const BUS_CAPACITY: usize = 4096;
/// Events waiting for the publisher before new ones are dropped (and counted).
const OUTBOX_CAPACITY: usize = 4096;
/// How long a watcher row lives without renewal; it is renewed at a third of it.
const WATCHER_TTL: Duration = Duration::from_secs(30);
/// How often a watching process reads SQLite's `events` table.
const POLL: Duration = Duration::from_millis(250);

/// The hub. See the module documentation.
pub(crate) struct Hub {
    /// This process's name in published batches (its own come back and are skipped).
    origin: String,
    /// Live streams open in this process.
    local: AtomicUsize,
    /// Whether some process watches (a fresh watcher row): publish.
    cluster: AtomicBool,
    bus: broadcast::Sender<Arc<WireEvent>>,
    outbox: mpsc::Sender<Arc<WireEvent>>,
    /// The publisher's end of the outbox until a node starts the publisher.
    inbox: Mutex<Option<mpsc::Receiver<Arc<WireEvent>>>>,
    /// Events the outbox had no room for since the last batch.
    dropped: Arc<AtomicU64>,
    /// Stops the feed when the last local stream closes.
    feed: Mutex<Option<oneshot::Sender<()>>>,
    /// Serialises the first registration with the database; counts the
    /// registrations, each of which has its own watcher row (so a closing
    /// feed never removes the row of the next one).
    registering: tokio::sync::Mutex<u64>,
    /// True once the process shuts down: live streams end.
    closed: watch::Sender<bool>,
}

impl Hub {
    pub(crate) fn new() -> Hub {
        let (bus, _) = broadcast::channel(BUS_CAPACITY);
        let (outbox, inbox) = mpsc::channel(OUTBOX_CAPACITY);
        Hub {
            origin: format!("{:016x}", rand::random::<u64>()),
            local: AtomicUsize::new(0),
            cluster: AtomicBool::new(false),
            bus,
            outbox,
            inbox: Mutex::new(Some(inbox)),
            dropped: Arc::new(AtomicU64::new(0)),
            feed: Mutex::new(None),
            registering: tokio::sync::Mutex::new(0),
            closed: watch::channel(false).0,
        }
    }

    /// Hands an event to this process's streams and, while the cluster
    /// watches, to the publisher. `make` runs only when someone watches.
    pub(crate) fn offer(&self, make: impl FnOnce() -> WireEvent) {
        let local = self.local.load(Ordering::Relaxed) > 0;
        let cluster = self.cluster.load(Ordering::Relaxed);
        if !local && !cluster {
            return;
        }
        let event = Arc::new(make());
        if local {
            let _ = self.bus.send(event.clone());
        }
        if cluster && self.outbox.try_send(event).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Opens or closes the gate: whether some process watches.
    pub(crate) fn set_cluster_watched(&self, watched: bool) {
        self.cluster.store(watched, Ordering::Relaxed);
    }

    /// Starts the publisher (once per process; later calls do nothing). It
    /// ends when the hub is dropped.
    pub(crate) fn start_publisher(&self, store: Arc<dyn Store>, clock: Arc<dyn Clock>) {
        let Some(inbox) = self.inbox.lock().unwrap().take() else { return };
        tokio::spawn(publish(inbox, store, clock, self.origin.clone(), self.dropped.clone()));
    }

    /// Registers a live stream: the first one of the process registers a
    /// watcher in the database and starts the feed of other processes'
    /// events. The stream is registered when this returns.
    pub(crate) async fn watch(self: &Arc<Self>, store: &Arc<dyn Store>, clock: &Arc<dyn Clock>) -> Result<Watch, StoreError> {
        let mut generation = self.registering.lock().await;
        let events = self.bus.subscribe();
        if self.local.load(Ordering::SeqCst) == 0 {
            // The feed listens (or takes its cursor) before the watcher row
            // tells nodes to publish, so no batch falls in between.
            let pushed = store.event_listen().await?;
            let cursor = if pushed.is_none() { store.event_cursor().await? } else { 0 };
            *generation += 1;
            let watcher = format!("{}-{}", self.origin, *generation);
            store.watcher_put(&watcher, clock.now() + WATCHER_TTL).await?;
            let (stop, stopped) = oneshot::channel();
            let source = Source { pushed, cursor };
            tokio::spawn(feed(self.clone(), store.clone(), clock.clone(), watcher, source, stopped));
            *self.feed.lock().unwrap() = Some(stop);
        }
        self.local.fetch_add(1, Ordering::SeqCst);
        Ok(Watch { registration: Registration { hub: self.clone() }, events })
    }

    fn release(&self) {
        if self.local.fetch_sub(1, Ordering::SeqCst) == 1
            && let Some(stop) = self.feed.lock().unwrap().take()
        {
            let _ = stop.send(());
        }
    }

    /// Ends every live stream of this process (a shutdown).
    pub(crate) fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Resolves when the process shuts down.
    pub(crate) fn closed(&self) -> impl Future<Output = ()> + Send + use<> {
        let mut closed = self.closed.subscribe();
        async move {
            let _ = closed.wait_for(|c| *c).await;
        }
    }
}

/// A registered live stream of this process: its events (this process's
/// and, while it is registered, every other's).
#[derive(Debug)]
pub struct Watch {
    /// The registration; dropping it unregisters the stream.
    pub registration: Registration,
    /// The events, as they come.
    pub events: broadcast::Receiver<Arc<WireEvent>>,
}

/// Keeps a live stream registered; dropping it unregisters the stream (the
/// last one of a process removes its watcher row).
pub struct Registration {
    hub: Arc<Hub>,
}

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration").finish_non_exhaustive()
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.release();
    }
}

/// Where other processes' batches come from: pushed (PostgreSQL), or read
/// from the `events` table after `cursor` (SQLite).
struct Source {
    pushed: Option<mpsc::Receiver<String>>,
    cursor: i64,
}

/// Brings other processes' events onto the bus while this process watches,
/// and keeps its watcher row fresh; removes the row when stopped.
async fn feed(hub: Arc<Hub>, store: Arc<dyn Store>, clock: Arc<dyn Clock>, watcher: String, source: Source, mut stop: oneshot::Receiver<()>) {
    let Source { mut pushed, mut cursor } = source;
    let mut renew = tokio::time::interval(WATCHER_TTL / 3);
    renew.tick().await;
    let mut poll = tokio::time::interval(POLL);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = renew.tick() => {
                if let Err(e) = store.watcher_put(&watcher, clock.now() + WATCHER_TTL).await {
                    tracing::warn!(error = %e, "could not renew this process's watch on live events");
                }
            }
            Some(batch) = async { pushed.as_mut()?.recv().await }, if pushed.is_some() => {
                for event in unpack(&batch, &hub.origin) {
                    let _ = hub.bus.send(event);
                }
            }
            _ = poll.tick(), if pushed.is_none() => match store.event_read(cursor, 100).await {
                Ok(rows) => {
                    for (id, origin, batch) in rows {
                        cursor = id;
                        if origin != hub.origin {
                            for event in unpack(&batch, &hub.origin) {
                                let _ = hub.bus.send(event);
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not read live events"),
            },
        }
    }
    if let Err(e) = store.watcher_remove(&watcher).await {
        tracing::warn!(error = %e, "could not remove this process's watch on live events; it expires by itself");
    }
}

/// Publishes this process's events in batches as they come: one waits for
/// the first, then takes whatever else is queued, so a lone event goes out at
/// once and a burst fills its batches.
async fn publish(
    mut inbox: mpsc::Receiver<Arc<WireEvent>>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    origin: String,
    dropped: Arc<AtomicU64>,
) {
    let mut held: Option<Arc<WireEvent>> = None;
    loop {
        let first = match held.take() {
            Some(event) => event,
            None => match inbox.recv().await {
                Some(event) => event,
                None => return,
            },
        };
        let mut batch = Batch::new(&origin);
        batch.push(&first);
        while let Ok(event) = inbox.try_recv() {
            if !batch.push(&event) {
                held = Some(event);
                break;
            }
        }
        let missed = dropped.swap(0, Ordering::Relaxed);
        if missed > 0 && !batch.push(&WireEvent::node("lagged", json!({ "missed": missed }))) {
            dropped.fetch_add(missed, Ordering::Relaxed);
        }
        if batch.is_empty() {
            continue;
        }
        if let Err(e) = store.event_publish(&origin, &batch.finish(), clock.now()).await {
            tracing::warn!(error = %e, "could not publish live events; watchers elsewhere miss them");
        }
    }
}
