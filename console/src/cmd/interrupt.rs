//! Ctrl-C during `deskside session`: ends the session (or withdraws the
//! request the employee has not answered yet) properly instead of killing
//! the process, so the relay and the device hear of it at once rather than
//! after their idle timeouts.
//!
//! Listening replaces the default Ctrl-C handler for the rest of the
//! process's life, so it starts only once a request is on its way, and
//! every wait from then on must also wait on [`Interrupt::wait`].

use tokio::sync::watch;

/// Ctrl-C, seen from any number of `select!` branches.
#[derive(Debug)]
pub struct Interrupt {
    pressed: watch::Receiver<bool>,
    listener: tokio::task::JoinHandle<()>,
}

impl Interrupt {
    /// Starts listening for Ctrl-C.
    pub fn listen() -> Self {
        let (tx, pressed) = watch::channel(false);
        let listener = tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                let _ = tx.send(true);
            }
        });
        Self { pressed, listener }
    }

    /// Resolves once Ctrl-C was pressed (never, if listening failed).
    pub async fn wait(&self) {
        let mut pressed = self.pressed.clone();
        if pressed.wait_for(|pressed| *pressed).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Interrupt {
    fn drop(&mut self) {
        self.listener.abort();
    }
}
