//! A cap on the threads a daemon gives to long-lived streams (dashboard consoles, history
//! streams): a [`Slot`] is taken before the thread starts and freed when it ends, and there is
//! none to take beyond the cap.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// At most `max` places, shared by the threads of one kind of stream.
#[derive(Clone)]
pub struct Slots {
    taken: Arc<AtomicUsize>,
    max: usize,
}

impl Slots {
    pub fn new(max: usize) -> Slots {
        Slots {
            taken: Arc::default(),
            max,
        }
    }

    /// A place, if one is free.
    pub fn take(&self) -> Option<Slot> {
        let max = self.max;
        self.taken
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self.taken.clone()))
    }

    pub fn max(&self) -> usize {
        self.max
    }
}

/// A place among [`Slots`], given back when dropped.
pub struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_capped_and_given_back() {
        let slots = Slots::new(2);
        let a = slots.take().unwrap();
        let _b = slots.take().unwrap();
        assert!(slots.take().is_none());
        drop(a);
        assert!(slots.take().is_some());
    }
}
