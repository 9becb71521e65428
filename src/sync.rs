//! Locks that outlive a panic. The handling of one frame may panic (the
//! worker catches it and counts an internal error); a lock it held must not
//! stay poisoned and fail every later frame, so the packet path takes its
//! locks through `lock`, which carries on with the data as it was left.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, also when a panic poisoned it.
#[inline]
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_under_the_lock_leaves_it_usable() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let m2 = m.clone();
        let r = std::thread::spawn(move || {
            let mut g = m2.lock().unwrap();
            *g = 2;
            panic!("while holding the lock");
        })
        .join();
        assert!(r.is_err());
        assert!(m.is_poisoned());
        *lock(&m) += 1;
        assert_eq!(*lock(&m), 3);
    }
}
