//! A value that one thread sets once and any number of threads wait for.

use std::sync::{Arc, Condvar, Mutex};

/// A write-once slot shared between threads.
pub(crate) struct Promise<T>(Arc<(Mutex<Option<T>>, Condvar)>);

impl<T> Clone for Promise<T> {
    fn clone(&self) -> Self {
        Promise(self.0.clone())
    }
}

impl<T: Clone> Promise<T> {
    pub(crate) fn new() -> Self {
        Promise(Arc::new((Mutex::new(None), Condvar::new())))
    }

    pub(crate) fn ready(v: T) -> Self {
        let p = Self::new();
        p.set(v);
        p
    }

    pub(crate) fn set(&self, v: T) {
        *self.0 .0.lock().unwrap() = Some(v);
        self.0 .1.notify_all();
    }

    pub(crate) fn wait(&self) -> T {
        let mut g = self.0 .0.lock().unwrap();
        while g.is_none() {
            g = self.0 .1.wait(g).unwrap();
        }
        g.clone().unwrap()
    }
}
