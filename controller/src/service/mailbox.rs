//! The channel into a task that owns some state (the [`super::Registry`], the
//! [`super::Workers`] pool): handles hold a [`Mailbox`], send commands and get answers on
//! oneshots.

use std::future::Future;

use tokio::sync::{mpsc, oneshot};

/// Commands queued towards an owner task at most.
const QUEUE: usize = 1024;

/// A handle on an owner task that handles commands `C`.
pub(super) struct Mailbox<C> {
    tx: mpsc::Sender<C>,
}

// not derived: `C` need not be `Clone`
impl<C> Clone for Mailbox<C> {
    fn clone(&self) -> Self {
        Mailbox {
            tx: self.tx.clone(),
        }
    }
}

impl<C: Send + 'static> Mailbox<C> {
    /// Spawns the owner task `run`; it ends when every handle is dropped.
    pub(super) fn spawn<F>(run: impl FnOnce(mpsc::Receiver<C>) -> F) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(rx));
        Mailbox { tx }
    }

    /// Sends the command `f` builds and waits for its answer; `None` when the task has stopped.
    pub(super) async fn ask<T>(&self, f: impl FnOnce(oneshot::Sender<T>) -> C) -> Option<T> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(f(reply)).await.ok()?;
        rx.await.ok()
    }

    /// Sends a command that has no answer (lost when the task has stopped).
    pub(super) async fn tell(&self, c: C) {
        let _ = self.tx.send(c).await;
    }

    /// [`Mailbox::tell`] from synchronous code (a `Drop`): sends at once, or from a task when the
    /// queue is full.
    pub(super) fn tell_soon(&self, c: C) {
        if let Err(mpsc::error::TrySendError::Full(c)) = self.tx.try_send(c) {
            let tx = self.tx.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move { tx.send(c).await });
            }
        }
    }
}
