//! Stopping gracefully: one future that resolves on SIGTERM or Ctrl-C, and
//! a broadcast so every part of a program (or of `faafo up`) hears it.

use tokio::sync::watch;

/// Resolves when the process gets SIGTERM or SIGINT (Ctrl-C).
pub async fn signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("interrupted: stopping"),
        _ = term => tracing::info!("terminated: stopping"),
    }
}

/// Resolves on the first SIGTERM or Ctrl-C, as [`signal`]; a second one
/// while the program stops ends it at once (exit status 130, see
/// [`Shutdown::on_signal`]). What a service's `run_until_stopped` takes.
/// Listens from the call on, so call it from within the runtime.
pub fn stop_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    let shutdown = Shutdown::new();
    shutdown.on_signal();
    async move { shutdown.wait().await }
}

/// A shutdown broadcast: [`Shutdown::trigger`] once, every
/// [`Shutdown::wait`] (on any clone) returns.
#[derive(Clone, Debug)]
pub struct Shutdown {
    tx: watch::Sender<bool>,
    rx: watch::Receiver<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A broadcast not yet triggered.
    pub fn new() -> Self {
        let (tx, rx) = watch::channel(false);
        Self { tx, rx }
    }

    /// Tells everyone to stop.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// Whether it was triggered.
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Returns once triggered.
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        let _ = rx.wait_for(|stop| *stop).await;
    }

    /// Triggers on SIGTERM or Ctrl-C (runs in the background). A second
    /// signal while stopping ends the process at once (exit status 130):
    /// the way out when a graceful stop takes longer than one wants.
    pub fn on_signal(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            signal().await;
            this.trigger();
            signal().await;
            // Not eprintln!: it panics when standard error is gone (a
            // `| tee` that the same Ctrl-C ended), and the panic would end
            // this task instead of the process.
            crate::say!("faafo: a second signal: stopping now, without waiting");
            std::process::exit(130);
        });
    }
}
