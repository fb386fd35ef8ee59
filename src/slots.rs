//! Counted slots: WebSocket connections and subscriptions are bounded per process (and
//! subscriptions per connection). A slot is held while its guard lives and freed when it is
//! dropped, however the connection or stream ends.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

/// At most `max` holders at once.
#[derive(Debug)]
pub struct Slots {
    used: AtomicUsize,
    max: usize,
}

/// One taken slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot(Arc<Slots>);

impl Slots {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self { used: AtomicUsize::new(0), max })
    }

    /// A slot, or None when all `max` are taken.
    pub fn try_take(self: &Arc<Self>) -> Option<Slot> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| (used < self.max).then_some(used + 1))
            .ok()
            .map(|_| Slot(self.clone()))
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn in_use(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.used.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_and_freed_when_dropped() {
        let slots = Slots::new(2);
        let a = slots.try_take().expect("first");
        let _b = slots.try_take().expect("second");
        assert!(slots.try_take().is_none(), "a third is refused");
        drop(a);
        assert_eq!(slots.in_use(), 1);
        assert!(slots.try_take().is_some(), "a freed slot is taken again");
    }
}
