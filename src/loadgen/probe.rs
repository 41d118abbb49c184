//! A hook that reads the server over each step's measured window (the front-end's
//! `/metrics` reader plugs in here; the engine knows nothing of what it reads).
//!
//! [`WindowProbe::open`] runs when the window opens: before the first request of a step
//! without warm-up (or unmeasured ramp-up), at the end of them otherwise, concurrently with
//! the load.
//! [`OpenWindow::close`] runs after the step's last request ended; its figures become the
//! step's `server` object.

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::contract::WindowMetrics;

/// Reads the server when a step's measured window opens.
pub trait WindowProbe: Send + Sync {
    /// Read the starting state. The work happens when the future is polled, not before.
    fn open(&self) -> BoxFuture<'static, Box<dyn OpenWindow>>;
}

/// A window being observed (it may sample the server in the background meanwhile).
pub trait OpenWindow: Send {
    /// The window closed: read the final state and return the figures over the window
    /// (`None` when the server gave none).
    fn close(self: Box<Self>) -> BoxFuture<'static, Option<WindowMetrics>>;
}

/// A shared [`WindowProbe`] (in [`super::RunOptions`]).
#[derive(Clone)]
pub struct Probe(pub Arc<dyn WindowProbe>);

impl fmt::Debug for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Probe")
    }
}
