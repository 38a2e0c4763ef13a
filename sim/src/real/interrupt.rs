//! SIGINT, SIGTERM and SIGHUP during a real run: the first one is remembered, and the run loop
//! kills its child, takes back what it changed and returns; a second one ends the process at
//! once (its child dies with it, and the next run or `vmemsim cleanup` repairs the pool).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

struct Flags {
    any: Arc<AtomicBool>,
    which: Arc<AtomicUsize>,
}

static FLAGS: OnceLock<Flags> = OnceLock::new();

/// Installs the handlers (once per process; later calls do nothing).
pub fn install() -> std::io::Result<()> {
    if FLAGS.get().is_some() {
        return Ok(());
    }
    let flags = Flags { any: Arc::new(AtomicBool::new(false)), which: Arc::new(AtomicUsize::new(0)) };
    for sig in [SIGINT, SIGTERM, SIGHUP] {
        // Registered first, so it sees the flag as the previous signal left it.
        signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(&flags.any))?;
        signal_hook::flag::register_usize(sig, Arc::clone(&flags.which), sig as usize)?;
        signal_hook::flag::register(sig, Arc::clone(&flags.any))?;
    }
    let _ = FLAGS.set(flags);
    Ok(())
}

/// The signal received since [`install`], if any.
pub fn received() -> Option<i32> {
    let f = FLAGS.get()?;
    f.any.load(Ordering::SeqCst).then(|| f.which.load(Ordering::SeqCst) as i32)
}
